using Microsoft.Extensions.DependencyInjection;
using OpenQA.Selenium;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Xunit;

namespace Outboxer.Dashboard.Tests;

/// <summary>
/// An outbox in PostgreSQL's log mode on the dashboard, in a real browser, over a real replication slot: the overview shows the slot's
/// figures (<see cref="IOutboxStatusReport"/> of <see cref="PostgreSqlLogWriter"/>).
/// </summary>
public sealed class DashboardLogModeTests
{
    private const string LogOutbox = "logmode";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_overview_shows_the_slot_name_and_its_lag_for_an_outbox_in_log_mode()
    {
        var suffix = Guid.NewGuid().ToString("N")[..12];
        var options = new PostgreSqlLogOptions
        {
            Prefix = $"dash_{suffix}",
            SlotName = $"dash_slot_{suffix}",
            PublicationName = $"dash_pub_{suffix}",
            SchemaName = $"dash_log_{suffix}",
        };
        await using var app = await DashboardApp.StartAsync(services: s => s
            .AddOutboxer(LogOutbox, o => o.RunDispatcher = false)
            .UsePostgreSqlLog(o =>
            {
                o.Prefix = options.Prefix;
                o.SlotName = options.SlotName;
                o.PublicationName = options.PublicationName;
                o.SchemaName = options.SchemaName;
            }));
        var setup = new PostgreSqlLogSetup(app.DataSource, options);
        try
        {
            var status = await setup.SetupAsync(Ct);
            Assert.Empty(status.Problems);
            var outbox = app.App.Services.GetRequiredKeyedService<Outbox>(LogOutbox);
            await outbox.SendAsync(new OutboxMessage("{\"order\":1}"), Ct);

            using var browser = Browser.Start();
            browser.SignInAsOperator(app);
            browser.GoTo(app.BaseUrl + "/");
            var section = browser.Find($"section.outbox[data-outbox='{LogOutbox}']");
            Assert.Equal("Log mode", section.FindElement(By.CssSelector("section.status h3")).Text);
            Assert.Equal(options.SlotName, Item(section, "Slot"));
            var lag = Item(section, "Lag");
            Assert.EndsWith(" bytes", lag, StringComparison.Ordinal);
            Assert.True(long.Parse(lag[..^" bytes".Length].Replace(",", string.Empty, StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture) > 0, $"The lag is {lag}.");
            Assert.Equal("none", Item(section, "Relay"));
            Assert.Empty(section.FindElements(By.CssSelector(".status-item.problem")));
            Assert.Empty(browser.Driver.FindElements(By.TagName("script")));
            browser.Screenshot("log-mode");
        }
        finally
        {
            await setup.DropAsync(CancellationToken.None);
            await using var drop = app.DataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{options.SchemaName}\" CASCADE");
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    private static string Item(IWebElement section, string label) =>
        section.FindElement(By.CssSelector($".status-item[data-label='{label}'] dd")).Text;
}
