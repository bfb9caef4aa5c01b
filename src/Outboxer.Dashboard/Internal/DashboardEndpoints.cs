using System.Globalization;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Outboxer.Dashboard.Internal;

/// <summary>The request handlers of the dashboard's pages and actions.</summary>
internal sealed class DashboardEndpoints(string prefix)
{
    private const string RequeueAction = "requeue";
    private const string PurgeAction = "purge";

    public async Task OverviewAsync(HttpContext context)
    {
        var (page, services, options) = Context(context);
        var sampler = services.GetRequiredService<Sampler>();
        var time = services.GetRequiredService<TimeProvider>();
        var now = time.GetUtcNow();
        var sections = new List<Action<Html>>();
        foreach (var outbox in page.Outboxes)
        {
            Figures? figures = null;
            var error = sampler.ErrorOf(outbox.Name);
            if (outbox.Administration is { } administration)
            {
                try
                {
                    var statistics = await administration.GetStatisticsAsync(now, context.RequestAborted).ConfigureAwait(false);
                    long? retrying;
                    try
                    {
                        retrying = await administration.CountRetryingAsync(context.RequestAborted).ConfigureAwait(false);
                    }
                    catch (NotSupportedException)
                    {
                        retrying = null;
                    }

                    var latest = sampler.SamplesOf(outbox.Name) is { Count: > 0 } samples ? samples[^1].DispatchedPerSecond : null;
                    figures = new Figures(statistics, retrying, latest);
                    error = null;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    error = ex.Message;
                }
            }

            StatusReport? status = null;
            if (outbox.StatusReport is { } report)
            {
                try
                {
                    status = new StatusReport(report.StatusTitle, await report.GetStatusAsync(context.RequestAborted).ConfigureAwait(false), null);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    status = new StatusReport(report.StatusTitle, [], ex.Message);
                }
            }

            // The charts span the time this dashboard has sampled (at least a minute), up to the whole history.
            var samplesOf = sampler.SamplesOf(outbox.Name);
            var window = samplesOf.Count == 0 ? options.History : TimeSpan.FromTicks(Math.Clamp((now - samplesOf[0].TakenAt).Ticks, TimeSpan.TicksPerMinute, options.History.Ticks));
            sections.Add(html => Pages.Overview(html, page, outbox, figures, error, samplesOf, now, window, status));
        }

        var refresh = int.TryParse(context.Request.Query["refresh"], NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds is >= 5 and <= 3600 ? seconds : (int?)null;
        await WriteAsync(context, 200, Pages.Layout(page, "Overview", null, html =>
        {
            html.Raw("<h1>Overview</h1>");
            if (page.Outboxes.Count == 0)
            {
                html.Raw("<p class=\"empty\">No outbox is registered (AddOutboxer) and no store was added.</p>");
            }

            foreach (var section in sections)
            {
                section(html);
            }

            html.Raw("<p class=\"note\">Charts: the last ").Text(Html.Duration(options.History)).Raw(", one sample every ").Text(Html.Duration(options.SampleInterval))
                .Raw(", taken by this dashboard while it runs. <a").Attr("href", page.Link(string.Empty, null, ("refresh", refresh is null ? "10" : null)))
                .Raw(">").Text(refresh is null ? "Refresh every 10 s" : "Stop refreshing").Raw("</a></p>");
        }, refresh)).ConfigureAwait(false);
    }

    public async Task DestinationsAsync(HttpContext context)
    {
        var (page, services, _) = Context(context);
        if (await OutboxOrNotFoundAsync(context, page).ConfigureAwait(false) is not { } outbox)
        {
            return;
        }

        var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
        var destinations = await outbox.Administration!.GetDestinationStatisticsAsync(context.RequestAborted).ConfigureAwait(false);
        await WriteAsync(context, 200, Pages.Layout(page, $"Destinations of {outbox.DisplayName}", outbox, html => Pages.Destinations(html, outbox, destinations, now))).ConfigureAwait(false);
    }

    public async Task DeadLettersAsync(HttpContext context)
    {
        var (page, _, options) = Context(context);
        if (await OutboxOrNotFoundAsync(context, page).ConfigureAwait(false) is not { } outbox)
        {
            return;
        }

        var afterText = context.Request.Query["after"].ToString();
        var after = 0L;
        if (afterText.Length > 0 && (!long.TryParse(afterText, NumberStyles.None, CultureInfo.InvariantCulture, out after)))
        {
            await BadRequestAsync(context, page, $"'after' must be a message id (a whole number of 0 or more), not '{afterText}'.").ConfigureAwait(false);
            return;
        }

        var rows = await outbox.Administration!.GetDeadLettersAsync(options.PageSize + 1, after, context.RequestAborted).ConfigureAwait(false);
        var more = rows.Count > options.PageSize;
        var shown = more ? rows.Take(options.PageSize).ToList() : rows;
        var done = Done(context.Request.Query["done"], context.Request.Query["count"]);
        await WriteAsync(context, 200, Pages.Layout(page, $"Dead letters of {outbox.DisplayName}", outbox, html => Pages.DeadLetters(html, page, outbox, shown, more, after, done))).ConfigureAwait(false);
    }

    public async Task ConfirmAsync(HttpContext context)
    {
        var (page, services, _) = Context(context);
        if (page.ReadOnly)
        {
            await ForbiddenAsync(context, page).ConfigureAwait(false);
            return;
        }

        if (await OutboxOrNotFoundAsync(context, page).ConfigureAwait(false) is not { } outbox)
        {
            return;
        }

        var action = context.Request.Query["do"].ToString();
        if (action is not (RequeueAction or PurgeAction))
        {
            await BadRequestAsync(context, page, $"'do' must be '{RequeueAction}' or '{PurgeAction}', not '{action}'.").ConfigureAwait(false);
            return;
        }

        var (ids, problem) = Ids(context.Request.Query["all"], context.Request.Query["id"]);
        if (problem is not null)
        {
            await BadRequestAsync(context, page, problem).ConfigureAwait(false);
            return;
        }

        var tokens = services.GetRequiredService<IAntiforgery>().GetAndStoreTokens(context);
        await WriteAsync(context, 200, Pages.Layout(page, "Confirm", outbox, html => Pages.Confirm(html, page, outbox, action, ids, tokens))).ConfigureAwait(false);
    }

    public async Task ActAsync(HttpContext context, string action)
    {
        var (page, services, _) = Context(context);
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("Outboxer.Dashboard");
        if (page.ReadOnly)
        {
            await ForbiddenAsync(context, page).ConfigureAwait(false);
            return;
        }

        try
        {
            await services.GetRequiredService<IAntiforgery>().ValidateRequestAsync(context).ConfigureAwait(false);
        }
        catch (AntiforgeryValidationException ex)
        {
            Log.ForgeryRefused(logger, ex);
            await WriteAsync(context, 400, Pages.Layout(page, "Refused", null, html => Pages.Problem(html, "Refused",
                "This request did not carry the dashboard's antiforgery token: it did not come from a confirmation page of this dashboard, or that page is too old. Nothing was changed."))).ConfigureAwait(false);
            return;
        }

        if (action is not (RequeueAction or PurgeAction))
        {
            await NotFoundAsync(context, page).ConfigureAwait(false);
            return;
        }

        var form = await context.Request.ReadFormAsync(context.RequestAborted).ConfigureAwait(false);
        var outbox = page.Outboxes.FirstOrDefault(o => string.Equals(o.Name, form["outbox"].ToString(), StringComparison.Ordinal));
        if (outbox?.Administration is not { } administration)
        {
            await NotFoundAsync(context, page).ConfigureAwait(false);
            return;
        }

        var (ids, problem) = Ids(form["all"], form["id"]);
        if (problem is not null)
        {
            await BadRequestAsync(context, page, problem).ConfigureAwait(false);
            return;
        }

        var scope = ids is null ? "all" : "ids " + string.Join(", ", ids.Take(20).Select(i => i.ToString(CultureInfo.InvariantCulture))) + (ids.Count > 20 ? ", ..." : string.Empty);
        int count;
        if (action == RequeueAction)
        {
            count = await administration.RequeueDeadLettersAsync(ids, context.RequestAborted).ConfigureAwait(false);
            Log.Requeued(logger, count, outbox.DisplayName, scope);
            // The dispatcher of this process, if there is one, publishes them now instead of at its next poll.
            services.GetKeyedService<Outbox>(outbox.Name)?.Wake();
        }
        else
        {
            count = await administration.PurgeDeadLettersAsync(ids, context.RequestAborted).ConfigureAwait(false);
            Log.Purged(logger, count, outbox.DisplayName, scope);
        }

        context.Response.Headers.CacheControl = "no-store";
        context.Response.Redirect(page.Link("dead-letters", outbox.Name, ("done", action == RequeueAction ? "requeued" : "purged"), ("count", count.ToString(CultureInfo.InvariantCulture))));
        context.Response.StatusCode = StatusCodes.Status303SeeOther;
    }

    public async Task MessageAsync(HttpContext context)
    {
        var (page, _, _) = Context(context);
        if (await OutboxOrNotFoundAsync(context, page).ConfigureAwait(false) is not { } outbox)
        {
            return;
        }

        var query = context.Request.Query["q"].ToString().Trim();
        OutboxMessage? message = null;
        string? problem = null;
        var status = 200;
        if (query.Length > 0)
        {
            try
            {
                if (long.TryParse(query, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                {
                    message = await outbox.Administration!.GetMessageAsync(id, context.RequestAborted).ConfigureAwait(false);
                }
                else if (Guid.TryParse(query, out var messageId))
                {
                    message = await outbox.Administration!.GetMessageByMessageIdAsync(messageId, context.RequestAborted).ConfigureAwait(false);
                }
                else
                {
                    problem = $"'{query}' is neither an id (a whole number) nor a message id (a GUID).";
                    status = 400;
                }

                if (message is null && problem is null)
                {
                    problem = $"No message with id or message id '{query}' (it may have been dispatched and deleted by the cleanup).";
                    status = 404;
                }
            }
            catch (NotSupportedException ex)
            {
                problem = ex.Message;
                status = 501;
            }
        }

        await WriteAsync(context, status, Pages.Layout(page, $"Find a message in {outbox.DisplayName}", outbox, html => Pages.Message(html, page, outbox, query, message, problem))).ConfigureAwait(false);
    }

    /// <summary>
    /// Wraps a handler so that a store that cannot be read (down, a table of another layout version) gives a page that says why, with
    /// status 503, instead of a bare 500.
    /// </summary>
    public RequestDelegate Guarded(Func<HttpContext, Task> handler) => async context =>
    {
        try
        {
            await handler(context).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException && !context.Response.HasStarted)
        {
            var (page, services, _) = Context(context);
            Log.PageFailed(services.GetRequiredService<ILoggerFactory>().CreateLogger("Outboxer.Dashboard"), ex, context.Request.Path.Value ?? string.Empty);
            context.Response.Clear();
            await WriteAsync(context, 503, Pages.Layout(page, "Store unavailable", null, html => Pages.Problem(html, "Store unavailable", $"Could not read the outbox store: {ex.Message}")))
                .ConfigureAwait(false);
        }
    };

    public static Task StylesAsync(HttpContext context)
    {
        context.Response.ContentType = "text/css; charset=utf-8";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers.XContentTypeOptions = "nosniff";
        return context.Response.WriteAsync(Styles.Css, context.RequestAborted);
    }

    private (PageContext Page, IServiceProvider Services, OutboxerDashboardOptions Options) Context(HttpContext context)
    {
        var services = context.RequestServices;
        var options = services.GetRequiredService<IOptions<OutboxerDashboardOptions>>().Value;
        var outboxes = services.GetRequiredService<DashboardOutboxes>();
        var page = new PageContext(context.Request.PathBase.Add(prefix).Value?.TrimEnd('/') ?? string.Empty, outboxes.All, options.ReadOnly, options.PreviewBytes);
        return (page, services, options);
    }

    private static async Task<DashboardOutbox?> OutboxOrNotFoundAsync(HttpContext context, PageContext page)
    {
        var name = context.Request.Query["outbox"].ToString();
        var outbox = page.Outboxes.FirstOrDefault(o => string.Equals(o.Name, name, StringComparison.Ordinal));
        if (outbox?.Administration is null)
        {
            await NotFoundAsync(context, page).ConfigureAwait(false);
            return null;
        }

        return outbox;
    }

    /// <summary>The ids of a request: every dead letter (<c>all=true</c>), or at least one id, each a whole number.</summary>
    private static (IReadOnlyList<long>? Ids, string? Problem) Ids(string? all, IEnumerable<string?> values)
    {
        if (string.Equals(all, "true", StringComparison.Ordinal))
        {
            return (null, null);
        }

        var ids = new List<long>();
        foreach (var value in values)
        {
            if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id <= 0)
            {
                return ([], $"Each 'id' must be a message id (a whole number above 0), not '{value}'.");
            }

            ids.Add(id);
        }

        return ids.Count == 0 ? ([], "Select at least one dead letter, or choose all of them.") : (ids.Distinct().ToList(), null);
    }

    private static string? Done(string? action, string? countText)
    {
        if (!int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out var count))
        {
            return null;
        }

        var what = count == 1 ? "1 dead letter" : $"{count.ToString(CultureInfo.InvariantCulture)} dead letters";
        return action switch
        {
            "requeued" => $"Requeued {what}: the dispatcher publishes them.",
            "purged" => $"Purged {what}.",
            _ => null,
        };
    }

    private static Task NotFoundAsync(HttpContext context, PageContext page) =>
        WriteAsync(context, 404, Pages.Layout(page, "Not found", null, html => Pages.Problem(html, "Not found", "No such page or outbox here.")));

    private static Task BadRequestAsync(HttpContext context, PageContext page, string problem) =>
        WriteAsync(context, 400, Pages.Layout(page, "Bad request", null, html => Pages.Problem(html, "Bad request", problem)));

    private static Task ForbiddenAsync(HttpContext context, PageContext page) =>
        WriteAsync(context, 403, Pages.Layout(page, "Read-only", null, html => Pages.Problem(html, "Read-only", "This dashboard is read-only: it does not requeue or purge.")));

    private static Task WriteAsync(HttpContext context, int status, string html)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = "text/html; charset=utf-8";
        response.Headers.CacheControl = "no-store";
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers.XFrameOptions = "DENY";
        response.Headers["Referrer-Policy"] = "no-referrer";
        // Nothing but the dashboard's own stylesheet loads; no script runs; forms post only to the dashboard.
        response.Headers.ContentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
        return response.WriteAsync(html, context.RequestAborted);
    }
}
