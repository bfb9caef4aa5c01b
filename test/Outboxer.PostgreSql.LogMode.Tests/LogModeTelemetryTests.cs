using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.PostgreSql.LogMode.Tests;

/// <summary>
/// The relay's spans and metrics, the table dispatcher's names and tags: observed with a real <see cref="ActivityListener"/> and
/// <see cref="MetricCollector{T}"/> on the test's own <see cref="IMeterFactory"/>, against the shared PostgreSQL.
/// </summary>
public sealed class LogModeTelemetryTests : IDisposable
{
    private readonly ConcurrentBag<Activity> _spans = [];
    private readonly ActivityListener _listener;
    private readonly ServiceProvider _services;

    public LogModeTelemetryTests()
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
    public async Task Each_publish_is_a_send_span_linked_to_the_message_creation_and_is_counted_with_the_dispatcher_names()
    {
        await using var world = await LogModeWorld.CreateAsync();
        using var sent = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "messaging.client.sent.messages");
        using var duration = new MetricCollector<double>(MeterFactory, OutboxerTelemetry.MeterName, "messaging.client.operation.duration");
        using var lag = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.log.slot.lag");
        var publisher = new RecordingPublisher();
        await using var relay = new PostgreSqlLogRelay(PostgreSqlServer.ConnectionString, publisher, world.Options, LogModeWorld.FastRelayOptions(), meterFactory: MeterFactory);
        await relay.StartAsync(Ct);

        var message = LogModeWorld.Message("traced");
        message.Destination = "orders";
        await world.Outbox.SendAsync(message, Ct);

        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 1 && relay.AcknowledgedPosition > default(NpgsqlTypes.NpgsqlLogSequenceNumber), "the relay published and acknowledged the message");
        var create = Assert.Single(_spans, s => s.OperationName == "create orders" && (string?)s.GetTagItem("messaging.message.id") == message.MessageId.ToString());
        await LogModeWorld.WaitUntilAsync(() => _spans.Any(s => s.OperationName == "send orders" && s.Links.Any(l => l.Context.TraceId == create.TraceId)), "the send span is recorded");
        var send = _spans.First(s => s.OperationName == "send orders" && s.Links.Any(l => l.Context.TraceId == create.TraceId));
        Assert.Equal(ActivityKind.Client, send.Kind);
        Assert.Equal(create.SpanId, Assert.Single(send.Links).Context.SpanId);
        Assert.Equal("send", send.GetTagItem("messaging.operation.type"));
        Assert.Equal("orders", send.GetTagItem("messaging.destination.name"));

        var measurement = Assert.Single(sent.GetMeasurementSnapshot(), m => (string?)m.Tags["messaging.destination.name"] == "orders");
        Assert.Equal(1, measurement.Value);
        Assert.Equal("send", measurement.Tags["messaging.operation.name"]);
        Assert.False(measurement.Tags.ContainsKey("error.type"));
        Assert.Contains(duration.GetMeasurementSnapshot(), m => (string?)m.Tags["messaging.destination.name"] == "orders");

        lag.RecordObservableInstruments();
        var slotLag = Assert.Single(lag.GetMeasurementSnapshot());
        Assert.Equal(world.Options.SlotName, slotLag.Tags["outboxer.log.slot"]);
        Assert.True(slotLag.Value >= 0, $"the slot's lag is a byte count ({slotLag.Value})");
    }

    [Fact]
    public async Task Failed_retried_and_dead_lettered_messages_are_counted_as_the_dispatcher_counts_them()
    {
        await using var world = await LogModeWorld.CreateAsync();
        using var failed = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.failed");
        using var retried = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.retried");
        using var deadLettered = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.dead_lettered");
        using var duplicates = new MetricCollector<long>(MeterFactory, OutboxerTelemetry.MeterName, "outboxer.messages.possible_duplicates");
        var publisher = new RecordingPublisher();
        var unknownOnce = 1;
        publisher.Fail = m => (string)m.Headers["name"]! switch
        {
            "poison" => new OutboxException("the exchange does not exist", isTransient: false),
            "unknown" when Interlocked.Exchange(ref unknownOnce, 0) == 1 => new OutboxException("no confirm before the connection dropped", isTransient: true) { IsOutcomeUnknown = true },
            _ => null,
        };
        await using var relay = new PostgreSqlLogRelay(PostgreSqlServer.ConnectionString, publisher, world.Options, LogModeWorld.FastRelayOptions(), meterFactory: MeterFactory);
        await relay.StartAsync(Ct);

        await world.Outbox.SendAsync(LogModeWorld.Message("poison"), Ct);
        await world.Outbox.SendAsync(LogModeWorld.Message("unknown"), Ct);

        await LogModeWorld.WaitUntilAsync(() => relay.DeadLettered == 1 && publisher.Published.Count == 1, "the poison message is dead-lettered and the other one published on its second attempt");
        Assert.Equal(2, failed.GetMeasurementSnapshot().Sum(m => m.Value));
        Assert.Equal(1, retried.GetMeasurementSnapshot().Sum(m => m.Value));
        Assert.Equal(1, deadLettered.GetMeasurementSnapshot().Sum(m => m.Value));
        Assert.Equal(1, duplicates.GetMeasurementSnapshot().Sum(m => m.Value));
    }
}
