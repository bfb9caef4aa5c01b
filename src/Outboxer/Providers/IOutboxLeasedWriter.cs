using System.Data.Common;

namespace Outboxer.Providers;

/// <summary>
/// A writer that can write a message already claimed by the process that commits it, so that this process publishes it from memory
/// right after the commit, without a claim round trip (send after commit). If the process dies first, the message is claimed as
/// usual once the lease runs out. The outbox uses it for the transactions it commits itself (<see cref="Outbox.SendAsync"/>,
/// <see cref="Outbox.SendWithinTransactionAsync"/>) while its dispatcher runs. Every relational store implements it.
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
}
