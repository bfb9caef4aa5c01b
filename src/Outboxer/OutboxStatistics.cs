namespace Outboxer;

/// <summary>A snapshot of an outbox table: what waits, what is being published, what gave up.</summary>
/// <param name="Pending">Messages not dispatched yet and not dead-lettered (the backlog), including those in flight.</param>
/// <param name="InFlight">Pending messages a dispatcher holds a lease on right now. A claim by row lock (PostgreSQL's default) writes no lease, so
/// the rows of a batch it is publishing, held for as long as that takes, are not counted here.</param>
/// <param name="DeadLettered">Messages in the dead letters.</param>
/// <param name="OldestPendingCreatedAt">When the oldest pending message was enqueued, or <see langword="null"/> when none is pending.</param>
/// <param name="TakenAt">When the snapshot was taken.</param>
public sealed record OutboxStatistics(long Pending, long InFlight, long DeadLettered, DateTimeOffset? OldestPendingCreatedAt, DateTimeOffset TakenAt)
{
    /// <summary>Gets how long the oldest pending message has waited (the lag), or <see cref="TimeSpan.Zero"/> when none is pending.</summary>
    public TimeSpan Lag => OldestPendingCreatedAt is { } oldest && TakenAt > oldest ? TakenAt - oldest : TimeSpan.Zero;
}
