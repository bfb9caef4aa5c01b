namespace Outboxer;

/// <summary>Pending and dead-lettered messages of one destination (the exchange, queue, stream or topic the message goes to).</summary>
/// <param name="Destination">
/// The destination (<see cref="OutboxMessage.Destination"/>: the exchange, queue, stream or topic, as the event stream named it when the
/// message was enqueued); <see langword="null"/> for messages whose destination is not known (enqueued before the outbox recorded
/// destinations, or by code that inserts rows itself).
/// </param>
/// <param name="Pending">Messages not dispatched yet and not dead-lettered.</param>
/// <param name="DeadLettered">Messages in the dead letters.</param>
/// <param name="OldestPendingCreatedAt">When the oldest pending message was enqueued, or <see langword="null"/>.</param>
public sealed record OutboxDestinationStatistics(string? Destination, long Pending, long DeadLettered, DateTimeOffset? OldestPendingCreatedAt);
