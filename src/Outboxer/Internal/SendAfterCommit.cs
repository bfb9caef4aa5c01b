using System.Transactions;

namespace Outboxer.Internal;

/// <summary>
/// What becomes of messages written in a transaction that commits later, elsewhere (an ambient <see cref="Transaction"/>, or the EF Core
/// integration's): on commit, the messages written already claimed by <paramref name="dispatcher"/> are handed to it to publish from
/// memory, and when <paramref name="wake"/> is set (messages written pending) the dispatcher is woken to claim them. Without a commit
/// nothing happens: a rolled-back row never existed, and a row whose commit is in doubt is claimed as usual once its lease runs out.
/// </summary>
/// <param name="dispatcher">This process's dispatcher, or <see langword="null"/> when the outbox has none.</param>
/// <param name="leased">Snapshots of the messages written already claimed by the dispatcher's committed lease token, with their ids.</param>
/// <param name="started">The timestamp taken before their lease began (see <see cref="Dispatcher.SendCommitted"/>).</param>
/// <param name="wake">Whether messages were written pending, so that the commit should wake the dispatcher.</param>
internal sealed class SendAfterCommit(Dispatcher? dispatcher, OutboxMessage[] leased, long started, bool wake)
{
    private int _done;

    /// <summary>Gets the messages written already claimed, as they will be published.</summary>
    public IReadOnlyList<OutboxMessage> Leased => leased;

    /// <summary>Reports the commit: sends the messages written already claimed, wakes the dispatcher for the others. Only the first call counts.</summary>
    public void Committed()
    {
        if (Interlocked.Exchange(ref _done, 1) != 0 || dispatcher is null)
        {
            return;
        }

        foreach (var message in leased)
        {
            // A row without its id (never the case for the relational stores) cannot be marked: it is claimed after its lease instead.
            if (message.Id != 0)
            {
                dispatcher.SendCommitted(message, started);
            }
        }

        if (wake)
        {
            dispatcher.Wake(committed: true);
        }
    }

    /// <summary>
    /// Reports the commit when <paramref name="ambient"/> completes committed. The event may come on another thread, and for a promoted
    /// (distributed) transaction later; <see cref="TransactionStatus.Aborted"/> and <see cref="TransactionStatus.InDoubt"/> send nothing.
    /// </summary>
    public void OnCommitOf(Transaction ambient)
    {
        ArgumentNullException.ThrowIfNull(ambient);
        ambient.TransactionCompleted += (_, e) =>
        {
            if (e.Transaction?.TransactionInformation.Status == TransactionStatus.Committed)
            {
                Committed();
            }
        };
    }
}
