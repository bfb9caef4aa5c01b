using System.Drawing;
using System.Net;
using System.Text;
using OpenQA.Selenium;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Dashboard.Tests;

/// <summary>
/// The dashboard in a real browser (Debian's chromium), in a real ASP.NET Core application on 127.0.0.1, over a real PostgreSQL outbox
/// table dispatching to a real RabbitMQ. Each test saves screenshots under artifacts/dashboard/.
/// </summary>
public sealed class DashboardBrowserTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_overview_shows_the_true_counts_after_known_enqueues_and_dispatches()
    {
        await using var app = await DashboardApp.StartAsync();
        var queue = await app.DeclareQueueAsync();
        for (var i = 0; i < 4; i++)
        {
            await app.SendAsync(queue, $"{{\"order\":{i}}}", m => m.Destination = null);
        }

        await app.WaitForAsync(s => s.Pending == 0, "the 4 messages to be dispatched");
        await app.SendAsync(DashboardApp.NewQueueName(), "nobody listens");
        await app.WaitForAsync(s => s.DeadLettered == 1 && s.Pending == 0, "the unroutable message to be dead-lettered");
        await app.Outbox.StopAsync(Ct);
        for (var i = 0; i < 3; i++)
        {
            await app.SendAsync(queue, $"waiting {i}");
        }

        using var browser = Browser.Start();
        browser.SignInAsOperator(app);
        browser.GoTo(app.BaseUrl + "/");

        browser.Driver.Manage().Window.Size = new Size(1200, 680);
        browser.GoTo(app.BaseUrl + "/");
        Assert.Equal("Overview \u00b7 Outboxer", browser.Driver.Title);
        var section = browser.Find("section.outbox[data-outbox='']");
        Assert.Equal("3", Figure(section, "pending"));
        Assert.Equal("0", Figure(section, "in-flight"));
        Assert.Equal("0", Figure(section, "retrying"));
        Assert.Equal("1", Figure(section, "dead-letters"));
        Assert.True(double.Parse(Figure(section, "lag"), System.Globalization.CultureInfo.InvariantCulture) >= 0);
        Assert.Equal(3, section.FindElements(By.CssSelector(".chart svg[role='img']")).Count);
        AssertNoSecrets(browser.Driver.PageSource);
        browser.Screenshot("overview");

        browser.Driver.Manage().Window.Size = new Size(390, 900);
        browser.GoTo(app.BaseUrl + "/");
        browser.Screenshot("overview-narrow");
        browser.Driver.Manage().Window.Size = new Size(1280, 1000);

        browser.GoTo(app.BaseUrl + "/");
        browser.ClickToNavigate(browser.Find("section.outbox[data-outbox=''] a[href$='/destinations']"));
        var rows = browser.FindAll("#destinations tbody tr");
        var byDestination = rows.ToDictionary(r => r.GetAttribute("data-destination") ?? string.Empty, r => (
            Pending: r.FindElement(By.CssSelector("[data-figure='pending']")).Text,
            Dead: r.FindElement(By.CssSelector("[data-figure='dead-letters']")).Text));
        Assert.Equal(("3", "0"), byDestination[queue]);
        Assert.Equal("1", byDestination.Single(d => d.Key != queue).Value.Dead);
        browser.Screenshot("destinations");
    }

    [Fact]
    public async Task A_poison_message_shows_in_the_dead_letters_with_its_error_and_requeue_from_the_page_publishes_it()
    {
        await using var app = await DashboardApp.StartAsync();
        var queue = DashboardApp.NewQueueName(); // not declared yet: the message is unroutable
        var id = await app.SendAsync(queue, "{\"order\":42,\"lines\":[{\"sku\":\"A1\",\"qty\":2}]}", m => m.Headers["event-type"] = "OrderPlaced");
        await app.WaitForAsync(s => s.DeadLettered == 1, "the unroutable message to be dead-lettered");

        using var browser = Browser.Start();
        browser.SignInAsOperator(app);
        browser.GoTo(app.BaseUrl + "/");
        browser.ClickToNavigate(browser.Find("a[href$='/dead-letters']"));

        var row = browser.Find($"#dead-letters tr[data-id='{id}']");
        Assert.Contains("unroutable", row.FindElement(By.CssSelector(".last-error")).Text, StringComparison.Ordinal);
        Assert.Contains(queue, row.FindElement(By.CssSelector(".last-error")).Text, StringComparison.Ordinal);
        Assert.Equal("1", row.FindElements(By.CssSelector("td.num"))[0].Text);
        row.FindElement(By.CssSelector("summary")).Click();
        var payload = row.FindElement(By.CssSelector("pre.payload"));
        Assert.Equal("json", payload.GetAttribute("data-kind"));
        Assert.Contains("\"sku\": \"A1\"", payload.Text, StringComparison.Ordinal);
        Assert.Contains("OrderPlaced", row.Text, StringComparison.Ordinal);
        AssertNoSecrets(browser.Driver.PageSource);
        browser.Screenshot("dead-letters");

        await app.DeclareQueueAsync(queue);
        browser.ClickToNavigate(row.FindElement(By.CssSelector("a[href*='do=requeue']")));
        Assert.StartsWith("Requeue dead letter", browser.Find("h1").Text, StringComparison.Ordinal);
        browser.Screenshot("confirm");
        browser.ClickToNavigate(browser.Find("#confirm"));

        Assert.Equal("Requeued 1 dead letter: the dispatcher publishes them.", browser.Find("#done").Text);
        var delivered = await app.ConsumeAsync(queue);
        Assert.Equal("{\"order\":42,\"lines\":[{\"sku\":\"A1\",\"qty\":2}]}", Encoding.UTF8.GetString(delivered.Body.Span));
        await app.WaitForAsync(s => s.DeadLettered == 0 && s.Pending == 0, "the requeued message to be marked dispatched");

        browser.GoTo($"{app.BaseUrl}/message?q={id}");
        Assert.Equal("dispatched", browser.Find("#message").GetAttribute("data-state"));
        browser.Find("#q").Clear();
        browser.NavigateBy(() => browser.Find("#q").SendKeys(delivered.BasicProperties.MessageId + Keys.Enter)); // the keyboard alone finds it
        Assert.Equal("dispatched", browser.Find("#message").GetAttribute("data-state"));
        Assert.Contains(id.ToString(System.Globalization.CultureInfo.InvariantCulture), browser.Find("#message-title").Text, StringComparison.Ordinal);
        browser.Screenshot("message");
    }

    [Fact]
    public async Task Purge_from_the_page_removes_the_selected_dead_letter_then_purge_all_removes_the_rest()
    {
        await using var app = await DashboardApp.StartAsync(o => o.PageSize = 2);
        var ids = new List<long>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await app.SendAsync(DashboardApp.NewQueueName(), $"poison {i}"));
        }

        await app.WaitForAsync(s => s.DeadLettered == 3, "3 unroutable messages to be dead-lettered");

        using var browser = Browser.Start();
        browser.SignInAsOperator(app);
        browser.GoTo(app.BaseUrl + "/dead-letters");
        Assert.Equal([ids[0].ToString(), ids[1].ToString()], browser.FindAll("#dead-letters tbody tr").Select(r => r.GetAttribute("data-id")));
        browser.ClickToNavigate(browser.Find("a[rel='next']"));
        Assert.Equal([ids[2].ToString()], browser.FindAll("#dead-letters tbody tr").Select(r => r.GetAttribute("data-id")));
        browser.ClickToNavigate(browser.Find("nav.pages a"));

        browser.Find($"#select-{ids[1]}").Click();
        browser.ClickToNavigate(browser.Find("button[value='purge']"));
        Assert.Equal($"Purge dead letter {ids[1]} of (default)?", browser.Find("h1").Text);
        browser.ClickToNavigate(browser.Find("#confirm"));
        Assert.Equal("Purged 1 dead letter.", browser.Find("#done").Text);
        Assert.Equal([ids[0].ToString(), ids[2].ToString()], browser.FindAll("#dead-letters tbody tr").Select(r => r.GetAttribute("data-id")));
        Assert.Null(await app.Outbox.Administration!.GetMessageAsync(ids[1], Ct));

        browser.ClickToNavigate(browser.Find("a.button.danger"));
        Assert.Equal("Purge every dead letter of (default)?", browser.Find("h1").Text);
        browser.ClickToNavigate(browser.Find("#confirm"));
        Assert.Equal("Purged 2 dead letters.", browser.Find("#done").Text);
        Assert.NotNull(browser.Find("#no-dead-letters"));
        Assert.Equal(0, (await app.Outbox.GetStatisticsAsync(Ct)).DeadLettered);
    }

    [Fact]
    public async Task An_anonymous_request_is_refused_when_a_policy_is_required()
    {
        await using var app = await DashboardApp.StartAsync();
        using var anonymous = app.Client(asOperator: false);
        foreach (var path in new[] { "/outboxer/", "/outboxer/dead-letters", "/outboxer/message?q=1", "/outboxer/dashboard.css", "/outboxer/confirm?do=purge&all=true" })
        {
            using var response = await anonymous.GetAsync(path, Ct);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        using var post = await anonymous.PostAsync("/outboxer/dead-letters/purge", new FormUrlEncodedContent([new("all", "true")]), Ct);
        Assert.Equal(HttpStatusCode.Unauthorized, post.StatusCode);

        using var browser = Browser.Start();
        browser.GoTo(app.BaseUrl + "/");
        Assert.Empty(browser.FindAll("[data-figure]"));
        Assert.DoesNotContain("Overview", browser.Driver.Title, StringComparison.Ordinal);

        using var asOperator = app.Client(asOperator: true);
        using var allowed = await asOperator.GetAsync("/outboxer/", Ct);
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
    }

    [Fact]
    public async Task A_forged_post_without_or_with_a_wrong_antiforgery_token_is_refused_and_changes_nothing()
    {
        await using var app = await DashboardApp.StartAsync();
        var id = await app.SendAsync(DashboardApp.NewQueueName(), "poison");
        await app.WaitForAsync(s => s.DeadLettered == 1, "the unroutable message to be dead-lettered");
        using var client = app.Client(asOperator: true);

        using var withoutToken = await client.PostAsync("/outboxer/dead-letters/purge", new FormUrlEncodedContent([new("all", "true")]), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, withoutToken.StatusCode);

        using var withWrongToken = await client.PostAsync("/outboxer/dead-letters/requeue", new FormUrlEncodedContent(
            [new("all", "true"), new("__RequestVerificationToken", "CfDJ8forged")]), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, withWrongToken.StatusCode);

        // A token taken from a real confirmation page, sent without the cookie it belongs to, is refused too.
        using var confirm = await client.GetAsync($"/outboxer/confirm?do=purge&id={id}", Ct);
        var html = await confirm.Content.ReadAsStringAsync(Ct);
        var token = System.Text.RegularExpressions.Regex.Match(html, "name=\"__RequestVerificationToken\" value=\"([^\"]+)\"").Groups[1].Value;
        Assert.NotEmpty(token);
        using var withoutCookie = await client.PostAsync("/outboxer/dead-letters/purge", new FormUrlEncodedContent(
            [new("id", id.ToString()), new("__RequestVerificationToken", token)]), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, withoutCookie.StatusCode);

        Assert.Equal(1, (await app.Outbox.GetStatisticsAsync(Ct)).DeadLettered);
        Assert.NotNull(await app.Outbox.Administration!.GetMessageAsync(id, Ct));
    }

    [Fact]
    public async Task Read_only_mode_shows_no_action_and_refuses_confirmations_and_posts()
    {
        await using var app = await DashboardApp.StartAsync(o => o.ReadOnly = true);
        var id = await app.SendAsync(DashboardApp.NewQueueName(), "poison");
        await app.WaitForAsync(s => s.DeadLettered == 1, "the unroutable message to be dead-lettered");

        using var browser = Browser.Start();
        browser.SignInAsOperator(app);
        browser.GoTo(app.BaseUrl + "/dead-letters");
        Assert.Single(browser.FindAll("#dead-letters tbody tr"));
        Assert.Empty(browser.FindAll("button"));
        Assert.Empty(browser.FindAll("input[type='checkbox']"));
        Assert.Empty(browser.FindAll("a[href*='confirm']"));

        using var client = app.Client(asOperator: true);
        using var confirm = await client.GetAsync($"/outboxer/confirm?do=purge&id={id}", Ct);
        Assert.Equal(HttpStatusCode.Forbidden, confirm.StatusCode);
        using var post = await client.PostAsync("/outboxer/dead-letters/purge", new FormUrlEncodedContent([new("all", "true")]), Ct);
        Assert.Equal(HttpStatusCode.Forbidden, post.StatusCode);
        Assert.Equal(1, (await app.Outbox.GetStatisticsAsync(Ct)).DeadLettered);
    }

    private static string Figure(IWebElement section, string name) =>
        section.FindElement(By.CssSelector($"[data-figure='{name}']")).GetAttribute("data-value") ?? string.Empty;

    private static void AssertNoSecrets(string html)
    {
        Assert.DoesNotContain(RabbitMQServer.Url.UserInfo, html, StringComparison.Ordinal);
        Assert.DoesNotContain("amqp://", html, StringComparison.Ordinal);
        Assert.DoesNotContain("Host=", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Username=", html, StringComparison.OrdinalIgnoreCase);
    }
}
