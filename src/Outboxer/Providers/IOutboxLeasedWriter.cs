using System.Data.Common;

namespace Outboxer.Providers;

/// <summary>
/// A writer that can write a message already claimed by the process that commits it, so that this process publishes it from memory
/// right after the commit, without a claim round trip (send after commit). If the process dies first, the message is claimed as
/// usual once the lease runs out. The outbox uses it while its dispatcher runs for the transactions it commits itself
/// (<see cref="Outbox.SendAsync"/>, <see cref="Outbox.SendWithinTransactionAsync"/>) and for those whose commit it learns of (an ambient
/// <c>TransactionScope</c>, the EF Core integration). Every relational store implements it.
/// </summary>
public interface IOutboxLeasedWriter : IOutboxWriter
{
    /// <summary>
    /// Like <see cref="IOutboxWriter.AddWithinTransactionAsync"/>, but the row is written claimed until <paramref name="leaseUntil"/>
    /// by <paramref name="leaseToken"/>, with one attempt counted: no claim takes it before the lease runs out, and the caller marks
    /// it with the same token after publishing.
    /// </summary>
    /// <param name="message">The message to enqueue.</param>
    /// <param name="work">Statements to run first in the same transaction, or <see langword="null"/>.</param>
    /// <param name="now">The caller's current time, from which <paramref name="leaseUntil"/> was computed: a store that keeps leases on
    /// its database's clock takes the lease's length from the two and starts it at the server's time.</param>
    /// <param name="leaseUntil">Until when the row stays claimed by the caller.</param>
    /// <param name="leaseToken">The token to mark it with; also set on <see cref="OutboxMessage.LeaseToken"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the message, once the transaction committed.</returns>
    Task<long> AddLeasedWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default);

    /// <summary>
    /// Like <see cref="IOutboxWriter.AddAsync(DbConnection, OutboxMessage, CancellationToken)"/> (on a connection enlisted in an ambient
    /// transaction), but the row is written claimed until <paramref name="leaseUntil"/> by <paramref name="leaseToken"/>, with one attempt
    /// counted.
    /// </summary>
    /// <param name="connection">An open connection of this store's database, opened inside the transaction scope.</param>
    /// <param name="message">The message to insert.</param>
    /// <param name="now">The caller's current time, from which <paramref name="leaseUntil"/> was computed (as for
    /// <see cref="AddLeasedWithinTransactionAsync"/>'s lease: a store that keeps leases on its database's clock can take the lease's length
    /// from the two).</param>
    /// <param name="leaseUntil">Until when the row stays claimed by the caller.</param>
    /// <param name="leaseToken">The token to mark it with; also set on <see cref="OutboxMessage.LeaseToken"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the new row.</returns>
    /// <exception cref="NotSupportedException">The store's database provider does not enlist in ambient transactions.</exception>
    ValueTask<long> AddLeasedAsync(DbConnection connection, OutboxMessage message, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default);

    /// <summary>
    /// Like <see cref="IOutboxWriter.AddRangeAsync"/>, but every row is written claimed until <paramref name="leaseUntil"/> by
    /// <paramref name="leaseToken"/>, with one attempt counted, and every <see cref="OutboxMessage.Id"/> is set (the caller marks by id).
    /// </summary>
    /// <param name="transaction">An open transaction of this store's database.</param>
    /// <param name="messages">The messages, each with its <see cref="OutboxMessage.MessageId"/> and <see cref="OutboxMessage.CreatedAt"/> set.</param>
    /// <param name="now">The caller's current time, from which <paramref name="leaseUntil"/> was computed (as for
    /// <see cref="AddLeasedWithinTransactionAsync"/>'s lease: a store that keeps leases on its database's clock can take the lease's length
    /// from the two).</param>
    /// <param name="leaseUntil">Until when the rows stay claimed by the caller.</param>
    /// <param name="leaseToken">The token to mark them with; also set on each <see cref="OutboxMessage.LeaseToken"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were inserted.</returns>
    /// <exception cref="ArgumentException">The transaction is completed or of another database, or a message cannot be stored.</exception>
    ValueTask<int> AddLeasedRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default);
}
