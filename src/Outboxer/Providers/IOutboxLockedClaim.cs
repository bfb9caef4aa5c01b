namespace Outboxer.Providers;

/// <summary>
/// A batch claimed by <see cref="IOutboxLockingStore.ClaimLockedAsync"/>: its rows stay locked, with a transaction open, until
/// <see cref="SettleAsync"/> commits what became of each message or <see cref="IAsyncDisposable.DisposeAsync"/> rolls back (the rows are
/// then claimable again at once, their attempt not counted).
/// </summary>
public interface IOutboxLockedClaim : IAsyncDisposable
{
    /// <summary>Gets the claimed messages, oldest first.</summary>
    IReadOnlyList<OutboxMessage> Messages { get; }

    /// <summary>
    /// Marks <paramref name="dispatched"/> dispatched at <paramref name="now"/>, records the <paramref name="failed"/> attempts (a retry
    /// time, or the dead letters), counts one attempt for every settled message, and commits. Messages of the claim in neither list are
    /// unlocked unchanged.
    /// </summary>
    /// <param name="dispatched">The ids of the messages the event stream confirmed.</param>
    /// <param name="failed">The messages whose publish failed, with what to do with each.</param>
    /// <param name="now">When they were settled: the dispatched and dead-lettered time.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes once the settlement committed.</returns>
    /// <exception cref="OutboxException">The database failed, or the store had ended the transaction (the claim stayed idle past its hold):
    /// nothing was settled, and the messages may be claimed (and published) again.</exception>
    Task SettleAsync(IReadOnlyList<long> dispatched, IReadOnlyList<OutboxFailedAttempt> failed, DateTimeOffset now, CancellationToken cancellationToken = default);
}
