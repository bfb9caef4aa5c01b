using System.Data.Common;
using Outboxer.Providers;

namespace Outboxer.Testing;

/// <summary>
/// An <see cref="IOutboxStore"/> in memory, for unit tests of the core's loops: same claim, lease, release and cleanup rules as the
/// database stores (which the conformance suite checks against real databases). It has no transactions, so
/// <see cref="AddAsync"/> is not supported and <see cref="AddWithinTransactionAsync"/> accepts no callback.
/// </summary>
public sealed class InMemoryOutboxStore : IOutboxStore, IOutboxLeasedWriter, IOutboxAdministration
{
    private readonly Lock _lock = new();
    private readonly List<Row> _rows = [];
    private long _nextId;
    private int _claims;
    private DateTimeOffset _claimNow;
    private long _lastToken;

    /// <summary>Gets or sets an exception that every claim throws, to simulate a database outage.</summary>
    public Exception? ClaimFailure { get; set; }

    /// <summary>Gets or sets an exception that every mark throws without marking, to simulate a session lost before the mark.</summary>
    public Exception? MarkFailure { get; set; }

    /// <summary>Gets how many claims ran.</summary>
    public int Claims => Volatile.Read(ref _claims);

    /// <summary>Raised after each claim with the number of messages it returned.</summary>
    public event Action<int>? Claimed;

    /// <summary>Gets the number of rows, dispatched or not.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _rows.Count;
            }
        }
    }

    /// <summary>Gets the number of rows not dispatched yet.</summary>
    public int PendingCount
    {
        get
        {
            lock (_lock)
            {
                return _rows.Count(r => !r.Dispatched);
            }
        }
    }

    /// <summary>Gets the last error recorded for the row with the given id.</summary>
    public string? LastError(long id)
    {
        lock (_lock)
        {
            return _rows.Single(r => r.Message.Id == id).LastError;
        }
    }

    /// <inheritdoc />
    public ValueTask<long> AddAsync(DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("The in-memory store has no transactions.");

    /// <inheritdoc />
    public Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (work is not null)
        {
            throw new NotSupportedException("The in-memory store has no transactions.");
        }

        _ = message.Options.ToJson();
        _ = message.Headers.ToJson();
        lock (_lock)
        {
            message.Id = ++_nextId;
            _rows.Add(new Row(message));
            return Task.FromResult(message.Id);
        }
    }

    /// <inheritdoc />
    public Task<long> AddLeasedWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (work is not null)
        {
            throw new NotSupportedException("The in-memory store has no transactions.");
        }

        _ = message.Options.ToJson();
        _ = message.Headers.ToJson();
        lock (_lock)
        {
            message.Id = ++_nextId;
            message.Attempts = 1;
            message.LeaseToken = leaseToken;
            _rows.Add(new Row(message) { LockedUntil = leaseUntil, LeaseToken = leaseToken });
            LeasedWrites++;
            return Task.FromResult(message.Id);
        }
    }

    /// <summary>
    /// Inserts <paramref name="message"/> in the ambient <see cref="System.Transactions.Transaction"/>: the row exists once that commits
    /// and never when it aborts. <paramref name="connection"/> is not used (there is no database): pass any connection.
    /// </summary>
    /// <inheritdoc cref="IOutboxWriter.AddAsync(DbConnection, OutboxMessage, CancellationToken)" path="/param"/>
    public ValueTask<long> AddAsync(DbConnection connection, OutboxMessage message, CancellationToken cancellationToken = default) =>
        new(AddInAmbient(message, null, 0));

    /// <summary>Like <see cref="AddAsync(DbConnection, OutboxMessage, CancellationToken)"/>, with the row written already claimed.</summary>
    /// <inheritdoc cref="IOutboxLeasedWriter.AddLeasedAsync" path="/param"/>
    public ValueTask<long> AddLeasedAsync(DbConnection connection, OutboxMessage message, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default) =>
        new(AddInAmbient(message, leaseUntil, leaseToken));

    /// <inheritdoc />
    public ValueTask<int> AddLeasedRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("The in-memory store has no transactions.");

    private long AddInAmbient(OutboxMessage message, DateTimeOffset? leaseUntil, long leaseToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        var ambient = System.Transactions.Transaction.Current
            ?? throw new InvalidOperationException("The in-memory store writes on a connection only inside a TransactionScope.");
        _ = message.Options.ToJson();
        _ = message.Headers.ToJson();
        Row row;
        lock (_lock)
        {
            message.Id = ++_nextId;
            row = new Row(message);
            if (leaseUntil is { } until)
            {
                message.Attempts = 1;
                message.LeaseToken = leaseToken;
                row.LockedUntil = until;
                row.LeaseToken = leaseToken;
                LeasedWrites++;
            }
        }

        ambient.EnlistVolatile(new Enlistment(() =>
        {
            lock (_lock)
            {
                _rows.Add(row);
            }
        }), System.Transactions.EnlistmentOptions.None);
        return message.Id;
    }

    /// <summary>Adds the row of an ambient transaction when it commits.</summary>
    private sealed class Enlistment(Action commit) : System.Transactions.IEnlistmentNotification
    {
        public void Prepare(System.Transactions.PreparingEnlistment preparingEnlistment) => preparingEnlistment.Prepared();

        public void Commit(System.Transactions.Enlistment enlistment)
        {
            commit();
            enlistment.Done();
        }

        public void Rollback(System.Transactions.Enlistment enlistment) => enlistment.Done();

        public void InDoubt(System.Transactions.Enlistment enlistment) => enlistment.Done();
    }

    /// <summary>Gets how many messages were written already claimed (sends after commit).</summary>
    public int LeasedWrites { get; private set; }

    /// <inheritdoc />
    public Task<IReadOnlyList<OutboxMessage>> ClaimAsync(int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _claims);
        if (ClaimFailure is { } failure)
        {
            Claimed?.Invoke(0);
            return Task.FromException<IReadOnlyList<OutboxMessage>>(failure);
        }

        List<OutboxMessage> claimed;
        lock (_lock)
        {
            claimed = [];
            _claimNow = now;
            var token = ++_lastToken;
            foreach (var row in _rows.Where(r => r.IsPending && (r.LockedUntil is null || r.LockedUntil <= now) && IsHeadOfItsKey(r)).ToList().Take(batchSize))
            {
                row.LockedUntil = leaseUntil;
                row.LeaseToken = token;
                row.Message.Attempts++;
                var copy = Copy(row.Message);
                copy.LeaseToken = token;
                claimed.Add(copy);
            }
        }

        Claimed?.Invoke(claimed.Count);
        return Task.FromResult<IReadOnlyList<OutboxMessage>>(claimed);
    }

    /// <inheritdoc />
    public Task<int> MarkDispatchedAsync(IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken = default)
    {
        if (MarkFailure is { } failure)
        {
            return Task.FromException<int>(failure);
        }

        var marked = 0;
        lock (_lock)
        {
            foreach (var row in _rows.Where(r => ids.Contains(r.Message.Id) && r.LeaseToken == leaseToken))
            {
                row.Dispatched = true;
                row.Message.Dispatched = true;
                row.Message.DispatchedAt = dispatchedAt;
                row.LockedUntil = null;
                marked++;
            }
        }

        return Task.FromResult(marked);
    }

    /// <inheritdoc />
    public Task<bool> ReleaseAsync(long id, long leaseToken, DateTimeOffset retryAt, string error, bool outcomeUnknown = false, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var row = _rows.Single(r => r.Message.Id == id);
            if (row.LeaseToken != leaseToken || !row.IsPending)
            {
                return Task.FromResult(false);
            }

            row.LockedUntil = retryAt;
            row.LastError = error;
            row.UncertainAttempts += outcomeUnknown ? 1 : 0;
        }

        return Task.FromResult(true);
    }

    /// <inheritdoc />
    public Task<OutboxStatistics> GetStatisticsAsync(DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var pending = _rows.Where(r => r.IsPending).ToList();
            return Task.FromResult(new OutboxStatistics(
                pending.Count,
                pending.Count(r => r.LockedUntil > now),
                _rows.Count(r => r.Message.DeadLetteredAt is not null),
                pending.Count == 0 ? null : pending.Min(r => r.Message.CreatedAt),
                now));
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<OutboxDestinationStatistics>> GetDestinationStatisticsAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            IReadOnlyList<OutboxDestinationStatistics> result =
            [
                .. _rows.Where(r => !r.Dispatched)
                    .GroupBy(r => r.Message.Destination)
                    .OrderBy(g => g.Key, StringComparer.Ordinal)
                    .Select(g => new OutboxDestinationStatistics(
                        g.Key,
                        g.Count(r => r.IsPending),
                        g.Count(r => r.Message.DeadLetteredAt is not null),
                        g.Where(r => r.IsPending).Select(r => (DateTimeOffset?)r.Message.CreatedAt).Min())),
            ];
            return Task.FromResult(result);
        }
    }

    /// <inheritdoc />
    public Task<bool> DeadLetterAsync(long id, long leaseToken, DateTimeOffset deadLetteredAt, string error, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var row = _rows.Single(r => r.Message.Id == id);
            if (row.LeaseToken != leaseToken || !row.IsPending)
            {
                return Task.FromResult(false);
            }

            row.Message.DeadLetteredAt = deadLetteredAt;
            row.LastError = error;
            row.LockedUntil = null;
        }

        return Task.FromResult(true);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<OutboxMessage>> GetDeadLettersAsync(int limit, long afterId = 0, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return Task.FromResult<IReadOnlyList<OutboxMessage>>(_rows
                .Where(r => r.Message.DeadLetteredAt is not null && r.Message.Id > afterId)
                .Take(limit)
                .Select(r =>
                {
                    var copy = Copy(r.Message);
                    copy.LastError = r.LastError;
                    copy.UncertainAttempts = r.UncertainAttempts;
                    copy.DeadLetteredAt = r.Message.DeadLetteredAt;
                    return copy;
                })
                .ToList());
        }
    }

    /// <inheritdoc />
    public Task<int> RequeueDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var rows = DeadLetters(ids);
            foreach (var row in rows)
            {
                row.Message.DeadLetteredAt = null;
                row.Message.Attempts = 0;
                row.LockedUntil = null;
            }

            return Task.FromResult(rows.Count);
        }
    }

    /// <inheritdoc />
    public Task<int> PurgeDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var rows = DeadLetters(ids);
            _rows.RemoveAll(rows.Contains);
            return Task.FromResult(rows.Count);
        }
    }

    /// <inheritdoc />
    public Task<int> RemoveDispatchedAsync(DateTimeOffset dispatchedBefore, int batchSize, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var old = _rows.Where(r => r.Dispatched && r.Message.DispatchedAt < dispatchedBefore).Take(batchSize).ToList();
            foreach (var row in old)
            {
                _rows.Remove(row);
            }

            return Task.FromResult(old.Count);
        }
    }

    private List<Row> DeadLetters(IReadOnlyCollection<long>? ids) =>
        _rows.Where(r => r.Message.DeadLetteredAt is not null && (ids is null || ids.Contains(r.Message.Id))).ToList();

    // As the database stores do: a keyed message waits while an older message with its key is pending.
    private bool IsHeadOfItsKey(Row row) =>
        row.Message.OrderingKey is null ||
        !_rows.Any(r => r.IsPending && r.Message.OrderingKey == row.Message.OrderingKey && r != row && (r.Message.Id < row.Message.Id || r.LockedUntil > _claimNow));

    private static OutboxMessage Copy(OutboxMessage source)
    {
        var copy = new OutboxMessage(source.Payload)
        {
            Id = source.Id,
            MessageId = source.MessageId,
            CreatedAt = source.CreatedAt,
            Attempts = source.Attempts,
            OrderingKey = source.OrderingKey,
        };
        foreach (var (key, value) in source.Options)
        {
            copy.Options[key] = value;
        }

        foreach (var (key, value) in source.Headers)
        {
            copy.Headers[key] = value;
        }

        return copy;
    }

    private sealed class Row(OutboxMessage message)
    {
        public OutboxMessage Message { get; } = message;

        public bool Dispatched { get; set; }

        public bool IsPending => !Dispatched && Message.DeadLetteredAt is null;

        public DateTimeOffset? LockedUntil { get; set; }

        public long LeaseToken { get; set; }

        public string? LastError { get; set; }

        public int UncertainAttempts { get; set; }
    }
}
