using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

[CollectionDefinition(nameof(TelemetryCollection), DisableParallelization = true)]
public sealed class TelemetryCollection;

/// <summary>Spans and metrics, observed with real listeners. Not parallel: the source and meter are process-wide.</summary>
[Collection(nameof(TelemetryCollection))]
public sealed class OutboxTelemetryTests : IDisposable
{
    private readonly List<Activity> _spans = [];
    private readonly Dictionary<string, long> _counters = [];
    private readonly ActivityListener _activityListener;
    private readonly MeterListener _meterListener = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public OutboxTelemetryTests()
    {
        _activityListener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Outboxer",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                lock (_spans)
                {
                    _spans.Add(activity);
                }
            },
        };
        ActivitySource.AddActivityListener(_activityListener);
        _meterListener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Outboxer")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _meterListener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            lock (_counters)
            {
                _counters[instrument.Name] = _counters.GetValueOrDefault(instrument.Name) + value;
            }
        });
        _meterListener.Start();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        _activityListener.Dispose();
        _meterListener.Dispose();
    }

    [Fact]
    public async Task The_trace_context_of_the_enqueuing_code_is_stored_and_the_publish_span_continues_it()
    {
        var publisher = new RecordingPublisher();
        await using var outbox = new Outbox(new InMemoryOutboxStore(), publisher, timeProvider: _time);
        using var source = new ActivitySource("Outboxer.Tests.Request");
        using var requestListener = new ActivityListener { ShouldListenTo = s => s.Name == source.Name, Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded };
        ActivitySource.AddActivityListener(requestListener);

        var message = new OutboxMessage("traced");
        ActivityTraceId requestTrace;
        using (var request = source.StartActivity("POST /orders"))
        {
            requestTrace = request!.TraceId;
            await outbox.SendAsync(message, Ct);
        }

        await outbox.DispatchPendingAsync(Ct);

        var create = Span("create outbox", message);
        var send = Span("send", message);
        Assert.Equal(requestTrace, create.TraceId);
        Assert.Equal(ActivityKind.Producer, send.Kind);
        Assert.Equal(requestTrace, send.TraceId);
        Assert.Equal(create.SpanId, send.ParentSpanId);
        var published = Assert.Single(publisher.Published);
        Assert.Equal(send.Id, published.Headers["traceparent"]);
    }

    [Fact]
    public async Task Published_messages_whose_mark_failed_are_counted_as_possible_duplicates()
    {
        // The database session was lost before the mark (terminated, a server crash): the messages were published and will be again
        // after their lease, so they may arrive twice, as after a lease lost before the mark.
        var store = new InMemoryOutboxStore { MarkFailure = new OutboxException("the session was terminated", isTransient: true) };
        await using var outbox = new Outbox(store, new RecordingPublisher(), timeProvider: _time);
        await outbox.SendAsync(new OutboxMessage("published"), Ct);
        await outbox.SendAsync(new OutboxMessage("published too"), Ct);

        Assert.Equal(2, await outbox.DispatchPendingAsync(Ct));

        Assert.Equal(2, Counter("outboxer.messages.possible_duplicates"));
        Assert.Equal(2, store.PendingCount);
    }

    [Fact]
    public async Task A_failed_publish_is_an_error_span_and_counted()
    {
        var publisher = new RecordingPublisher { Fail = _ => new OutboxException("no route") };
        await using var outbox = new Outbox(new InMemoryOutboxStore(), publisher, timeProvider: _time);
        var message = new OutboxMessage("fails");
        await outbox.SendAsync(message, Ct);

        await outbox.DispatchPendingAsync(Ct);

        var send = Span("send", message);
        Assert.Equal(ActivityStatusCode.Error, send.Status);
        Assert.Equal(typeof(OutboxException).FullName, send.GetTagItem("error.type"));
        Assert.Equal(1, Counter("outboxer.messages.failed"));
        Assert.Equal(0, Counter("messaging.client.sent.messages"));
    }

    [Fact]
    public async Task Sent_claimed_enqueued_and_deleted_messages_are_counted()
    {
        await using var outbox = new Outbox(new InMemoryOutboxStore(), new RecordingPublisher(), new OutboxOptions { CleanupOlderThan = TimeSpan.FromMinutes(1) }, timeProvider: _time);
        for (var i = 0; i < 5; i++)
        {
            await outbox.SendAsync(new OutboxMessage($"m{i}"), Ct);
        }

        await outbox.DispatchPendingAsync(Ct);
        _time.Advance(TimeSpan.FromMinutes(2));
        await outbox.CleanupAsync(Ct);

        Assert.Equal(5, Counter("outboxer.messages.enqueued"));
        Assert.Equal(5, Counter("outboxer.messages.claimed"));
        Assert.Equal(5, Counter("messaging.client.sent.messages"));
        Assert.Equal(5, Counter("outboxer.messages.deleted"));
        Assert.Contains(_spans, s => s.OperationName == "claim outbox" && (int?)s.GetTagItem("outboxer.batch.size") == 5);
    }

    private Activity Span(string name, OutboxMessage message)
    {
        lock (_spans)
        {
            return Assert.Single(_spans, s => s.OperationName == name && (string?)s.GetTagItem("messaging.message.id") == message.MessageId.ToString());
        }
    }

    private long Counter(string name)
    {
        _meterListener.RecordObservableInstruments();
        lock (_counters)
        {
            return _counters.GetValueOrDefault(name);
        }
    }
}
