using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Antiforgery;
using Outboxer.Providers;

namespace Outboxer.Dashboard.Internal;

/// <summary>What every page needs: where the dashboard lives, the outboxes for the navigation, and whether actions are shown.</summary>
/// <param name="Base">The dashboard's path (the application's path base and the mapped prefix), without a trailing slash.</param>
/// <param name="Outboxes">Every outbox shown.</param>
/// <param name="ReadOnly">Whether actions are hidden.</param>
/// <param name="PreviewBytes">How much of a payload to show.</param>
internal sealed record PageContext(string Base, IReadOnlyList<DashboardOutbox> Outboxes, bool ReadOnly, int PreviewBytes)
{
    /// <summary>A link to a page of the dashboard, for an outbox (the default outbox's name is left out), with more query values.</summary>
    public string Link(string page, string? outbox = null, params (string Name, string? Value)[] query)
    {
        var link = new StringBuilder(Base).Append('/').Append(page);
        var separator = '?';
        if (!string.IsNullOrEmpty(outbox))
        {
            link.Append(separator).Append("outbox=").Append(Uri.EscapeDataString(outbox));
            separator = '&';
        }

        foreach (var (name, value) in query)
        {
            if (value is not null)
            {
                link.Append(separator).Append(name).Append('=').Append(Uri.EscapeDataString(value));
                separator = '&';
            }
        }

        return link.ToString();
    }
}

/// <summary>The figures of an outbox at one moment, read when a page is asked for.</summary>
internal sealed record Figures(OutboxStatistics Statistics, long? Retrying, double? DispatchedPerSecond);

/// <summary>The status an outbox's writer or store reported, read when the overview is asked for.</summary>
/// <param name="Title">The report's title.</param>
/// <param name="Items">The items; empty when it could not be read.</param>
/// <param name="Error">Why it could not be read, or <see langword="null"/>.</param>
internal sealed record StatusReport(string Title, IReadOnlyList<OutboxStatusItem> Items, string? Error);

/// <summary>The dashboard's pages, rendered on the server as plain HTML (forms and links only, no script).</summary>
internal static class Pages
{
    public static string Layout(PageContext context, string title, DashboardOutbox? current, Action<Html> main, int? refreshSeconds = null)
    {
        var html = new Html();
        html.Raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        if (refreshSeconds is { } refresh)
        {
            html.Raw("<meta http-equiv=\"refresh\"").Attr("content", refresh.ToString(CultureInfo.InvariantCulture)).Raw(">");
        }

        html.Raw("<title>").Text(title).Raw(" \u00b7 Outboxer</title>");
        html.Raw("<link rel=\"stylesheet\"").Attr("href", context.Base + "/dashboard.css").Raw("></head><body>");
        html.Raw("<a class=\"skip\" href=\"#main\">Skip to content</a>");
        html.Raw("<header><nav aria-label=\"Outboxes\"><a class=\"brand\"").Attr("href", context.Base + "/").Raw(">Outboxer</a><ul>");
        foreach (var outbox in context.Outboxes)
        {
            html.Raw("<li><a").Attr("href", context.Base + "/#outbox-" + Slug(outbox.Name));
            if (current == outbox)
            {
                html.Raw(" aria-current=\"true\"");
            }

            html.Raw(">").Text(outbox.DisplayName).Raw("</a></li>");
        }

        html.Raw("</ul>");
        if (context.ReadOnly)
        {
            html.Raw("<span class=\"badge\">read-only</span>");
        }

        html.Raw("</nav></header><main id=\"main\" tabindex=\"-1\">");
        main(html);
        html.Raw("</main></body></html>");
        return html.ToString();
    }

    public static void Overview(Html html, PageContext context, DashboardOutbox outbox, Figures? figures, string? error, IReadOnlyList<Sample> samples, DateTimeOffset now, TimeSpan window, StatusReport? status = null)
    {
        html.Raw("<section class=\"outbox\"").Attr("data-outbox", outbox.Name).Attr("aria-labelledby", "outbox-" + Slug(outbox.Name)).Raw(">");
        html.Raw("<h2").Attr("id", "outbox-" + Slug(outbox.Name)).Raw(">").Text(outbox.DisplayName).Raw("</h2>");
        if (status is not null)
        {
            Status(html, outbox, status);
        }

        if (outbox.Administration is null)
        {
            if (status is not null)
            {
                html.Raw("</section>");
                return;
            }

            html.Raw("<p class=\"error\">This outbox's store has no administration contract (IOutboxAdministration): nothing to show.</p></section>");
            return;
        }

        if (error is not null)
        {
            html.Raw("<p class=\"error\" role=\"alert\">Could not read the store: ").Text(error).Raw("</p>");
        }

        if (figures is not null)
        {
            var s = figures.Statistics;
            html.Raw("<dl class=\"figures\">");
            Figure(html, "pending", "Pending", s.Pending.ToString(CultureInfo.InvariantCulture), s.Pending.ToString("N0", CultureInfo.InvariantCulture));
            Figure(html, "in-flight", "In flight", s.InFlight.ToString(CultureInfo.InvariantCulture), s.InFlight.ToString("N0", CultureInfo.InvariantCulture));
            Figure(html, "retrying", "Retrying", figures.Retrying?.ToString(CultureInfo.InvariantCulture), figures.Retrying?.ToString("N0", CultureInfo.InvariantCulture) ?? "\u2014");
            Figure(html, "dead-letters", "Dead letters", s.DeadLettered.ToString(CultureInfo.InvariantCulture), s.DeadLettered.ToString("N0", CultureInfo.InvariantCulture), s.DeadLettered > 0 ? "warn" : null);
            Figure(html, "lag", "Oldest pending", s.Lag.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture), s.OldestPendingCreatedAt is null ? "none pending" : Html.Duration(s.Lag));
            Figure(html, "dispatched-per-second", "Dispatched/s", figures.DispatchedPerSecond?.ToString("0.###", CultureInfo.InvariantCulture), Html.Rate(figures.DispatchedPerSecond));
            html.Raw("</dl>");
        }

        html.Raw("<div class=\"charts\">");
        Charts.Line(html, "Backlog", string.Empty, [.. samples.Select(x => (x.TakenAt, (double)x.Pending))], now, window, v => v.ToString("N0", CultureInfo.InvariantCulture));
        Charts.Line(html, "Lag", " s", [.. samples.Select(x => (x.TakenAt, x.Lag.TotalSeconds))], now, window, v => v.ToString("0.#", CultureInfo.InvariantCulture));
        Charts.Line(html, "Dispatched per second", "/s", [.. samples.Where(x => x.DispatchedPerSecond is not null).Select(x => (x.TakenAt, x.DispatchedPerSecond!.Value))], now, window, v => Html.Rate(v));
        html.Raw("</div>");

        html.Raw("<p class=\"links\"><a").Attr("href", context.Link("destinations", outbox.Name)).Raw(">Destinations</a> <a").Attr("href", context.Link("dead-letters", outbox.Name)).Raw(">Dead letters</a> <a")
            .Attr("href", context.Link("message", outbox.Name)).Raw(">Find a message</a></p></section>");
    }

    /// <summary>What an outbox's writer or store reported of its own state (<see cref="IOutboxStatusReport"/>), or why it could not.</summary>
    private static void Status(Html html, DashboardOutbox outbox, StatusReport status)
    {
        var id = "status-" + Slug(outbox.Name);
        html.Raw("<section class=\"status\"").Attr("aria-labelledby", id).Raw("><h3").Attr("id", id).Raw(">").Text(status.Title).Raw("</h3>");
        if (status.Error is not null)
        {
            html.Raw("<p class=\"error\" role=\"alert\">Could not read the status: ").Text(status.Error).Raw("</p>");
        }

        if (status.Items.Count > 0)
        {
            html.Raw("<dl class=\"status-items\">");
            foreach (var item in status.Items)
            {
                html.Raw(item.IsProblem ? "<div class=\"status-item problem\"" : "<div class=\"status-item\"").Attr("data-label", item.Label).Raw("><dt>").Text(item.Label).Raw("</dt><dd>")
                    .Text(item.Value).Raw("</dd></div>");
            }

            html.Raw("</dl>");
        }

        html.Raw("</section>");
    }

    public static void Destinations(Html html, DashboardOutbox outbox, IReadOnlyList<OutboxDestinationStatistics> destinations, DateTimeOffset now)
    {
        html.Raw("<h1>Destinations of ").Text(outbox.DisplayName).Raw("</h1>");
        html.Raw("<p>Messages not dispatched yet, by the exchange, queue, stream or topic their event stream named at enqueue.</p>");
        if (destinations.Count == 0)
        {
            html.Raw("<p class=\"empty\">Nothing is pending and there are no dead letters.</p>");
            return;
        }

        html.Raw("<div class=\"table\" role=\"region\" aria-label=\"Destinations\" tabindex=\"0\"><table id=\"destinations\"><thead><tr><th scope=\"col\">Destination</th><th scope=\"col\" class=\"num\">Pending</th><th scope=\"col\" class=\"num\">Dead letters</th><th scope=\"col\">Oldest pending</th></tr></thead><tbody>");
        foreach (var d in destinations)
        {
            html.Raw("<tr").Attr("data-destination", d.Destination ?? string.Empty).Raw("><th scope=\"row\">").Text(d.Destination ?? "(none)").Raw("</th>");
            html.Raw("<td class=\"num\" data-figure=\"pending\">").Text(d.Pending).Raw("</td><td class=\"num\" data-figure=\"dead-letters\">").Text(d.DeadLettered).Raw("</td><td>");
            html.Text(d.OldestPendingCreatedAt is { } oldest ? Html.Duration(now > oldest ? now - oldest : TimeSpan.Zero) : "\u2014").Raw("</td></tr>");
        }

        html.Raw("</tbody></table></div>");
    }

    public static void DeadLetters(Html html, PageContext context, DashboardOutbox outbox, IReadOnlyList<OutboxMessage> page, bool more, long after, string? done)
    {
        html.Raw("<h1>Dead letters of ").Text(outbox.DisplayName).Raw("</h1>");
        if (done is not null)
        {
            html.Raw("<p class=\"done\" role=\"status\" id=\"done\">").Text(done).Raw("</p>");
        }

        if (page.Count == 0)
        {
            html.Raw("<p class=\"empty\" id=\"no-dead-letters\">").Text(after > 0 ? "No more dead letters." : "No dead letters.").Raw("</p>");
            if (after > 0)
            {
                html.Raw("<p><a").Attr("href", context.Link("dead-letters", outbox.Name)).Raw(">First page</a></p>");
            }

            return;
        }

        if (!context.ReadOnly)
        {
            html.Raw("<form method=\"get\" id=\"dead-letters-form\"").Attr("action", context.Link("confirm")).Raw(">");
            html.Raw("<input type=\"hidden\" name=\"outbox\"").Attr("value", outbox.Name).Raw(">");
        }

        html.Raw("<div class=\"table\" role=\"region\" aria-label=\"Dead letters\" tabindex=\"0\"><table id=\"dead-letters\"><thead><tr>");
        if (!context.ReadOnly)
        {
            html.Raw("<th scope=\"col\"><span class=\"visually-hidden\">Select</span></th>");
        }

        html.Raw("<th scope=\"col\">Id</th><th scope=\"col\">Destination</th><th scope=\"col\" class=\"num\">Attempts</th><th scope=\"col\">Dead-lettered</th><th scope=\"col\">Last error and payload</th></tr></thead><tbody>");
        foreach (var message in page)
        {
            var id = message.Id.ToString(CultureInfo.InvariantCulture);
            html.Raw("<tr").Attr("data-id", id).Raw(">");
            if (!context.ReadOnly)
            {
                html.Raw("<td><input type=\"checkbox\" name=\"id\"").Attr("value", id).Attr("id", "select-" + id).Raw("><label class=\"visually-hidden\"").Attr("for", "select-" + id).Raw(">Select message ").Text(id).Raw("</label></td>");
            }

            html.Raw("<td><a").Attr("href", context.Link("message", outbox.Name, ("q", id))).Raw(">").Text(id).Raw("</a></td>");
            html.Raw("<td>").Text(message.Destination ?? "(none)").Raw("</td><td class=\"num\">").Text(message.Attempts).Raw("</td><td>").Time(message.DeadLetteredAt).Raw("</td>");
            html.Raw("<td>");
            MayHaveBeenPublished(html, message);
            html.Raw("<p class=\"last-error\">").Text(Shorten(message.LastError ?? "(no error recorded)", 300)).Raw("</p>");
            html.Raw("<details><summary>Payload, headers").Raw(message.LastError is { Length: > 300 } ? " and the whole error" : string.Empty).Raw("</summary>");
            if (message.LastError is { Length: > 300 })
            {
                html.Raw("<pre class=\"error-text\">").Text(message.LastError).Raw("</pre>");
            }

            MessageBody(html, context, message);
            html.Raw("</details>");
            if (!context.ReadOnly)
            {
                html.Raw("<p class=\"row-actions\"><a").Attr("href", context.Link("confirm", outbox.Name, ("do", "requeue"), ("id", id))).Raw(">Requeue<span class=\"visually-hidden\"> message ").Text(id).Raw("</span></a> <a")
                    .Attr("href", context.Link("confirm", outbox.Name, ("do", "purge"), ("id", id))).Raw(">Purge<span class=\"visually-hidden\"> message ").Text(id).Raw("</span></a></p>");
            }

            html.Raw("</td></tr>");
        }

        html.Raw("</tbody></table></div>");
        if (!context.ReadOnly)
        {
            html.Raw("<p class=\"actions\"><button type=\"submit\" name=\"do\" value=\"requeue\">Requeue selected</button> <button type=\"submit\" name=\"do\" value=\"purge\">Purge selected</button></p></form>");
            html.Raw("<p class=\"actions\"><a class=\"button\"").Attr("href", context.Link("confirm", outbox.Name, ("do", "requeue"), ("all", "true"))).Raw(">Requeue all dead letters</a> <a class=\"button danger\"")
                .Attr("href", context.Link("confirm", outbox.Name, ("do", "purge"), ("all", "true"))).Raw(">Purge all dead letters</a></p>");
        }

        html.Raw("<nav class=\"pages\" aria-label=\"Pages\">");
        if (after > 0)
        {
            html.Raw("<a").Attr("href", context.Link("dead-letters", outbox.Name)).Raw(">First page</a> ");
        }

        if (more)
        {
            html.Raw("<a rel=\"next\"").Attr("href", context.Link("dead-letters", outbox.Name, ("after", page[^1].Id.ToString(CultureInfo.InvariantCulture)))).Raw(">Next page</a>");
        }

        html.Raw("</nav>");
    }

    public static void Confirm(Html html, PageContext context, DashboardOutbox outbox, string action, IReadOnlyList<long>? ids, AntiforgeryTokenSet tokens)
    {
        var verb = action == "requeue" ? "Requeue" : "Purge";
        var what = ids is null ? "every dead letter" : ids.Count == 1 ? $"dead letter {ids[0].ToString(CultureInfo.InvariantCulture)}" : $"{ids.Count.ToString(CultureInfo.InvariantCulture)} dead letters";
        html.Raw("<h1>").Text($"{verb} {what} of {outbox.DisplayName}?").Raw("</h1>");
        html.Raw("<p>").Text(action == "requeue"
            ? "They become pending again with their attempts reset, and the dispatcher publishes them."
            : "They are deleted from the outbox table. This cannot be undone.").Raw("</p>");
        if (ids is { Count: > 1 })
        {
            html.Raw("<p>Ids: ").Text(string.Join(", ", ids.Take(100).Select(i => i.ToString(CultureInfo.InvariantCulture)))).Text(ids.Count > 100 ? ", \u2026" : string.Empty).Raw("</p>");
        }

        html.Raw("<form method=\"post\" id=\"confirm-form\"").Attr("action", context.Link("dead-letters/" + action)).Raw(">");
        html.Raw("<input type=\"hidden\"").Attr("name", tokens.FormFieldName).Attr("value", tokens.RequestToken).Raw(">");
        html.Raw("<input type=\"hidden\" name=\"outbox\"").Attr("value", outbox.Name).Raw(">");
        if (ids is null)
        {
            html.Raw("<input type=\"hidden\" name=\"all\" value=\"true\">");
        }
        else
        {
            foreach (var id in ids)
            {
                html.Raw("<input type=\"hidden\" name=\"id\"").Attr("value", id.ToString(CultureInfo.InvariantCulture)).Raw(">");
            }
        }

        html.Raw("<p class=\"actions\"><button type=\"submit\" id=\"confirm\"").Attr("class", action == "purge" ? "danger" : null).Raw(">").Text($"Yes, {verb.ToLowerInvariant()} {what}").Raw("</button> <a")
            .Attr("href", context.Link("dead-letters", outbox.Name)).Raw(">Cancel</a></p></form>");
    }

    public static void Message(Html html, PageContext context, DashboardOutbox outbox, string? query, OutboxMessage? message, string? problem)
    {
        html.Raw("<h1>Find a message in ").Text(outbox.DisplayName).Raw("</h1>");
        html.Raw("<form method=\"get\" class=\"search\"").Attr("action", context.Link("message")).Raw(">");
        html.Raw("<input type=\"hidden\" name=\"outbox\"").Attr("value", outbox.Name).Raw(">");
        html.Raw("<label for=\"q\">Id or message id</label> <input id=\"q\" name=\"q\" type=\"search\" autocomplete=\"off\" spellcheck=\"false\"").Attr("value", query)
            .Raw("> <button type=\"submit\">Find</button></form>");
        if (problem is not null)
        {
            html.Raw("<p class=\"error\" role=\"alert\" id=\"problem\">").Text(problem).Raw("</p>");
        }

        if (message is null)
        {
            return;
        }

        var state = StateOf(message);
        html.Raw("<section aria-labelledby=\"message-title\" id=\"message\"").Attr("data-state", state.Key).Raw("><h2 id=\"message-title\">Message ").Text(message.Id).Raw("</h2><dl class=\"fields\">");
        Field(html, "State", state.Label);
        Field(html, "Id", message.Id.ToString(CultureInfo.InvariantCulture));
        Field(html, "Message id", message.MessageId.ToString());
        Field(html, "Destination", message.Destination ?? "(none)");
        Field(html, "Ordering key", message.OrderingKey ?? "(none)");
        html.Raw("<dt>Enqueued</dt><dd>").Time(message.CreatedAt).Raw("</dd>");
        Field(html, "Attempts", message.Attempts.ToString(CultureInfo.InvariantCulture));
        Field(html, "Attempts with unknown outcome", message.UncertainAttempts.ToString(CultureInfo.InvariantCulture));
        html.Raw("<dt>Dispatched</dt><dd>").Time(message.DispatchedAt).Raw("</dd>");
        html.Raw("<dt>Dead-lettered</dt><dd>").Time(message.DeadLetteredAt).Raw("</dd>");
        html.Raw("<dt>Last error</dt><dd><pre class=\"error-text\">").Text(message.LastError ?? "(none)").Raw("</pre></dd></dl>");
        MessageBody(html, context, message);
        if (message.DeadLetteredAt is not null && !context.ReadOnly)
        {
            var id = message.Id.ToString(CultureInfo.InvariantCulture);
            html.Raw("<p class=\"actions\"><a class=\"button\"").Attr("href", context.Link("confirm", outbox.Name, ("do", "requeue"), ("id", id))).Raw(">Requeue</a> <a class=\"button danger\"")
                .Attr("href", context.Link("confirm", outbox.Name, ("do", "purge"), ("id", id))).Raw(">Purge</a></p>");
        }

        html.Raw("</section>");
    }

    public static void Problem(Html html, string title, string text) =>
        html.Raw("<h1>").Text(title).Raw("</h1><p class=\"error\" role=\"alert\">").Text(text).Raw("</p>");

    private static void MessageBody(Html html, PageContext context, OutboxMessage message)
    {
        var preview = PayloadPreview.Format(message.Payload, context.PreviewBytes);
        html.Raw("<h3>Payload <small>").Text(preview.Description).Raw("</small></h3><pre class=\"payload\"").Attr("data-kind", preview.Kind.ToString().ToLowerInvariant()).Raw(">").Text(preview.Text).Raw("</pre>");
        if (preview.Cut)
        {
            html.Raw("<p class=\"note\">").Text($"Cut after {context.PreviewBytes.ToString("N0", CultureInfo.InvariantCulture)} bytes of {preview.TotalBytes.ToString("N0", CultureInfo.InvariantCulture)}.").Raw("</p>");
        }

        Values(html, "Headers", message.Headers);
        Values(html, "Options", message.Options);
    }

    private static void Values(Html html, string title, OutboxValues values)
    {
        html.Raw("<h3>").Text(title).Raw("</h3>");
        if (values.Count == 0)
        {
            html.Raw("<p class=\"empty\">(none)</p>");
            return;
        }

        html.Raw("<dl class=\"values\">");
        foreach (var (key, value) in values.OrderBy(v => v.Key, StringComparer.Ordinal))
        {
            html.Raw("<dt>").Text(key).Raw("</dt><dd>").Text(Shorten(Convert.ToString(value, CultureInfo.InvariantCulture) ?? "null", 1000)).Raw("</dd>");
        }

        html.Raw("</dl>");
    }

    private static (string Key, string Label) StateOf(OutboxMessage message) => message switch
    {
        { Dispatched: true } => ("dispatched", "Dispatched"),
        { DeadLetteredAt: not null } => ("dead-letter", "Dead letter"),
        { LastError: not null } => ("retrying", "Retrying (failed before)"),
        _ => ("pending", "Pending"),
    };

    private static void Figure(Html html, string key, string label, string? value, string shown, string? cssClass = null)
    {
        html.Raw("<div").Attr("class", cssClass is null ? "figure" : "figure " + cssClass).Raw("><dt>").Text(label).Raw("</dt><dd").Attr("data-figure", key).Attr("data-value", value ?? string.Empty).Raw(">").Text(shown).Raw("</dd></div>");
    }

    // An attempt that was sent but never answered: the broker may have this dead letter already, and a requeue may publish it twice.
    private static void MayHaveBeenPublished(Html html, OutboxMessage message)
    {
        if (message.UncertainAttempts > 0)
        {
            html.Raw("<p class=\"may-have-been-published\"><strong>May have been published</strong>: ").Text(message.UncertainAttempts)
                .Raw(" attempt(s) sent without an answer; requeueing may publish it twice.</p>");
        }
    }

    private static void Field(Html html, string label, string value) => html.Raw("<dt>").Text(label).Raw("</dt><dd>").Text(value).Raw("</dd>");

    private static string Shorten(string text, int length) => text.Length <= length ? text : string.Concat(text.AsSpan(0, length), "\u2026");

    internal static string Slug(string name) => name.Length == 0 ? "default" : Convert.ToHexString(Encoding.UTF8.GetBytes(name)).ToLowerInvariant();
}
