namespace Outboxer;

/// <summary>
/// The names under which the outbox reports its traces and metrics, for an OpenTelemetry setup:
/// <c>tracing.AddSource(OutboxerTelemetry.ActivitySourceName)</c> and <c>metrics.AddMeter(OutboxerTelemetry.MeterName)</c>.
/// </summary>
/// <remarks>
/// Spans and metrics follow OpenTelemetry's messaging semantic conventions: <c>create {destination}</c> at enqueue,
/// <c>send {destination}</c> at publish (linked to the creation context stored with the message), with <c>messaging.system</c>,
/// <c>messaging.destination.name</c>, <c>messaging.operation.name</c>/<c>.type</c>, <c>server.address</c>/<c>.port</c> and
/// <c>error.type</c>. Hosted outboxes create their meter through the application's <c>IMeterFactory</c>.
/// </remarks>
public static class OutboxerTelemetry
{
    /// <summary>The name of the outbox's <see cref="System.Diagnostics.ActivitySource"/>: <c>Outboxer</c>.</summary>
    public const string ActivitySourceName = "Outboxer";

    /// <summary>The name of the outbox's <see cref="System.Diagnostics.Metrics.Meter"/>: <c>Outboxer</c>.</summary>
    public const string MeterName = "Outboxer";
}
