using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Reflection;

namespace Outboxer.Internal;

/// <summary>
/// The library's one <see cref="ActivitySource"/> and one <see cref="Meter"/>, both named <c>Outboxer</c>, with instrument names from
/// OpenTelemetry's messaging conventions where they exist.
/// </summary>
internal static class Telemetry
{
    public const string Name = "Outboxer";
    public const string TraceParent = "traceparent";
    public const string TraceState = "tracestate";

    private static readonly string? Version = typeof(Telemetry).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;

    public static readonly ActivitySource Source = new(Name, Version);

    private static readonly Meter Meter = new(Name, Version);

    // https://opentelemetry.io/docs/specs/semconv/messaging/messaging-metrics/
    public static readonly Counter<long> SentMessages = Meter.CreateCounter<long>(
        "messaging.client.sent.messages", "{message}", "Messages the broker confirmed.");

    public static readonly Histogram<double> OperationDuration = Meter.CreateHistogram<double>(
        "messaging.client.operation.duration", "s", "Time from handing a batch to the event stream to its last confirmation.");

    public static readonly Counter<long> FailedMessages = Meter.CreateCounter<long>(
        "outboxer.messages.failed", "{message}", "Publish attempts that failed; the message is retried after a delay.");

    public static readonly Counter<long> RetriedMessages = Meter.CreateCounter<long>(
        "outboxer.messages.retried", "{message}", "Failed messages scheduled for another attempt.");

    public static readonly Counter<long> DeadLetteredMessages = Meter.CreateCounter<long>(
        "outboxer.messages.dead_lettered", "{message}", "Messages moved to the dead letters.");

    public static readonly Counter<long> PossibleDuplicates = Meter.CreateCounter<long>(
        "outboxer.messages.possible_duplicates", "{message}", "Messages that may reach the broker twice: a publish with an unknown outcome, a lease lost before the mark, or a mark that failed.");

    public static readonly Counter<long> ClaimedMessages = Meter.CreateCounter<long>(
        "outboxer.messages.claimed", "{message}", "Messages claimed from the store for publishing.");

    public static readonly Counter<long> EnqueuedMessages = Meter.CreateCounter<long>(
        "outboxer.messages.enqueued", "{message}", "Messages written to the outbox (counted at insert; a rolled-back transaction is included).");

    public static readonly Counter<long> DeletedMessages = Meter.CreateCounter<long>(
        "outboxer.messages.deleted", "{message}", "Dispatched messages the cleanup deleted.");

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<object, OutboxStatistics> Snapshots = new();

    // The backlog and the lag as of each outbox's latest statistics (taken by every cleanup run and every health check).
    private static readonly ObservableGauge<long> Backlog = Meter.CreateObservableGauge(
        "outboxer.backlog", () => Snapshots.Values.Select(s => new Measurement<long>(s.Pending)), "{message}", "Messages waiting to be dispatched.");

    private static readonly ObservableGauge<double> Lag = Meter.CreateObservableGauge(
        "outboxer.lag", () => Snapshots.Values.Select(s => new Measurement<double>(s.Lag.TotalSeconds)), "s", "Age of the oldest pending message.");

    private static readonly ObservableGauge<long> DeadLetters = Meter.CreateObservableGauge(
        "outboxer.dead_letters", () => Snapshots.Values.Select(s => new Measurement<long>(s.DeadLettered)), "{message}", "Messages in the dead letters.");

    public static void Record(object outbox, OutboxStatistics statistics) => Snapshots[outbox] = statistics;

    public static void Forget(object outbox) => Snapshots.TryRemove(outbox, out _);

    /// <summary>Starts the span of an enqueue and records the trace context in the message's headers, so the publish span and the consumer link back.</summary>
    public static Activity? StartEnqueue(OutboxMessage message)
    {
        var activity = StartCreate();
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("messaging.message.id", message.MessageId.ToString());
        }

        StoreContext(activity ?? Activity.Current, message);
        return activity;
    }

    /// <summary>Starts the one span of a bulk enqueue and records its trace context in every message's headers.</summary>
    public static Activity? StartEnqueue(IReadOnlyList<OutboxMessage> messages)
    {
        var activity = StartCreate();
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("messaging.batch.message_count", messages.Count);
        }

        var context = activity ?? Activity.Current;
        foreach (var message in messages)
        {
            StoreContext(context, message);
        }

        return activity;
    }

    private static Activity? StartCreate()
    {
        var activity = Source.HasListeners() ? Source.StartActivity("create outbox", ActivityKind.Producer) : null;
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("messaging.operation.type", "create");
            activity.SetTag("messaging.operation.name", "create");
        }

        return activity;
    }

    private static void StoreContext(Activity? context, OutboxMessage message)
    {
        if (context is { IdFormat: ActivityIdFormat.W3C } && !message.Headers.ContainsKey(TraceParent))
        {
            message.Headers[TraceParent] = context.Id;
            if (!string.IsNullOrEmpty(context.TraceStateString))
            {
                message.Headers[TraceState] = context.TraceStateString;
            }
        }
    }

    /// <summary>Starts the span of one message's publish as a child of the context stored at enqueue, and puts its own context in the headers sent.</summary>
    public static Activity? StartPublish(OutboxMessage message)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        ActivityContext.TryParse(message.Headers.GetValueOrDefault(TraceParent) as string, message.Headers.GetValueOrDefault(TraceState) as string, out var parent);
        var activity = Source.StartActivity("send", ActivityKind.Producer, parent);
        if (activity is null)
        {
            return null;
        }

        if (activity.IsAllDataRequested)
        {
            activity.SetTag("messaging.operation.type", "send");
            activity.SetTag("messaging.operation.name", "send");
            activity.SetTag("messaging.message.id", message.MessageId.ToString());
            activity.SetTag("outboxer.message.db_id", message.Id);
            activity.SetTag("outboxer.message.attempt", message.Attempts);
        }

        message.Headers[TraceParent] = activity.Id;
        if (!string.IsNullOrEmpty(activity.TraceStateString))
        {
            message.Headers[TraceState] = activity.TraceStateString;
        }

        return activity;
    }

    public static void Failed(Activity? activity, Exception exception)
    {
        if (activity is null)
        {
            return;
        }

        activity.SetStatus(ActivityStatusCode.Error, exception.Message);
        if (activity.IsAllDataRequested)
        {
            activity.SetTag("error.type", exception.GetType().FullName);
        }
    }
}
