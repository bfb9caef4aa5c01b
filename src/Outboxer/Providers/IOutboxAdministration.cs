namespace Outboxer.Providers;

/// <summary>
/// What operators, health checks, tools and dashboards need of an outbox store: statistics, in all and per destination, and the dead
/// letters (list, requeue, purge). Separate from the dispatcher's <see cref="IOutboxStore"/>, so that a tool needs no dispatch path and
/// no cast. Implementations must be safe for concurrent use.
/// </summary>
public interface IOutboxAdministration
{
    /// <summary>Reads dead letters in id order, with their <see cref="OutboxMessage.LastError"/> and <see cref="OutboxMessage.DeadLetteredAt"/>.</summary>
    /// <param name="limit">The most messages to return.</param>
    /// <param name="afterId">Return only messages whose id is greater (for paging); 0 for the first page.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The dead letters.</returns>
    Task<IReadOnlyList<OutboxMessage>> GetDeadLettersAsync(int limit, long afterId = 0, CancellationToken cancellationToken = default);

    /// <summary>Makes dead letters pending again, with their attempts reset, so that the dispatcher publishes them.</summary>
    /// <param name="ids">The ids of the dead letters to requeue; <see langword="null"/> for all of them.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were requeued (ids that are not dead letters are ignored).</returns>
    Task<int> RequeueDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default);

    /// <summary>Deletes dead letters.</summary>
    /// <param name="ids">The ids of the dead letters to delete; <see langword="null"/> for all of them.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were deleted (ids that are not dead letters are ignored).</returns>
    Task<int> PurgeDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default);

    /// <summary>Counts pending, in-flight and dead-lettered messages and finds the oldest pending one, for health checks, metrics and tools.</summary>
    /// <param name="now">The current time: leases that end after it count as in flight.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The snapshot.</returns>
    Task<OutboxStatistics> GetStatisticsAsync(DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>
    /// Counts the pending and dead-lettered messages per destination (see <see cref="OutboxDestinationStatistics.Destination"/>). Reads
    /// only messages that are not dispatched.
    /// </summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>One entry per destination, in destination order (messages without a known destination first).</returns>
    Task<IReadOnlyList<OutboxDestinationStatistics>> GetDestinationStatisticsAsync(CancellationToken cancellationToken = default);
}
