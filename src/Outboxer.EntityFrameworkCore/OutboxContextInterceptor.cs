using System.Data;
using System.Data.Common;
using System.Transactions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Outboxer.Internal;

namespace Outboxer.EntityFrameworkCore;

/// <summary>
/// One per context instance (scoped in EF's internal service provider): holds the messages waiting for the next <c>SaveChanges</c> and
/// writes them in that save's transaction.
/// </summary>
/// <remarks>
/// <para>Where the messages are written depends on the transaction the save runs in:</para>
/// <list type="bullet">
/// <item><description>
/// <b>No transaction (EF's implicit one).</b> The save's <see cref="AutoTransactionBehavior"/> is raised from <c>WhenNeeded</c> to
/// <c>Always</c>, so that EF begins its own transaction even for a single statement, and the messages are written in that transaction
/// just before EF commits it (<see cref="TransactionCommittingAsync"/>). EF begins that transaction inside its execution strategy, so a
/// retrying strategy (<c>EnableRetryOnFailure</c>) retries the messages together with the rows. They leave the queue when it has committed,
/// and are sent after the commit (see below). A save that had no row to write writes the messages in a transaction of its own.
/// </description></item>
/// <item><description>
/// <b>The application's transaction</b> (<c>Database.BeginTransaction</c> or <c>UseTransaction</c>). The messages are written before EF's
/// statements, after a savepoint of their own; a failed save rolls back to it, so the transaction holds neither the save's rows nor its
/// messages. They leave the queue when the save succeeds, and are sent after the commit when that transaction commits through the context.
/// </description></item>
/// <item><description>
/// <b>An ambient <see cref="System.Transactions.Transaction"/></b> (<c>TransactionScope</c>). The messages are written before EF's statements
/// on the context's enlisted connection and belong to that transaction from then on; they are sent after it commits.
/// </description></item>
/// </list>
/// <para>
/// <b>Send after commit.</b> The interceptor learns of the commit (EF's <c>TransactionCommitted</c>, or the ambient transaction's
/// <see cref="System.Transactions.Transaction.TransactionCompleted"/>). While the outbox's dispatcher runs in this process, the messages
/// without an ordering key are written already claimed by it (<see cref="Providers.IOutboxLeasedWriter"/>) and handed to it right after the
/// commit, so it publishes them from memory without a claim; if the process dies first, they are claimed once their lease runs out.
/// A rollback sends nothing. Messages with an ordering key, and every message while no dispatcher runs here, are written pending and the
/// commit wakes the dispatcher.
/// </para>
/// </remarks>
internal sealed class OutboxContextInterceptor : ISaveChangesInterceptor, IDbTransactionInterceptor, IResettableService
{
    internal const string SavepointName = "__OutboxerSavePoint";

    private readonly ICurrentDbContext _currentContext;
    private readonly IDbContextOptions _options;
    private readonly List<OutboxMessage> _queue = [];
    private readonly HashSet<OutboxMessage> _queued = new(ReferenceEqualityComparer.Instance);
    private readonly EventHandler<SaveChangesFailedEventArgs> _onSaveChangesFailed;

    private Phase _phase;
    private DbTransaction? _transaction;
    private OutboxMessage[]? _writing;
    private bool _savepoint;
    private bool _raisedAutoTransactions;
    private SendAfterCommit? _send;
    private DbTransaction? _begunHere;
    private DbTransaction? _wakeOnCommit;
    private readonly List<SendAfterCommit> _sendsOnCommit = [];
    private DbTransaction? _poisoned;

    public OutboxContextInterceptor(ICurrentDbContext currentContext, IDbContextOptions options)
    {
        _currentContext = currentContext;
        _options = options;
        _onSaveChangesFailed = OnSaveChangesFailed;
    }

    /// <summary>Where the current <c>SaveChanges</c> writes the messages; <see cref="Idle"/> outside one.</summary>
    private enum Phase
    {
        Idle,
        Implicit,
        UserTransaction,
        OwnTransaction,
    }

    public IReadOnlyList<OutboxMessage> Pending => [.. _queue];

    private DbContext Context => _currentContext.Context;

    private Outbox Outbox => _options.FindExtension<OutboxerOptionsExtension>()?.Outbox
        ?? throw new InvalidOperationException("The context's options have no outbox; call UseOutboxer(outbox).");

    public void Add(OutboxMessage message)
    {
        if (_queued.Add(message))
        {
            _queue.Add(message);
        }
    }

    public void Clear()
    {
        _queue.Clear();
        _queued.Clear();
    }

    // ---- SaveChanges ----

    public InterceptionResult<int> SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
    {
        if (IsOurs(eventData.Context))
        {
            // The outbox API is asynchronous only. Blocking here is the price of a synchronous SaveChanges; every await below and in
            // Outboxer uses ConfigureAwait(false), so this never waits for the caller's synchronization context.
            Block(SavingAsync(async: false, CancellationToken.None));
        }

        return result;
    }

    public async ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
    {
        if (IsOurs(eventData.Context))
        {
            await SavingAsync(async: true, cancellationToken).ConfigureAwait(false);
        }

        return result;
    }

    public int SavedChanges(SaveChangesCompletedEventData eventData, int result)
    {
        if (IsOurs(eventData.Context))
        {
            Block(SavedAsync(async: false, CancellationToken.None));
        }

        return result;
    }

    public async ValueTask<int> SavedChangesAsync(SaveChangesCompletedEventData eventData, int result, CancellationToken cancellationToken = default)
    {
        if (IsOurs(eventData.Context))
        {
            await SavedAsync(async: true, cancellationToken).ConfigureAwait(false);
        }

        return result;
    }

    public void SaveChangesFailed(DbContextErrorEventData eventData)
    {
        if (IsOurs(eventData.Context))
        {
            Block(FailedAsync(async: false));
        }
    }

    public async Task SaveChangesFailedAsync(DbContextErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        if (IsOurs(eventData.Context))
        {
            await FailedAsync(async: true).ConfigureAwait(false);
        }
    }

    public void SaveChangesCanceled(DbContextEventData eventData)
    {
        if (IsOurs(eventData.Context))
        {
            Block(FailedAsync(async: false));
        }
    }

    public async Task SaveChangesCanceledAsync(DbContextEventData eventData, CancellationToken cancellationToken = default)
    {
        if (IsOurs(eventData.Context))
        {
            await FailedAsync(async: true).ConfigureAwait(false);
        }
    }

    // ---- Transactions ----

    public DbTransaction TransactionStarted(DbConnection connection, TransactionEndEventData eventData, DbTransaction result)
    {
        OnTransactionStarted(eventData, result);
        return result;
    }

    public ValueTask<DbTransaction> TransactionStartedAsync(DbConnection connection, TransactionEndEventData eventData, DbTransaction result, CancellationToken cancellationToken = default)
    {
        OnTransactionStarted(eventData, result);
        return ValueTask.FromResult(result);
    }

    public InterceptionResult TransactionCommitting(DbTransaction transaction, TransactionEventData eventData, InterceptionResult result)
    {
        if (IsOurs(eventData.Context))
        {
            Block(CommittingAsync(transaction, async: false, CancellationToken.None));
        }

        return result;
    }

    public async ValueTask<InterceptionResult> TransactionCommittingAsync(DbTransaction transaction, TransactionEventData eventData, InterceptionResult result, CancellationToken cancellationToken = default)
    {
        if (IsOurs(eventData.Context))
        {
            await CommittingAsync(transaction, async: true, cancellationToken).ConfigureAwait(false);
        }

        return result;
    }

    public void TransactionCommitted(DbTransaction transaction, TransactionEndEventData eventData)
    {
        if (IsOurs(eventData.Context))
        {
            OnCommitted(transaction);
        }
    }

    public Task TransactionCommittedAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        if (IsOurs(eventData.Context))
        {
            OnCommitted(transaction);
        }

        return Task.CompletedTask;
    }

    public void TransactionRolledBack(DbTransaction transaction, TransactionEndEventData eventData)
    {
        if (IsOurs(eventData.Context))
        {
            OnRolledBack(transaction);
        }
    }

    public Task TransactionRolledBackAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        if (IsOurs(eventData.Context))
        {
            OnRolledBack(transaction);
        }

        return Task.CompletedTask;
    }

    // ---- Pooling ----

    public void ResetState() => Reset(clearQueue: true);

    public Task ResetStateAsync(CancellationToken cancellationToken = default)
    {
        Reset(clearQueue: true);
        return Task.CompletedTask;
    }

    // ---- The work ----

    private async ValueTask SavingAsync(bool async, CancellationToken cancellationToken)
    {
        if (_phase != Phase.Idle)
        {
            // The previous save ended without telling us how (EF detects changes after this hook, outside its error handling).
            await FailedAsync(async).ConfigureAwait(false);
        }

        if (_queue.Count == 0)
        {
            return;
        }

        var context = Context;
        var batch = _queue.ToArray();
        Validate(batch);

        // EF reports a DbUpdateConcurrencyException to this event but not to SaveChangesFailed of the interceptors.
        context.SaveChangesFailed -= _onSaveChangesFailed;
        context.SaveChangesFailed += _onSaveChangesFailed;

        var database = context.Database;
        if (database.CurrentTransaction is { } current)
        {
            var transaction = current.GetDbTransaction();
            if (ReferenceEquals(transaction, _poisoned))
            {
                throw Poisoned();
            }

            var savepoint = current.SupportsSavepoints && database.AutoSavepointsEnabled;
            if (savepoint)
            {
                if (async)
                {
                    await current.CreateSavepointAsync(SavepointName, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    current.CreateSavepoint(SavepointName);
                }
            }

            try
            {
                // A transaction begun through the context commits through it, so the commit is reported here; one the application
                // handed over (UseTransaction) may be committed behind EF's back, so its messages are written pending.
                _send = await Outbox.EnqueueManyForCommitAsync(transaction, batch, reportsCommit: ReferenceEquals(transaction, _begunHere), cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                if (savepoint)
                {
                    await RollbackToSavepointAsync(current, async).ConfigureAwait(false);
                }
                else
                {
                    _poisoned = transaction;
                }

                throw;
            }

            (_phase, _transaction, _writing, _savepoint) = (Phase.UserTransaction, transaction, batch, savepoint);
            return;
        }

        if (Transaction.Current is not null || database.GetEnlistedTransaction() is not null)
        {
            // EF takes no savepoint in an ambient transaction, so a failed save leaves its partial writes there too: the application
            // does not complete the scope. The messages belong to the ambient transaction from now on.
            await WriteInAmbientTransactionAsync(batch, async, cancellationToken).ConfigureAwait(false);
            return;
        }

        switch (database.AutoTransactionBehavior)
        {
            case AutoTransactionBehavior.Never:
                throw new InvalidOperationException(
                    "The context's AutoTransactionBehavior is Never and there is no transaction, so its outbox messages cannot be written " +
                    "atomically with its changes. Begin a transaction (Database.BeginTransaction) around SaveChanges, or leave AutoTransactionBehavior at WhenNeeded.");
            case AutoTransactionBehavior.WhenNeeded:
                // EF skips its transaction for a single statement; the messages need one.
                database.AutoTransactionBehavior = AutoTransactionBehavior.Always;
                _raisedAutoTransactions = true;
                break;
        }

        _phase = Phase.Implicit;
    }

    private async ValueTask SavedAsync(bool async, CancellationToken cancellationToken)
    {
        var phase = _phase;
        try
        {
            switch (phase)
            {
                case Phase.UserTransaction:
                    if (_savepoint && Context.Database.CurrentTransaction is { } current)
                    {
                        await ReleaseSavepointAsync(current, async).ConfigureAwait(false);
                    }

                    Dequeue(_writing);
                    if (!ReferenceEquals(_wakeOnCommit, _transaction))
                    {
                        _sendsOnCommit.Clear();
                    }

                    _wakeOnCommit = _transaction;
                    if (_send is not null)
                    {
                        _sendsOnCommit.Add(_send);
                    }

                    break;

                case Phase.Implicit:
                    RestoreAutoTransactions();
                    if (_transaction is null && _queue.Count > 0)
                    {
                        // EF had no statement to run, so it began no transaction: the messages get one of their own.
                        _phase = Phase.OwnTransaction;
                        await WriteInOwnTransactionAsync(async, cancellationToken).ConfigureAwait(false);
                    }

                    break;
            }
        }
        finally
        {
            if (phase != Phase.Idle)
            {
                Reset(clearQueue: false);
            }
        }
    }

    private async ValueTask FailedAsync(bool async)
    {
        var phase = _phase;
        if (phase == Phase.Idle)
        {
            return;
        }

        try
        {
            switch (phase)
            {
                case Phase.UserTransaction:
                    if (_savepoint && Context.Database.CurrentTransaction is { } current && ReferenceEquals(current.GetDbTransaction(), _transaction))
                    {
                        // EF has rolled back to its own savepoint, which lies inside ours; this takes the messages out too.
                        await RollbackToSavepointAsync(current, async).ConfigureAwait(false);
                    }
                    else if (!_savepoint)
                    {
                        _poisoned = _transaction;
                    }

                    break;

                case Phase.Implicit:
                    RestoreAutoTransactions();
                    break;
            }
        }
        finally
        {
            Reset(clearQueue: false);
        }
    }

    private void OnSaveChangesFailed(object? sender, SaveChangesFailedEventArgs e)
    {
        if (ReferenceEquals(sender, Context))
        {
            // Raised after the interceptors' SaveChangesFailed, which has usually done this already; then it does nothing.
            Block(FailedAsync(async: false));
        }
    }

    private void OnTransactionStarted(TransactionEndEventData eventData, DbTransaction transaction)
    {
        if (IsOurs(eventData.Context))
        {
            // Begun through the context (not handed over with UseTransaction): its commit goes through the context too.
            _begunHere = transaction;
        }

        if (_phase == Phase.Implicit && IsOurs(eventData.Context))
        {
            // The transaction EF begins for this save (again on each retry of its execution strategy).
            _transaction = transaction;
        }
    }

    private async ValueTask CommittingAsync(DbTransaction transaction, bool async, CancellationToken cancellationToken)
    {
        if (ReferenceEquals(transaction, _poisoned))
        {
            throw Poisoned();
        }

        if (_phase == Phase.Implicit && ReferenceEquals(transaction, _transaction) && _queue.Count > 0)
        {
            var batch = _queue.ToArray();
            _send = await Outbox.EnqueueManyForCommitAsync(transaction, batch, reportsCommit: true, cancellationToken).ConfigureAwait(false);
            _writing = batch;
        }
        else if (_phase == Phase.UserTransaction && ReferenceEquals(transaction, _transaction))
        {
            // A save in this transaction never reported its end: its messages must not commit without its changes.
            await FailedAsync(async).ConfigureAwait(false);
        }
    }

    private void OnCommitted(DbTransaction transaction)
    {
        if (_phase == Phase.Implicit && ReferenceEquals(transaction, _transaction) && _writing is not null)
        {
            Dequeue(_writing);
            _writing = null;
            var send = _send;
            _send = null;
            send?.Committed();
        }
        else if (ReferenceEquals(transaction, _wakeOnCommit))
        {
            _wakeOnCommit = null;
            SendAfterCommit[] sends = [.. _sendsOnCommit];
            _sendsOnCommit.Clear();
            foreach (var send in sends)
            {
                send.Committed();
            }
        }
    }

    private void OnRolledBack(DbTransaction transaction)
    {
        // The messages this transaction held are gone with it; those still waiting belonged to the same abandoned unit of work.
        Clear();
        if (ReferenceEquals(transaction, _wakeOnCommit))
        {
            _wakeOnCommit = null;
            _sendsOnCommit.Clear();
        }

        if (ReferenceEquals(transaction, _poisoned))
        {
            _poisoned = null;
        }

        if (_phase == Phase.UserTransaction && ReferenceEquals(transaction, _transaction))
        {
            Reset(clearQueue: false);
        }
    }

    private async ValueTask WriteInOwnTransactionAsync(bool async, CancellationToken cancellationToken)
    {
        var database = Context.Database;
        var strategy = database.CreateExecutionStrategy();
        if (async)
        {
            await strategy.ExecuteAsync(
                async ct =>
                {
                    var transaction = await database.BeginTransactionAsync(ct).ConfigureAwait(false);
                    await using (transaction.ConfigureAwait(false))
                    {
                        var batch = _queue.ToArray();
                        var send = await Outbox.EnqueueManyForCommitAsync(transaction.GetDbTransaction(), batch, reportsCommit: true, ct).ConfigureAwait(false);
                        await transaction.CommitAsync(ct).ConfigureAwait(false);
                        Dequeue(batch);
                        send.Committed();
                    }
                },
                cancellationToken).ConfigureAwait(false);
        }
        else
        {
            strategy.Execute(() =>
            {
                using var transaction = database.BeginTransaction();
                var batch = _queue.ToArray();
                var send = Block(Outbox.EnqueueManyForCommitAsync(transaction.GetDbTransaction(), batch, reportsCommit: true, CancellationToken.None));
                transaction.Commit();
                Dequeue(batch);
                send.Committed();
            });
        }
    }

    private async ValueTask WriteInAmbientTransactionAsync(OutboxMessage[] batch, bool async, CancellationToken cancellationToken)
    {
        var database = Context.Database;
        var ambient = database.GetEnlistedTransaction() ?? Transaction.Current!;
        if (async)
        {
            await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        }
        else
        {
            database.OpenConnection();
        }

        try
        {
            // Each message is sent after the ambient transaction commits (or the dispatcher woken), as Outbox.EnqueueAsync does.
            var connection = database.GetDbConnection();
            foreach (var message in batch)
            {
                await Outbox.EnqueueInScopeAsync(ambient, connection, message, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            if (async)
            {
                await database.CloseConnectionAsync().ConfigureAwait(false);
            }
            else
            {
                database.CloseConnection();
            }
        }

        Dequeue(batch);
    }

    private static async ValueTask RollbackToSavepointAsync(IDbContextTransaction transaction, bool async)
    {
        try
        {
            if (async)
            {
                await transaction.RollbackToSavepointAsync(SavepointName, CancellationToken.None).ConfigureAwait(false);
                await transaction.ReleaseSavepointAsync(SavepointName, CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                transaction.RollbackToSavepoint(SavepointName);
                transaction.ReleaseSavepoint(SavepointName);
            }
        }
#pragma warning disable CA1031 // The save's own exception is the one to report; a connection that broke has lost the transaction anyway.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    private static async ValueTask ReleaseSavepointAsync(IDbContextTransaction transaction, bool async)
    {
        try
        {
            if (async)
            {
                await transaction.ReleaseSavepointAsync(SavepointName, CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                transaction.ReleaseSavepoint(SavepointName);
            }
        }
#pragma warning disable CA1031 // As EF does with its own savepoint: an unreleased savepoint commits with its transaction; a broken connection fails the commit.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    /// <summary>Checks what the store checks before any statement runs, so that a message that cannot be stored fails the save before EF writes.</summary>
    private static void Validate(OutboxMessage[] batch)
    {
        for (var i = 0; i < batch.Length; i++)
        {
            var message = batch[i];
            try
            {
                _ = message.Options.ToJson();
                _ = message.Headers.ToJson();
            }
            catch (ArgumentException ex)
            {
                throw new ArgumentException($"Outbox message {i} (of {batch.Length}) cannot be stored, so nothing was saved: {ex.Message}", ex);
            }
        }
    }

    private void Dequeue(OutboxMessage[]? written)
    {
        if (written is null)
        {
            return;
        }

        foreach (var message in written)
        {
            _queued.Remove(message);
        }

        _queue.RemoveAll(m => !_queued.Contains(m));
    }

    private void RestoreAutoTransactions()
    {
        if (_raisedAutoTransactions)
        {
            _raisedAutoTransactions = false;
            var database = Context.Database;
            if (database.AutoTransactionBehavior == AutoTransactionBehavior.Always)
            {
                database.AutoTransactionBehavior = AutoTransactionBehavior.WhenNeeded;
            }
        }
    }

    private void Reset(bool clearQueue)
    {
        if (clearQueue)
        {
            Clear();
            _wakeOnCommit = null;
            _sendsOnCommit.Clear();
            _begunHere = null;
            _poisoned = null;
            _raisedAutoTransactions = false;
        }
        else
        {
            RestoreAutoTransactions();
        }

        _phase = Phase.Idle;
        _transaction = null;
        _writing = null;
        _send = null;
        _savepoint = false;
    }

    private bool IsOurs(DbContext? context) => context is not null && ReferenceEquals(context, _currentContext.Context);

    private static InvalidOperationException Poisoned() => new(
        "A SaveChanges failed in this transaction after its outbox messages were written, and savepoints are off (AutoSavepointsEnabled = false), " +
        "so the messages could not be taken back. Roll the transaction back.");

    private static void Block(ValueTask task)
    {
        if (task.IsCompletedSuccessfully)
        {
            task.GetAwaiter().GetResult();
            return;
        }

        task.AsTask().GetAwaiter().GetResult();
    }

    private static T Block<T>(ValueTask<T> task) =>
        task.IsCompletedSuccessfully ? task.Result : task.AsTask().GetAwaiter().GetResult();
}
