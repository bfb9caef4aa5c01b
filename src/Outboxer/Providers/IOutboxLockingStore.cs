namespace Outboxer.Providers;

/// <summary>
/// A store that can claim a batch by locking its rows in a transaction held open while the batch is published, instead of writing a
/// lease into every row: the claim writes nothing, the confirmed messages are marked and the failed ones released in that same
/// transaction, which then commits. Per message that saves one row version and its index entries, the claim's update and a round trip.
/// </summary>
/// <remarks>
/// <para>
/// The lock is the lease and its fence at once: no other claim can take a locked row (they skip it), and a claim's settlement can only
/// commit while its transaction, and so its locks, still stand. If the dispatcher dies, its connection closes and the rows are free at
/// once; if it stalls, the store must end the transaction after the lease (PostgreSQL: <c>idle_in_transaction_session_timeout</c>), so
/// that other dispatchers take the rows and the stalled one's settlement fails.
/// </para>
/// <para>
/// The dispatcher uses it when <see cref="ClaimsByRowLock"/> is <see langword="true"/>; otherwise, and for rows that were written already
/// claimed (send after commit), it uses the leases of <see cref="IOutboxStore"/>, which the store must keep supporting.
/// </para>
/// </remarks>
public interface IOutboxLockingStore : IOutboxStore
{
    /// <summary>Gets a value indicating whether the dispatcher should claim with <see cref="ClaimLockedAsync"/> instead of <see cref="IOutboxStore.ClaimAsync"/>.</summary>
    bool ClaimsByRowLock { get; }

    /// <summary>
    /// Locks up to <paramref name="batchSize"/> claimable messages, oldest first, with the same rules as <see cref="IOutboxStore.ClaimAsync"/>
    /// (never claimed, or due again; a message with an ordering key only when no earlier message of its key is pending), and keeps them
    /// locked until the returned claim is settled or disposed. The messages' <see cref="OutboxMessage.Attempts"/> include the attempt
    /// about to be made; the store counts it when the claim is settled.
    /// </summary>
    /// <param name="batchSize">The most messages to lock; positive.</param>
    /// <param name="now">The dispatcher's current time (for a store that compares leases on the dispatcher's clock).</param>
    /// <param name="hold">How long the claim may stay idle before the store ends it and frees the rows: the outbox's lease.</param>
    /// <param name="cancellationToken">A token to cancel the claim.</param>
    /// <returns>The claim, holding its connection and transaction; dispose it (settled or not).</returns>
    /// <exception cref="OutboxException">The database failed; nothing was claimed.</exception>
    Task<IOutboxLockedClaim> ClaimLockedAsync(int batchSize, DateTimeOffset now, TimeSpan hold, CancellationToken cancellationToken = default);
}
