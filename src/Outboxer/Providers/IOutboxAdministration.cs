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

    /// <summary>
    /// Reads one message by its row id, whatever its state (pending, in flight, retrying, dispatched, dead-lettered), with its
    /// <see cref="OutboxMessage.Attempts"/>, <see cref="OutboxMessage.LastError"/>, <see cref="OutboxMessage.DeadLetteredAt"/>,
    /// <see cref="OutboxMessage.Dispatched"/> and <see cref="OutboxMessage.DispatchedAt"/>. The default implementation throws
    /// <see cref="NotSupportedException"/>; every relational store implements it.
    /// </summary>
    /// <param name="id">The row id (<see cref="OutboxMessage.Id"/>).</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The message, or <see langword="null"/> when no row has that id (never written, or deleted by the cleanup).</returns>
    /// <exception cref="NotSupportedException">The store cannot look up messages.</exception>
    Task<OutboxMessage?> GetMessageAsync(long id, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} cannot look up a message by id.");

    /// <summary>
    /// Reads one message by its <see cref="OutboxMessage.MessageId"/>, like <see cref="GetMessageAsync(long, CancellationToken)"/>. The
    /// message id is not indexed: on a large table this reads every row, so it is meant for an operator's occasional lookup. When several
    /// rows share the message id (a caller reused it), the one with the lowest row id is returned.
    /// </summary>
    /// <param name="messageId">The message id.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The message, or <see langword="null"/> when no row has that message id.</returns>
    /// <exception cref="NotSupportedException">The store cannot look up messages.</exception>
    Task<OutboxMessage?> GetMessageByMessageIdAsync(Guid messageId, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} cannot look up a message by message id.");

    /// <summary>
    /// Counts the pending messages that failed at least once and wait for, or are in, another attempt (they carry their
    /// <see cref="OutboxMessage.LastError"/>). Reads only rows with a lease or retry time. The default implementation throws
    /// <see cref="NotSupportedException"/>; every relational store implements it.
    /// </summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages are retrying.</returns>
    /// <exception cref="NotSupportedException">The store cannot count them.</exception>
    Task<long> CountRetryingAsync(CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} cannot count the retrying messages.");

    /// <summary>
    /// Counts the messages marked dispatched after <paramref name="since"/> (and not deleted by the cleanup yet), so that a tool that
    /// samples it can show the throughput of every dispatcher on the table, in any process. Reads only those rows (the cleanup's index).
    /// The default implementation throws <see cref="NotSupportedException"/>; every relational store implements it.
    /// </summary>
    /// <param name="since">The start of the period (exclusive).</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were dispatched since then.</returns>
    /// <exception cref="NotSupportedException">The store cannot count them.</exception>
    Task<long> CountDispatchedSinceAsync(DateTimeOffset since, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} cannot count the dispatched messages.");
}
