using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

/// <summary>
/// Spans and metrics to OpenTelemetry's messaging conventions, observed with a real <see cref="ActivityListener"/> and with
/// <see cref="MetricCollector{T}"/> on each test's own <see cref="IMeterFactory"/>. They run in parallel with every other test: each
/// test reads only its own messages' spans and its own meter factory's measurements.
/// </summary>
public sealed class OutboxTelemetryTests : IDisposable
{
    private readonly ConcurrentBag<Activity> _spans = [];
    private readonly ActivityListener _listener;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly ServiceProvider _services;

    public OutboxTelemetryTests()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == OutboxerTelemetry.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _spans.Add,
        };
        ActivitySource.AddActivityListener(_listener);
        _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private IMeterFactory MeterFactory => _services.GetRequiredService<IMeterFactory>();

    public void Dispose()
    {
        _listener.Dispose();
        _services.Dispose();
    }

    [Fact]
    public void The_source_and_meter_names_are_public_constants()
    {
        Assert.Equal("Outboxer", OutboxerTelemetry.ActivitySourceName);
        Assert.Equal("Outboxer", OutboxerTelemetry.MeterName);
    }

    [Fact]
    public async Task Enqueue_is_a_create_span_named_after_the_destination_and_its_context_is_stored_with_the_message()
    {
        var publisher = new BrokerLikePublisher();
        await using var outbox = Hosted(publisher);
        var message = new OutboxMessage("traced");

        await outbox.SendAsync(message, Ct);

        var create = Span(message, "create orders");
        Assert.Equal(ActivityKind.Producer, create.Kind);
        Assert.Equal("create", create.GetTagItem("messaging.operation.type"));
        Assert.Equal("create", create.GetTagItem("messaging.operation.name"));
        Assert.Equal("rabbitmq", create.GetTagItem("messaging.system"));
        Assert.Equal("orders", create.GetTagItem("messaging.destination.name"));
        Assert.Equal(create.Id, message.Headers["traceparent"]);
    }

    [Fact]
    public async Task The_send_span_is_named_after_the_destination_links_to_the_creation_context_and_leaves_it_in_the_message()
    {
        var publisher = new BrokerLikePublisher();
        await using var outbox = Hosted(publisher);
        using var source = new ActivitySource("Outboxer.Tests.Request." + Guid.NewGuid());
        using var requestListener = new ActivityListener { ShouldListenTo = s => s.Name == source.Name, Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded };
        ActivitySource.AddActivityListener(requestListener);

        var message = new OutboxMessage("traced");
        using (source.StartActivity("POST /orders"))
        {
            await outbox.SendAsync(message, Ct);
        }

        await outbox.DispatchPendingAsync(Ct);

        var create = Span(message, "create orders");
        var send = Span(message, "send orders");
        Assert.Equal(ActivityKind.Client, send.Kind);
        Assert.NotEqual(create.TraceId, send.TraceId);
        var link = Assert.Single(send.Links);
        Assert.Equal(create.TraceId, link.Context.TraceId);
        Assert.Equal(create.SpanId, link.Context.SpanId);
        Assert.Equal("send", send.GetTagItem("messaging.operation.type"));
        Assert.Equal("send", send.GetTagItem("messaging.operation.name"));
        Assert.Equal("rabbitmq", send.GetTagItem("messaging.system"));
        Assert.Equal("orders", send.GetTagItem("messaging.destination.name"));
        Assert.Equal("broker.example", send.GetTagItem("server.address"));
        Assert.Equal(5672, send.GetTagItem("server.port"));

        // The consumer gets the creation context, not the send span's.
        var published = Assert.Single(publisher.Published);
        Assert.Equal(create.Id, published.Headers["traceparent"]);
    }

    [Fact]
    public async Task Published_messages_whose_mark_failed_are_counted_as_possible_duplicates()
    {
        // The database session was lost before the mark (terminated, a server crash): the messages were published and will be again
        // after their lease, so they may arrive twice, as after a lease lost before the mark.
        var store = new InMemoryOutboxStore { MarkFailure = new OutboxException("the session was terminated", isTransient: true) };
        using var duplicates = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.possible_duplicates");
        await using var outbox = Hosted(new RecordingPublisher(), store);
        await outbox.SendAsync(new OutboxMessage("published"), Ct);
        await outbox.SendAsync(new OutboxMessage("published too"), Ct);

        Assert.Equal(2, await outbox.DispatchPendingAsync(Ct));

        Assert.Equal(2, duplicates.GetMeasurementSnapshot().Sum(m => m.Value));
        Assert.Equal(2, store.PendingCount);
    }

    [Fact]
    public async Task A_message_without_a_creation_context_gets_the_producer_send_span_as_its_creation_context()
    {
        var publisher = new BrokerLikePublisher();
        var store = new InMemoryOutboxStore();
        await using var outbox = Hosted(publisher, store);
        var message = new OutboxMessage("written by another process") { MessageId = Guid.NewGuid(), Destination = "orders" };

        // Another process wrote the row without a trace context.
        await store.AddWithinTransactionAsync(message, null, Ct);
        await outbox.DispatchPendingAsync(Ct);

        var send = Span(message, "send orders");
        Assert.Equal(ActivityKind.Producer, send.Kind);
        Assert.Empty(send.Links);
        Assert.Equal(send.Id, Assert.Single(publisher.Published).Headers["traceparent"]);
    }

    [Fact]
    public async Task A_failed_publish_is_an_error_span_and_a_sent_message_with_its_error_type()
    {
        var publisher = new BrokerLikePublisher { Fail = _ => new OutboxException("no route") };
        await using var outbox = Hosted(publisher);
        using var sent = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "messaging.client.sent.messages");
        using var failed = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.failed");
        using var duration = new MetricCollector<double>(MeterFactory, OutboxerTelemetry.MeterName, "messaging.client.operation.duration");
        var message = new OutboxMessage("fails");
        await outbox.SendAsync(message, Ct);

        await outbox.DispatchPendingAsync(Ct);

        var send = Span(message, "send orders");
        Assert.Equal(ActivityStatusCode.Error, send.Status);
        Assert.Equal(typeof(OutboxException).FullName, send.GetTagItem("error.type"));
        var measurement = Assert.Single(sent.GetMeasurementSnapshot());
        Assert.Equal(1, measurement.Value);
        Assert.Equal(typeof(OutboxException).FullName, measurement.Tags["error.type"]);
        Assert.Equal("send", measurement.Tags["messaging.operation.name"]);
        Assert.Equal("rabbitmq", measurement.Tags["messaging.system"]);
        Assert.Equal("orders", measurement.Tags["messaging.destination.name"]);
        Assert.Equal(1, Assert.Single(failed.GetMeasurementSnapshot()).Value);
        Assert.Equal(typeof(OutboxException).FullName, Assert.Single(duration.GetMeasurementSnapshot()).Tags["error.type"]);
    }

    [Fact]
    public async Task A_batch_publisher_call_is_one_send_span_with_the_message_count_and_a_link_per_message()
    {
        var publisher = new RecordingBatchPublisher();
        await using var outbox = Hosted(publisher);
        var messages = Enumerable.Range(0, 3).Select(i => new OutboxMessage($"m{i}")).ToList();
        foreach (var message in messages)
        {
            await outbox.SendAsync(message, Ct);
        }

        await outbox.DispatchPendingAsync(Ct);

        var creates = messages.Select(m => Span(m, "create")).ToList();
        var send = Assert.Single(_spans, s => s.OperationName == "send" && s.Links.Any(l => l.Context.SpanId == creates[0].SpanId));
        Assert.Equal(3, send.GetTagItem("messaging.batch.message_count"));
        Assert.Equal(creates.Select(c => c.SpanId.ToHexString()).Order(), send.Links.Select(l => l.Context.SpanId.ToHexString()).Order());
    }

    [Fact]
    public async Task Sent_claimed_enqueued_and_deleted_messages_are_counted_on_the_hosts_meter()
    {
        var options = new OutboxOptions { CleanupOlderThan = TimeSpan.FromMinutes(1) };
        await using var outbox = Hosted(new BrokerLikePublisher(), options: options);
        using var sent = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "messaging.client.sent.messages");
        using var enqueued = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.enqueued");
        using var claimed = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.claimed");
        using var deleted = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.deleted");
        for (var i = 0; i < 5; i++)
        {
            await outbox.SendAsync(new OutboxMessage($"m{i}"), Ct);
        }

        await outbox.DispatchPendingAsync(Ct);
        _time.Advance(TimeSpan.FromMinutes(2));
        await outbox.CleanupAsync(Ct);

        Assert.Equal(5, Sum(enqueued));
        Assert.Equal(5, Sum(claimed));
        Assert.Equal(5, Sum(sent));
        Assert.All(sent.GetMeasurementSnapshot(), m => Assert.False(m.Tags.ContainsKey("error.type")));
        Assert.All(sent.GetMeasurementSnapshot(), m => Assert.Equal("broker.example", m.Tags["server.address"]));
        Assert.Equal(5, Sum(deleted));
    }

    [Fact]
    public async Task The_gauges_report_each_outboxs_own_statistics()
    {
        var first = new InMemoryOutboxStore();
        var second = new InMemoryOutboxStore();
        await using var one = Hosted(new BrokerLikePublisher(), first);
        await using var two = Hosted(new BrokerLikePublisher(), second);
        var backlog = new ConcurrentBag<long>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            // Only this test's meter factory: other tests' outboxes report backlogs of their own.
            if (instrument.Meter.Scope == MeterFactory && instrument.Name == "outboxer.backlog")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        meters.SetMeasurementEventCallback<long>((_, value, _, _) => backlog.Add(value));
        meters.Start();
        await one.SendAsync(new OutboxMessage("a"), Ct);
        await two.SendAsync(new OutboxMessage("b"), Ct);
        await two.SendAsync(new OutboxMessage("c"), Ct);

        await one.GetStatisticsAsync(Ct);
        await two.GetStatisticsAsync(Ct);
        meters.RecordObservableInstruments();

        Assert.Equal([1L, 2L], backlog.Order());
    }

    [Fact]
    public async Task An_outbox_without_a_meter_factory_measures_on_a_meter_of_its_own_named_Outboxer()
    {
        var seen = new ConcurrentBag<string>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == OutboxerTelemetry.MeterName && instrument.Meter.Scope is null)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        meters.SetMeasurementEventCallback<long>((instrument, _, _, _) => seen.Add(instrument.Name));
        meters.Start();
        await using var outbox = new Outbox(new InMemoryOutboxStore(), new RecordingPublisher(), timeProvider: _time);

        await outbox.SendAsync(new OutboxMessage("plain"), Ct);

        Assert.Contains("outboxer.messages.enqueued", seen);
    }

    private Outbox Hosted(IOutboxPublisher publisher, InMemoryOutboxStore? store = null, OutboxOptions? options = null)
    {
        var services = new ServiceCollection();
        services.AddSingleton(MeterFactory);
        services.AddSingleton<TimeProvider>(_time);
        services.AddOutboxer(o =>
        {
            if (options is not null)
            {
                o.CleanupOlderThan = options.CleanupOlderThan;
            }
        })
            .UseStore(_ => store ?? new InMemoryOutboxStore())
            .UsePublisher(_ => publisher);
        return services.BuildServiceProvider().GetRequiredService<Outbox>();
    }

    private Activity Span(OutboxMessage message, string name) =>
        Assert.Single(_spans, s => s.OperationName == name && (string?)s.GetTagItem("messaging.message.id") == message.MessageId.ToString());

    private static long Sum(MetricCollector<long> collector) => collector.GetMeasurementSnapshot().Sum(m => m.Value);

    /// <summary>A recording publisher that describes itself as a broker would: system, server and destination.</summary>
    private sealed class BrokerLikePublisher : IOutboxPublisher
    {
        private readonly RecordingPublisher _inner = new();

        public Func<OutboxMessage, Exception?>? Fail { get => _inner.Fail; set => _inner.Fail = value; }

        public IReadOnlyList<OutboxMessage> Published => _inner.Published;

        public string MessagingSystem => "rabbitmq";

        public DnsEndPoint ServerEndPoint => new("broker.example", 5672);

        public string GetDestinationName(OutboxMessage message) => "orders";

        public ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default) => _inner.PublishAsync(message, cancellationToken);
    }
}
