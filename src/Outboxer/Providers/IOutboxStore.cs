using System.Data.Common;

namespace Outboxer.Providers;

/// <summary>
/// Where outbox messages are stored: a table in the application's database. The counterpart of the Go outboxer's
/// <c>DataStore</c>. Implementations must be safe for concurrent use.
/// </summary>
/// <remarks>
/// Claiming is what makes many dispatchers safe: <see cref="ClaimAsync"/> reserves rows atomically until the lease ends, so
/// two dispatchers never get the same row while neither crashes, and a crashed dispatcher's rows come back after the lease.
/// </remarks>
public interface IOutboxStore
{
    /// <summary>Creates the outbox table and its indexes when they are missing. Safe to call from many processes at once.</summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the table exists.</returns>
    Task EnsureCreatedAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Inserts <paramref name="message"/> within <paramref name="transaction"/>, which the caller opened and will commit or roll back.
    /// Sets <see cref="OutboxMessage.Id"/> and returns it.
    /// </summary>
    /// <param name="transaction">An open transaction of this store's database.</param>
    /// <param name="message">The message to insert; its <see cref="OutboxMessage.MessageId"/> and <see cref="OutboxMessage.CreatedAt"/> are already set.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the new row.</returns>
    /// <exception cref="ArgumentException">The transaction is completed, or belongs to another kind of database.</exception>
    ValueTask<long> AddAsync(DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default);

    /// <summary>
    /// Inserts <paramref name="message"/> on <paramref name="connection"/> with no explicit transaction: the connection is enlisted in the
    /// caller's ambient <c>System.Transactions</c> transaction (a <c>TransactionScope</c>), which decides whether the row commits.
    /// Sets <see cref="OutboxMessage.Id"/> and returns it.
    /// </summary>
    /// <param name="connection">An open connection of this store's database, opened inside the transaction scope.</param>
    /// <param name="message">The message to insert.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the new row.</returns>
    /// <exception cref="NotSupportedException">The store's database provider does not enlist in ambient transactions.</exception>
    ValueTask<long> AddAsync(DbConnection connection, OutboxMessage message, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} cannot join an ambient transaction (TransactionScope); enqueue within a DbTransaction instead.");

    /// <summary>
    /// Inserts many messages within <paramref name="transaction"/> in as few round trips as the database allows (PostgreSQL: one binary
    /// <c>COPY</c>). Every message is validated before anything is written. The default implementation calls <see cref="AddAsync(DbTransaction, OutboxMessage, CancellationToken)"/> for each.
    /// </summary>
    /// <param name="transaction">An open transaction of this store's database.</param>
    /// <param name="messages">The messages, each with its <see cref="OutboxMessage.MessageId"/> and <see cref="OutboxMessage.CreatedAt"/> set.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were inserted.</returns>
    /// <exception cref="ArgumentException">The transaction is completed or of another database, or a message cannot be stored.</exception>
    async ValueTask<int> AddRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        foreach (var message in messages)
        {
            await AddAsync(transaction, message, cancellationToken).ConfigureAwait(false);
        }

        return messages.Count;
    }

    /// <summary>
    /// Opens a connection and a transaction of its own, runs <paramref name="work"/> with the transaction (when given),
    /// inserts <paramref name="message"/> and commits. When <paramref name="work"/> throws, rolls back and rethrows, and nothing is written.
    /// </summary>
    /// <param name="message">The message to insert.</param>
    /// <param name="work">The caller's statements to run in the same transaction, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the new row.</returns>
    Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default);

    /// <summary>
    /// Atomically reserves up to <paramref name="batchSize"/> pending messages, oldest first, that are not reserved by anyone
    /// at <paramref name="now"/>, until <paramref name="leaseUntil"/>, and counts one more attempt for each. Dead letters are never
    /// claimed, and a message with an <see cref="OutboxMessage.OrderingKey"/> is claimed only when no older message with the same key
    /// is pending (dispatched or dead-lettered ones do not count), so each key goes one message at a time.
    /// </summary>
    /// <param name="batchSize">The most messages to claim.</param>
    /// <param name="now">The current time; rows whose lease or retry time is later are skipped.</param>
    /// <param name="leaseUntil">Until when the claimed rows stay reserved.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The claimed messages in id order.</returns>
    Task<IReadOnlyList<OutboxMessage>> ClaimAsync(int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken = default);

    /// <summary>Marks the messages with the given ids as dispatched at <paramref name="dispatchedAt"/>, in one statement.</summary>
    /// <param name="ids">The database ids of messages the event stream confirmed.</param>
    /// <param name="dispatchedAt">The time to record.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the rows are updated.</returns>
    Task MarkDispatchedAsync(IReadOnlyList<long> ids, DateTimeOffset dispatchedAt, CancellationToken cancellationToken = default);

    /// <summary>Records a failed publish of the message with the given id and makes it claimable again at <paramref name="retryAt"/>.</summary>
    /// <param name="id">The database id of the message.</param>
    /// <param name="retryAt">When the message may be claimed again.</param>
    /// <param name="error">A description of the failure, kept with the row.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the row is updated.</returns>
    Task ReleaseAsync(long id, DateTimeOffset retryAt, string error, CancellationToken cancellationToken = default);

    /// <summary>Moves the message with the given id to the dead letters: it is kept with its error but never claimed again until requeued.</summary>
    /// <param name="id">The database id of the message.</param>
    /// <param name="deadLetteredAt">The time to record.</param>
    /// <param name="error">A description of the last failure, kept with the row.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the row is updated.</returns>
    Task DeadLetterAsync(long id, DateTimeOffset deadLetteredAt, string error, CancellationToken cancellationToken = default);

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

    /// <summary>Deletes up to <paramref name="batchSize"/> messages dispatched before <paramref name="dispatchedBefore"/>.</summary>
    /// <param name="dispatchedBefore">The cutoff; messages dispatched at or after it are kept.</param>
    /// <param name="batchSize">The most rows to delete.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The number of rows deleted.</returns>
    Task<int> RemoveDispatchedAsync(DateTimeOffset dispatchedBefore, int batchSize, CancellationToken cancellationToken = default);
}
