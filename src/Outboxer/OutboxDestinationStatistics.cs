namespace Outboxer;

/// <summary>Pending and dead-lettered messages of one destination (the exchange, queue, stream or topic their options name).</summary>
/// <param name="Destination">
/// The destination's name, as the messages' options give it (see <see cref="Providers.IOutboxPublisher.GetDestinationName"/>);
/// <see langword="null"/> when a message names none.
/// </param>
/// <param name="Pending">Messages not dispatched yet and not dead-lettered.</param>
/// <param name="DeadLettered">Messages in the dead letters.</param>
/// <param name="OldestPendingCreatedAt">When the oldest pending message was enqueued, or <see langword="null"/>.</param>
public sealed record OutboxDestinationStatistics(string? Destination, long Pending, long DeadLettered, DateTimeOffset? OldestPendingCreatedAt);
