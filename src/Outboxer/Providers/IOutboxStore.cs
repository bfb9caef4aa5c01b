namespace Outboxer.Providers;

/// <summary>
/// Where outbox messages wait for the dispatcher: a table in the application's database. The dispatcher's and the cleanup's
/// contract (claim, mark, release, dead-letter, remove); the counterpart of the Go outboxer's <c>DataStore</c>. Operators use
/// <see cref="IOutboxAdministration"/>, and the table's layout is managed through <see cref="IOutboxSchema"/>. Implementations must be
/// safe for concurrent use.
/// </summary>
/// <remarks>
/// Claiming is what makes many dispatchers safe: <see cref="ClaimAsync"/> reserves rows atomically until the lease ends, so
/// two dispatchers never get the same row while neither crashes, and a crashed dispatcher's rows come back after the lease.
/// Each claim carries a fresh <see cref="OutboxMessage.LeaseToken"/>, and marking, releasing and dead-lettering apply only while
/// that token still holds the row: a dispatcher that stalled past its lease, whose rows another dispatcher claimed since, cannot
/// change them any more (the fence), and learns it from the result.
/// </remarks>
public interface IOutboxStore : IOutboxWriter
{
    /// <summary>
    /// Atomically reserves up to <paramref name="batchSize"/> pending messages, oldest first, that are not reserved by anyone
    /// at <paramref name="now"/>, until <paramref name="leaseUntil"/>, and counts one more attempt for each. Dead letters are never
    /// claimed, and a message with an <see cref="OutboxMessage.OrderingKey"/> is claimed only when no older message with the same key
    /// is pending (dispatched or dead-lettered ones do not count), so each key goes one message at a time. The claim writes one new
    /// token, unique to it, into every row it reserves and into each returned message's <see cref="OutboxMessage.LeaseToken"/>.
    /// </summary>
    /// <param name="batchSize">The most messages to claim.</param>
    /// <param name="now">The current time; rows whose lease or retry time is later are skipped.</param>
    /// <param name="leaseUntil">Until when the claimed rows stay reserved.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The claimed messages in id order.</returns>
    Task<IReadOnlyList<OutboxMessage>> ClaimAsync(int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks the messages with the given ids as dispatched at <paramref name="dispatchedAt"/>, in one statement, where the claim with
    /// <paramref name="leaseToken"/> still holds them (no other claim took them since, even if the lease ran out).
    /// </summary>
    /// <param name="ids">The database ids of messages the event stream confirmed.</param>
    /// <param name="leaseToken">The <see cref="OutboxMessage.LeaseToken"/> of the claim that returned them.</param>
    /// <param name="dispatchedAt">The time to record.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many rows were marked; fewer than <paramref name="ids"/> when another claim took some (they will be published again).</returns>
    Task<int> MarkDispatchedAsync(IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken = default);

    /// <summary>
    /// Records a failed publish of the message with the given id and makes it claimable again at <paramref name="retryAt"/>, where the
    /// claim with <paramref name="leaseToken"/> still holds it.
    /// </summary>
    /// <param name="id">The database id of the message.</param>
    /// <param name="leaseToken">The <see cref="OutboxMessage.LeaseToken"/> of the claim that returned it.</param>
    /// <param name="retryAt">When the message may be claimed again.</param>
    /// <param name="error">A description of the failure, kept with the row.</param>
    /// <param name="outcomeUnknown">
    /// <see langword="true"/> when the publish was sent but not answered, so the broker may have the message: the row counts one more
    /// <see cref="OutboxMessage.UncertainAttempts"/>, which its dead letter (if it becomes one later) reports.
    /// </param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns><see langword="true"/> when the row was updated; <see langword="false"/> when another claim holds it now or it was settled.</returns>
    Task<bool> ReleaseAsync(long id, long leaseToken, DateTimeOffset retryAt, string error, bool outcomeUnknown = false, CancellationToken cancellationToken = default);

    /// <summary>
    /// Moves the message with the given id to the dead letters, where the claim with <paramref name="leaseToken"/> still holds it: it is
    /// kept with its error but never claimed again until requeued.
    /// </summary>
    /// <param name="id">The database id of the message.</param>
    /// <param name="leaseToken">The <see cref="OutboxMessage.LeaseToken"/> of the claim that returned it.</param>
    /// <param name="deadLetteredAt">The time to record.</param>
    /// <param name="error">A description of the last failure, kept with the row.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns><see langword="true"/> when the row was updated; <see langword="false"/> when another claim holds it now or it was settled.</returns>
    Task<bool> DeadLetterAsync(long id, long leaseToken, DateTimeOffset deadLetteredAt, string error, CancellationToken cancellationToken = default);

    /// <summary>Deletes up to <paramref name="batchSize"/> messages dispatched before <paramref name="dispatchedBefore"/>.</summary>
    /// <param name="dispatchedBefore">The cutoff; messages dispatched at or after it are kept.</param>
    /// <param name="batchSize">The most rows to delete.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The number of rows deleted.</returns>
    Task<int> RemoveDispatchedAsync(DateTimeOffset dispatchedBefore, int batchSize, CancellationToken cancellationToken = default);
}
