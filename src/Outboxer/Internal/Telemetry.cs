using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Reflection;
using Outboxer.Providers;

namespace Outboxer.Internal;

/// <summary>
/// One outbox's spans and metrics, to OpenTelemetry's messaging semantic conventions
/// (https://opentelemetry.io/docs/specs/semconv/messaging/). The <see cref="ActivitySource"/> is process-wide; the <see cref="Meter"/>
/// comes from the host's <see cref="IMeterFactory"/> when there is one (it owns it), otherwise the outbox owns one and disposes it
/// with itself. Every instrument and gauge belongs to this instance, so two outboxes (or two tests) never share state.
/// </summary>
internal sealed class Telemetry : IDisposable
{
    public const string TraceParent = "traceparent";
    public const string TraceState = "tracestate";

    // Attribute names: https://opentelemetry.io/docs/specs/semconv/registry/attributes/messaging/
    public const string MessagingSystem = "messaging.system";
    public const string DestinationName = "messaging.destination.name";
    public const string OperationName = "messaging.operation.name";
    public const string OperationType = "messaging.operation.type";
    public const string MessageId = "messaging.message.id";
    public const string BatchMessageCount = "messaging.batch.message_count";
    public const string ServerAddress = "server.address";
    public const string ServerPort = "server.port";
    public const string ErrorType = "error.type";

    private static readonly string? Version = typeof(Telemetry).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;

    /// <summary>The process-wide source of the outbox's spans (an <see cref="ActivitySource"/> has no factory to come from).</summary>
    public static readonly ActivitySource Source = new(OutboxerTelemetry.ActivitySourceName, Version);

    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly TimeProvider _time;
    private readonly string? _system;
    private readonly DnsEndPoint? _server;
    private OutboxStatistics? _statistics;

    public Telemetry(IMeterFactory? meterFactory, IOutboxPublisher? publisher, TimeProvider time)
    {
        _time = time;
        _system = Describe(() => publisher?.MessagingSystem);
        _server = Describe(() => publisher?.ServerEndPoint);
        if (meterFactory is not null)
        {
            // The factory owns the meter and disposes it with the host.
            _meter = meterFactory.Create(new MeterOptions(OutboxerTelemetry.MeterName) { Version = Version });
        }
        else
        {
            _meter = new Meter(OutboxerTelemetry.MeterName, Version);
            _ownsMeter = true;
        }

        // https://opentelemetry.io/docs/specs/semconv/messaging/messaging-metrics/
        SentMessages = _meter.CreateCounter<long>(
            "messaging.client.sent.messages", "{message}", "Messages the outbox attempted to send to the broker (error.type on the failed ones).");
        OperationDuration = _meter.CreateHistogram<double>(
            "messaging.client.operation.duration", "s", "Duration of one send operation: one message, or one batch for a publisher with a batch API.");
        FailedMessages = _meter.CreateCounter<long>(
            "outboxer.messages.failed", "{message}", "Publish attempts that failed; the message is retried after a delay or dead-lettered.");
        RetriedMessages = _meter.CreateCounter<long>(
            "outboxer.messages.retried", "{message}", "Failed messages scheduled for another attempt.");
        DeadLetteredMessages = _meter.CreateCounter<long>(
            "outboxer.messages.dead_lettered", "{message}", "Messages moved to the dead letters.");
        PossibleDuplicates = _meter.CreateCounter<long>(
            "outboxer.messages.possible_duplicates", "{message}", "Messages that may reach the broker twice: a publish with an unknown outcome, a lease lost before the mark, or a mark that failed.");
        ClaimedMessages = _meter.CreateCounter<long>(
            "outboxer.messages.claimed", "{message}", "Messages claimed from the store for publishing.");
        EnqueuedMessages = _meter.CreateCounter<long>(
            "outboxer.messages.enqueued", "{message}", "Messages written to the outbox (counted at insert; a rolled-back transaction is included).");
        DeletedMessages = _meter.CreateCounter<long>(
            "outboxer.messages.deleted", "{message}", "Dispatched messages the cleanup deleted.");

        // The backlog, the lag and the dead letters as of this outbox's latest statistics (every cleanup run and health check takes them).
        _meter.CreateObservableGauge("outboxer.backlog", () => Observe(s => s.Pending), "{message}", "Messages waiting to be dispatched.");
        _meter.CreateObservableGauge("outboxer.lag", () => Observe(s => s.Lag.TotalSeconds), "s", "Age of the oldest pending message.");
        _meter.CreateObservableGauge("outboxer.dead_letters", () => Observe(s => s.DeadLettered), "{message}", "Messages in the dead letters.");
    }

    /// <summary>The meter of the instruments above, for a relay that adds instruments of its own (the log mode's slot lag).</summary>
    public Meter Meter => _meter;

    public Counter<long> SentMessages { get; }

    public Histogram<double> OperationDuration { get; }

    public Counter<long> FailedMessages { get; }

    public Counter<long> RetriedMessages { get; }

    public Counter<long> DeadLetteredMessages { get; }

    /// <summary>The dispatcher's count of possible duplicates (unknown publish outcomes, leases lost before the mark).</summary>
    public Counter<long> PossibleDuplicates { get; }

    public Counter<long> ClaimedMessages { get; }

    public Counter<long> EnqueuedMessages { get; }

    public Counter<long> DeletedMessages { get; }

    /// <summary>Keeps the snapshot the gauges report.</summary>
    public void Record(OutboxStatistics statistics) => Volatile.Write(ref _statistics, statistics);

    public void Dispose()
    {
        if (_ownsMeter)
        {
            _meter.Dispose();
        }
    }

    /// <summary>Wraps <paramref name="publisher"/> so that each send is a span and is measured; the dispatcher publishes through it.</summary>
    public IOutboxPublisher Instrument(IOutboxPublisher publisher) => publisher is IOutboxBatchPublisher batch
        ? new InstrumentedBatchPublisher(batch, this)
        : new InstrumentedPublisher(publisher, this);

    /// <summary>
    /// Starts the <c>create</c> span of an enqueue and stores the message's creation context (this span's, or the caller's when nobody
    /// listens to the outbox) in its headers, where the <c>send</c> span and the consumer find it.
    /// </summary>
    public Activity? StartEnqueue(OutboxMessage message)
    {
        var activity = StartCreate(message.Destination);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag(MessageId, message.MessageId.ToString());
        }

        StoreContext(activity ?? Activity.Current, message);
        return activity;
    }

    /// <summary>Starts the one <c>create</c> span of a bulk enqueue and stores its context in every message's headers.</summary>
    public Activity? StartEnqueue(IReadOnlyList<OutboxMessage> messages)
    {
        var activity = StartCreate(CommonDestination(messages));
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag(BatchMessageCount, messages.Count);
        }

        var context = activity ?? Activity.Current;
        foreach (var message in messages)
        {
            StoreContext(context, message);
        }

        return activity;
    }

    public void Enqueued(long count) => EnqueuedMessages.Add(count);

    /// <summary>Starts the span of a claim: an internal operation on the outbox's table.</summary>
    public static Activity? StartClaim() => Source.HasListeners() ? Source.StartActivity("claim outbox") : null;

    public static void Claimed(Activity? claim, int count)
    {
        claim?.SetTag("outboxer.batch.size", count);
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
            activity.SetTag(ErrorType, exception.GetType().FullName);
        }
    }

    private Activity? StartCreate(string? destination)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        var activity = Source.StartActivity(destination is null ? "create" : $"create {destination}", ActivityKind.Producer);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag(OperationType, "create");
            activity.SetTag(OperationName, "create");
            SetCommonTags(activity, destination);
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

    private static bool TryGetCreationContext(OutboxMessage message, out ActivityContext context) =>
        ActivityContext.TryParse(message.Headers.GetValueOrDefault(TraceParent) as string, message.Headers.GetValueOrDefault(TraceState) as string, out context);

    private bool Measuring => SentMessages.Enabled || OperationDuration.Enabled || FailedMessages.Enabled;

    /// <summary>
    /// Starts the <c>send</c> span of one publish call. It links to each message's creation context (the span is a CLIENT span then, as
    /// the conventions say when a creation context exists); a message without one gets this span's context as its creation context
    /// (a PRODUCER span then), in the headers sent to the broker. The span's parent is the caller's context, not the message's.
    /// </summary>
    private Activity? StartSend(IReadOnlyList<OutboxMessage> messages, string? destination, bool batch)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        List<ActivityLink>? links = null;
        var uncreated = false;
        foreach (var message in messages)
        {
            if (TryGetCreationContext(message, out var created))
            {
                (links ??= []).Add(new ActivityLink(created));
            }
            else
            {
                uncreated = true;
            }
        }

        var activity = Source.StartActivity(
            destination is null ? "send" : $"send {destination}",
            links is null ? ActivityKind.Producer : ActivityKind.Client,
            parentContext: default,
            links: links);
        if (activity is null)
        {
            return null;
        }

        if (activity.IsAllDataRequested)
        {
            activity.SetTag(OperationType, "send");
            activity.SetTag(OperationName, "send");
            SetCommonTags(activity, destination);
            if (batch)
            {
                activity.SetTag(BatchMessageCount, messages.Count);
            }
            else
            {
                activity.SetTag(MessageId, messages[0].MessageId.ToString());
                activity.SetTag("outboxer.message.db_id", messages[0].Id);
                activity.SetTag("outboxer.message.attempt", messages[0].Attempts);
            }
        }

        if (uncreated)
        {
            foreach (var message in messages)
            {
                StoreContext(activity, message);
            }
        }

        return activity;
    }

    /// <summary>Records one send operation: its duration, each message attempted, the failed ones with <c>error.type</c>.</summary>
    private void RecordSend(long started, string? destination, int count, Exception? error, int failed)
    {
        var tags = MetricTags(destination, error);
        OperationDuration.Record(_time.GetElapsedTime(started).TotalSeconds, tags);
        if (count - failed > 0)
        {
            SentMessages.Add(count - failed, MetricTags(destination, null));
        }

        if (failed > 0)
        {
            SentMessages.Add(failed, tags);
            FailedMessages.Add(failed, tags);
        }
    }

    private TagList MetricTags(string? destination, Exception? error)
    {
        var tags = new TagList
        {
            { OperationName, "send" },
            { OperationType, "send" },
        };
        if (_system is not null)
        {
            tags.Add(MessagingSystem, _system);
        }

        if (destination is not null)
        {
            tags.Add(DestinationName, destination);
        }

        if (_server is not null)
        {
            tags.Add(ServerAddress, _server.Host);
            tags.Add(ServerPort, _server.Port);
        }

        if (error is not null)
        {
            tags.Add(ErrorType, error.GetType().FullName);
        }

        return tags;
    }

    private void SetCommonTags(Activity activity, string? destination)
    {
        if (_system is not null)
        {
            activity.SetTag(MessagingSystem, _system);
        }

        if (destination is not null)
        {
            activity.SetTag(DestinationName, destination);
        }

        if (_server is not null)
        {
            activity.SetTag(ServerAddress, _server.Host);
            activity.SetTag(ServerPort, _server.Port);
        }
    }

    private static string? CommonDestination(IReadOnlyList<OutboxMessage> messages)
    {
        var destination = messages.Count > 0 ? messages[0].Destination : null;
        for (var i = 1; i < messages.Count && destination is not null; i++)
        {
            if (!string.Equals(messages[i].Destination, destination, StringComparison.Ordinal))
            {
                return null;
            }
        }

        return destination;
    }

    private IEnumerable<Measurement<T>> Observe<T>(Func<OutboxStatistics, T> value)
        where T : struct
    {
        var statistics = Volatile.Read(ref _statistics);
        return statistics is null ? [] : [new Measurement<T>(value(statistics))];
    }

    private static T? Describe<T>(Func<T?> read)
        where T : class
    {
        try
        {
            return read();
        }
#pragma warning disable CA1031 // A publisher's description is decoration: a faulty one leaves the attributes out.
        catch (Exception)
#pragma warning restore CA1031
        {
            return null;
        }
    }

    /// <summary>A publisher whose every <see cref="PublishAsync"/> is a <c>send</c> span and a measured operation.</summary>
    private class InstrumentedPublisher(IOutboxPublisher inner, Telemetry telemetry) : IOutboxPublisher
    {
        protected Telemetry Telemetry => telemetry;

        public string? MessagingSystem => inner.MessagingSystem;

        public DnsEndPoint? ServerEndPoint => inner.ServerEndPoint;

        public string? GetDestinationName(OutboxMessage message) => inner.GetDestinationName(message);

        public ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default) =>
            Source.HasListeners() || telemetry.Measuring ? PublishInstrumentedAsync(message, cancellationToken) : inner.PublishAsync(message, cancellationToken);

        protected string? DestinationOf(OutboxMessage message) => message.Destination ?? inner.GetDestinationName(message);

        private async ValueTask PublishInstrumentedAsync(OutboxMessage message, CancellationToken cancellationToken)
        {
            var destination = DestinationOf(message);
            using var activity = telemetry.StartSend([message], destination, batch: false);
            var started = telemetry._time.GetTimestamp();
            try
            {
                await inner.PublishAsync(message, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Failed(activity, ex);
                telemetry.RecordSend(started, destination, 1, ex, 1);
                throw;
            }

            telemetry.RecordSend(started, destination, 1, null, 0);
        }
    }

    /// <summary>A batch publisher whose every <see cref="PublishBatchAsync"/> call is one <c>send</c> span and one measured operation.</summary>
    private sealed class InstrumentedBatchPublisher(IOutboxBatchPublisher inner, Telemetry telemetry) : InstrumentedPublisher(inner, telemetry), IOutboxBatchPublisher
    {
        public Task<IReadOnlyList<Exception?>> PublishBatchAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default) =>
            Source.HasListeners() || Telemetry.Measuring ? PublishBatchInstrumentedAsync(messages, cancellationToken) : inner.PublishBatchAsync(messages, cancellationToken);

        private async Task<IReadOnlyList<Exception?>> PublishBatchInstrumentedAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken)
        {
            string? destination = null;
            for (var i = 0; i < messages.Count; i++)
            {
                var next = DestinationOf(messages[i]);
                if (i > 0 && !string.Equals(next, destination, StringComparison.Ordinal))
                {
                    destination = null;
                    break;
                }

                destination = next;
            }

            using var activity = Telemetry.StartSend(messages, destination, batch: true);
            var started = Telemetry._time.GetTimestamp();
            IReadOnlyList<Exception?> results;
            try
            {
                results = await inner.PublishBatchAsync(messages, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Failed(activity, ex);
                Telemetry.RecordSend(started, destination, messages.Count, ex, messages.Count);
                throw;
            }

            Exception? first = null;
            var failed = 0;
            foreach (var result in results)
            {
                if (result is not null)
                {
                    first ??= result;
                    failed++;
                }
            }

            if (first is not null)
            {
                // Some messages of the batch failed: the operation reports the first failure's type; the others were confirmed.
                Failed(activity, first);
            }

            Telemetry.RecordSend(started, destination, messages.Count, first, failed);
            return results;
        }
    }
}
