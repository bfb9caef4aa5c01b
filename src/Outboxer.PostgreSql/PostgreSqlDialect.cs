using System.Buffers.Binary;
using System.Data.Common;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Npgsql;
using NpgsqlTypes;
using Outboxer.Providers;

namespace Outboxer.PostgreSql;

/// <summary>PostgreSQL's statements and table layout for <see cref="RelationalOutboxStore"/>.</summary>
internal sealed partial class PostgreSqlDialect : OutboxSqlDialect
{
    private const string PendingIndexSuffix = "pending_ix";
    private const string LeasedIndexSuffix = "leased_ix";
    private const string CleanupIndexSuffix = "dispatched_at_ix";
    private const string OrderingIndexSuffix = "ordering_ix";
    private const string DeadLetterIndexSuffix = "dead_letters_ix";
    private const string NotifySuffix = "notify";

    /// <summary>The table comment that records the layout version; a table without it was created by 0.1.0-preview.1 (version 1).</summary>
    private const string VersionCommentPrefix = "Outboxer outbox table, layout version ";

    // Whether the table exists, its comment, how many of its five indexes exist, and whether the notify trigger does: catalog reads
    // only, which need no privilege on the table.
    private const string StateSql = """
        SELECT c.oid IS NOT NULL, obj_description(c.oid, 'pg_class'),
            (SELECT count(*)::integer FROM pg_catalog.pg_class i JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
             WHERE n.nspname = @schema AND i.relname IN (@pending_ix, @leased_ix, @cleanup_ix, @ordering_ix, @dead_letters_ix)),
            EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = @trigger)
        FROM (SELECT (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = @schema AND c.relname = @table AND c.relkind IN ('r', 'p')) AS oid) AS c
        """;

    private readonly string _schema;
    private readonly string _tableName;
    private readonly string _table;
    private readonly bool _notifyOnCommit;
    private readonly bool _prepare;
    private readonly bool _databaseClock;
    private readonly long _lockKey;
    private readonly string _insertSql;
    private readonly string _insertQuietSql;
    private readonly string _insertLeasedSql;
    private readonly string _quietSql;
    private readonly string _claimSql;
    private readonly string _lockedClaimSql;
    private readonly string _markLockedSql;
    private readonly string _releaseLockedSql;
    private readonly string _deadLetterLockedSql;
    private readonly bool _claimByRowLock;
    private ClaimStatement? _lockedClaimSqlForSize;
    private readonly string _markSql;
    private readonly OutboxMigration[] _migrations;
    private readonly ConditionalWeakTable<DbTransaction, CommitWatch> _commitWatches = new();
    private int _localListeners;
    private ClaimStatement? _claimSqlForSize;

    public PostgreSqlDialect(PostgreSqlOutboxStoreOptions options)
    {
        options.Validate();
        _schema = options.SchemaName;
        _tableName = options.TableName;
        _table = QualifiedName(_schema, _tableName);
        Channel = ChannelFor(_schema, _tableName);
        _notifyOnCommit = options.NotifyOnCommit;
        _prepare = options.PrepareStatements;
        _databaseClock = options.UseDatabaseClock;
        _claimByRowLock = options.ClaimByRowLock;
        _lockKey = LockKey(_schema, _tableName);
        _migrations = Layout(_schema, _tableName, _notifyOnCommit);
        const string Columns = "message_id, payload, options, headers, created_at, ordering_key, destination";
        _insertSql = $"INSERT INTO {_table} ({Columns}) VALUES (@message_id, @payload, @options, @headers, @created_at, @ordering_key, @destination) RETURNING id";

        // While this process's dispatcher listens, enqueues wake it in memory; the transaction-local setting tells the trigger not to
        // NOTIFY (a notifying commit holds a global lock through its disk flush, which serializes concurrent enqueuing commits).
        _quietSql = $"set_config('{QuietSettingFor(Channel)}', 'on', true)";

        // The quiet insert also takes a shared transaction-scoped advisory lock on (this table, a random key of the transaction): the process's
        // commit watcher waits for that lock, which PostgreSQL releases the moment the transaction commits or rolls back, and so
        // wakes the dispatcher right after a commit it did not make (the application's own) without polling for it.
        CommitWatchKey = (int)(_lockKey >> 32);
        _insertQuietSql = $"INSERT INTO {_table} ({Columns}) SELECT @message_id, @payload, @options, @headers, @created_at, @ordering_key, @destination FROM {CommitWatchLockSql} AS commit_watch WHERE {_quietSql} = 'on' RETURNING id";

        // A row written already claimed by the committing process (send after commit) needs no one woken: that process publishes it,
        // and others find it by polling once its lease runs out. So it never notifies, and its commit takes no notify lock.
        // With the database's clock a lease is a duration (@lease, an interval) from the server's time: clock_timestamp() where the
        // statement runs inside someone's longer transaction, statement_timestamp() (stable, so an index condition) in the claim.
        var leasedUntil = _databaseClock ? "clock_timestamp() + @lease" : "@lease_until";
        _insertLeasedSql = $"INSERT INTO {_table} ({Columns}, locked_until, lease_token, attempts) SELECT @message_id, @payload, @options, @headers, @created_at, @ordering_key, @destination, {leasedUntil}, @token, 1 WHERE {_quietSql} = 'on' RETURNING id";

        // Two kinds of rows are claimable: never claimed (the pending index, in id order) and due again (a lease that ran out or a
        // retry time that came: the leased index, in time order). Rows leased to batches in flight are in neither list, so however
        // many batches every dispatcher has in flight, a claim does not visit them. Each CTE is MATERIALIZED so its locking SELECT
        // runs exactly once; SKIP LOCKED passes over rows that another claim, a mark or a release is holding, and READ COMMITTED
        // re-checks the WHERE on rows changed since the snapshot. Of the two lists the oldest ids win; the few rows locked beyond
        // the batch are released when the claim commits, a moment later.
        var keyFree = $"""
            (c.ordering_key IS NULL OR NOT EXISTS (
                      SELECT FROM {_table} AS p
                      WHERE p.ordering_key = c.ordering_key AND (p.id < c.id OR (p.id <> c.id AND p.locked_until > @now)) AND NOT p.dispatched AND p.dead_lettered_at IS NULL))
            """;
        string Lists(string columns) => $"""
            WITH fresh AS MATERIALIZED (
                SELECT {columns} FROM {_table} AS c
                WHERE NOT c.dispatched AND c.dead_lettered_at IS NULL AND c.locked_until IS NULL
                  AND {keyFree}
                ORDER BY c.id
                LIMIT @limit
                FOR UPDATE SKIP LOCKED),
            due AS MATERIALIZED (
                SELECT {columns} FROM {_table} AS c
                WHERE NOT c.dispatched AND c.dead_lettered_at IS NULL AND c.locked_until IS NOT NULL AND c.locked_until <= @now
                  AND {keyFree}
                ORDER BY c.locked_until
                LIMIT @limit
                FOR UPDATE SKIP LOCKED)
            """;
        _claimSql = Lists("c.id") + $"""
            ,
            claimable AS (SELECT id FROM fresh UNION ALL SELECT id FROM due ORDER BY id LIMIT @limit)
            UPDATE {_table} AS o SET locked_until = @lease_until, attempts = o.attempts + 1, lease_token = @token
            FROM claimable
            WHERE o.id = claimable.id
            RETURNING o.id, o.message_id, o.payload, o.options::text, o.headers::text, o.created_at, o.attempts, o.ordering_key, o.destination
            """;

        // The claim by row lock: the same two lists, locked and read, not updated. The rows stay locked by the claim's open transaction
        // while the batch publishes, and the settlement updates each row once. Rows other batches hold are in the pending list too
        // (their lease columns are untouched), so a claim steps over them with SKIP LOCKED; the few rows locked beyond the batch stay
        // locked, unread, until the claim settles. Each list reads its rows' columns as it locks them, so the batch is not looked up
        // again by primary key.
        _lockedClaimSql = Lists("c.id, c.message_id, c.payload, c.options, c.headers, c.created_at, c.attempts, c.ordering_key, c.destination") + """

            SELECT id, message_id, payload, options::text, headers::text, created_at, attempts + 1, ordering_key, destination
            FROM (SELECT * FROM fresh UNION ALL SELECT * FROM due) AS claimable
            ORDER BY id
            LIMIT @limit
            """;
        if (_databaseClock)
        {
            _claimSql = _claimSql.Replace("@now", "statement_timestamp()", StringComparison.Ordinal)
                .Replace("@lease_until", "statement_timestamp() + @lease", StringComparison.Ordinal);
            _lockedClaimSql = _lockedClaimSql.Replace("@now", "statement_timestamp()", StringComparison.Ordinal);
        }

        // A settlement in the claim's transaction needs no token: the lock proves the claim still holds the rows. It clears the token too,
        // so that a sender after commit whose lease ran out (and whose row this claim took) no longer marks the row as its own.
        _markLockedSql = $"UPDATE {_table} SET dispatched = true, dispatched_at = @at, locked_until = NULL, lease_token = NULL, attempts = attempts + 1 WHERE id = ANY(CAST(@ids AS bigint[]))";
        _releaseLockedSql = $"UPDATE {_table} SET locked_until = @retry_at, last_error = @error, uncertain_attempts = uncertain_attempts + @uncertain, attempts = attempts + 1, lease_token = NULL WHERE id = @id";
        _deadLetterLockedSql = $"UPDATE {_table} SET dead_lettered_at = @at, locked_until = NULL, last_error = @error, uncertain_attempts = uncertain_attempts + @uncertain, attempts = attempts + 1, lease_token = NULL WHERE id = @id";

        // The ids travel as the text of a bigint[] ('{1,2,3}'), not as a long[] parameter: a slim (NativeAOT) data source
        // without EnableArrays() cannot write arrays, and would fail only here, after the messages were published.
        _markSql = $"UPDATE {_table} SET dispatched = true, dispatched_at = @at, locked_until = NULL WHERE id = ANY(CAST(@ids AS bigint[])) AND lease_token = @token";
        ReleaseSql = $"UPDATE {_table} SET locked_until = @retry_at, last_error = @error, uncertain_attempts = uncertain_attempts + @uncertain WHERE id = @id AND lease_token = @token AND NOT dispatched AND dead_lettered_at IS NULL";
        DeadLetterSql = $"UPDATE {_table} SET dead_lettered_at = @at, locked_until = NULL, last_error = @error WHERE id = @id AND lease_token = @token AND NOT dispatched AND dead_lettered_at IS NULL";

        // Bounded batches keep each delete's locks short; SKIP LOCKED lets cleanups in several processes run side by side.
        RemoveDispatchedSql = $"""
            WITH expired AS MATERIALIZED (
                SELECT id FROM {_table}
                WHERE dispatched AND dispatched_at < @cutoff
                ORDER BY id
                LIMIT @limit
                FOR UPDATE SKIP LOCKED)
            DELETE FROM {_table} AS o
            USING expired
            WHERE o.id = expired.id
            """;
        StatisticsSql = $"""
            SELECT count(*) FILTER (WHERE dead_lettered_at IS NULL),
                count(*) FILTER (WHERE dead_lettered_at IS NULL AND locked_until > @now),
                count(*) FILTER (WHERE dead_lettered_at IS NOT NULL),
                min(created_at) FILTER (WHERE dead_lettered_at IS NULL)
            FROM {_table} WHERE NOT dispatched
            """;
        DestinationStatisticsSql = $"""
            SELECT destination,
                count(*) FILTER (WHERE dead_lettered_at IS NULL),
                count(*) FILTER (WHERE dead_lettered_at IS NOT NULL),
                min(created_at) FILTER (WHERE dead_lettered_at IS NULL)
            FROM {_table} WHERE NOT dispatched
            GROUP BY destination ORDER BY destination NULLS FIRST
            """;
        DeadLettersSql = $"""
            SELECT id, message_id, payload, options::text, headers::text, created_at, attempts, ordering_key, destination, last_error, dead_lettered_at, uncertain_attempts
            FROM {_table} WHERE dead_lettered_at IS NOT NULL AND id > @after ORDER BY id LIMIT @limit
            """;
    }

    /// <summary>Gets the LISTEN/NOTIFY channel of the table.</summary>
    public string Channel { get; }

    public override string Table => _table;

    public override IReadOnlyList<OutboxMigration> Migrations => _migrations;

    public override string ReleaseSql { get; }

    public override string DeadLetterSql { get; }

    public override string RemoveDispatchedSql { get; }

    public override string StatisticsSql { get; }

    public override string DestinationStatisticsSql { get; }

    public override string DeadLettersSql { get; }

    // message_id is a uuid column: compare it with a uuid parameter (text would not compare).
    public override object ToDbMessageId(Guid messageId) => messageId;

    public override string? RepairSql => RepairScript(_schema, _tableName, _notifyOnCommit);

    public bool NotifyOnCommit => _notifyOnCommit;

    /// <summary>Gets a value indicating whether a dispatcher in this process listens, so that enqueues need not notify.</summary>
    private bool Quiet => _notifyOnCommit && Volatile.Read(ref _localListeners) > 0;

    /// <summary>The shared lock a quiet insert takes for the commit watcher, as a one-row subquery to put in its FROM.</summary>
    private string CommitWatchLockSql => $"(SELECT pg_advisory_xact_lock_shared({CommitWatchKey.ToString(CultureInfo.InvariantCulture)}, @commit_watch))";

    /// <summary>Gets the first key of the advisory lock a quiet insert takes with its backend's process id (see <see cref="Inserted"/>).</summary>
    public int CommitWatchKey { get; }

    /// <summary>Gets or sets where <see cref="Inserted"/> reports the key of a transaction that inserted quietly: the listening store's commit watcher.</summary>
    public Action<int>? WatchCommit { get; set; }

    /// <summary>Hands the caller's transaction's lock key to the commit watcher, once per transaction, when it inserted quietly (a listener runs).</summary>
    public override void Inserted(DbConnection connection, DbTransaction transaction)
    {
        if (WatchCommit is { } watch && _commitWatches.TryGetValue(transaction, out var commitWatch) && !commitWatch.Watched)
        {
            commitWatch.Watched = true;
            watch(commitWatch.Key);
        }
    }

    // One random key per caller transaction (the second half of its advisory lock): the watcher waits for exactly that transaction,
    // never for a later one on the same session.
    private CommitWatch CommitWatchFor(DbTransaction? transaction) =>
        transaction is null ? new CommitWatch() : _commitWatches.GetValue(transaction, static _ => new CommitWatch());

    /// <summary>Counts a listener of this process in (<paramref name="delta"/> 1) or out (-1).</summary>
    public void Listening(int delta) => Interlocked.Add(ref _localListeners, delta);

    /// <summary>The whole script of the latest layout, from nothing, for the given settings (without a store).</summary>
    public static string Script(PostgreSqlOutboxStoreOptions options, int fromVersion) =>
        RelationalOutboxStore.ScriptFor(new PostgreSqlDialect(options), fromVersion);

    public override bool Owns(DbTransaction transaction) => transaction is NpgsqlTransaction;

    // jsonb cannot hold U+0000 (the server rejects "\u0000"): checked before anything reaches the server, because a failed statement
    // would abort the caller's whole transaction.
    public override void Validate(SerializedMessage row) => ValidateJson(row);

    /// <summary>The check of <see cref="Validate"/>, shared with the log mode so that a message either mode accepts, the other accepts too.</summary>
    public static void ValidateJson(SerializedMessage row)
    {
        RejectNul(row.OptionsJson, "options");
        RejectNul(row.HeadersJson, "headers");
    }

    public override DbCommand CreateInsertCommand(DbConnection connection, DbTransaction? transaction, SerializedMessage row)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var quiet = row.LeaseUntil is null && Quiet;
        var command = Command(connection, null, row.LeaseUntil is not null ? _insertLeasedSql : quiet ? _insertQuietSql : _insertSql);
        try
        {
            command.Transaction = (NpgsqlTransaction?)transaction;
        }
        catch (InvalidOperationException ex)
        {
            // Npgsql keeps a committed transaction's Connection (other providers clear it), and refuses it here instead.
            command.Dispose();
            throw new ArgumentException("The transaction is already committed or rolled back; enqueue inside an open transaction.", nameof(transaction), ex);
        }

        var message = row.Message;
        if (quiet)
        {
            Add(command, "commit_watch", CommitWatchFor(transaction).Key);
        }

        Add(command, "message_id", message.MessageId);
        Add(command, "payload", message.Payload);
        command.Parameters.Add(new NpgsqlParameter("options", NpgsqlDbType.Jsonb) { Value = (object?)row.OptionsJson ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("headers", NpgsqlDbType.Jsonb) { Value = (object?)row.HeadersJson ?? DBNull.Value });
        Add(command, "created_at", message.CreatedAt.ToUniversalTime());
        command.Parameters.Add(new NpgsqlParameter("ordering_key", NpgsqlDbType.Text) { Value = (object?)message.OrderingKey ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("destination", NpgsqlDbType.Text) { Value = (object?)message.Destination ?? DBNull.Value });
        if (row.LeaseUntil is { } leaseUntil)
        {
            if (_databaseClock)
            {
                // The lease's length, from the server's time when the row is written.
                Add(command, "lease", leaseUntil - (row.LeasedAt ?? leaseUntil));
            }
            else
            {
                Add(command, "lease_until", leaseUntil.ToUniversalTime());
            }

            command.Parameters.Add(new NpgsqlParameter<long>("token", row.LeaseToken));
        }

        return command;
    }

    /// <summary>Prepares the insert when <see cref="PostgreSqlOutboxStoreOptions.PrepareStatements"/> is on.</summary>
    public override Task PrepareAsync(DbCommand command, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        return _prepare ? command.PrepareAsync(cancellationToken) : Task.CompletedTask;
    }

    /// <summary>
    /// The most rows <see cref="InsertRangeAsync"/> writes with one <c>INSERT ... SELECT FROM unnest(...)</c>; a longer list goes
    /// through one binary <c>COPY</c>, which costs two more round trips but writes the rows in bulk. Measured (median client time of a
    /// list in its transaction, 256-byte payloads, busy 2-core machine): 10 rows 5.6 ms against COPY's 15.6, 100 rows 5.7 against 12.1,
    /// 200 rows 9.7 against 14.3, but 400 rows 23.5 against 15.5 and 800 rows 38.6 against 23.5.
    /// </summary>
    internal const int MaxRowsPerInsert = 200;

    private string? _insertManySql;
    private string? _insertManyQuietSql;
    private string? _insertManyLeasedSql;

    // Set when the caller's data source cannot write arrays (a slim data source without EnableArrays()): from then on lists go row by row.
    private bool _noArrays;

    /// <summary>
    /// Inserts the messages within the caller's transaction: up to <see cref="MaxRowsPerInsert"/> with one <c>INSERT</c> whose values
    /// travel as seven arrays (one statement, one round trip, one trigger call, and every <see cref="OutboxMessage.Id"/> from its
    /// <c>RETURNING</c>); more with one binary <c>COPY</c>, after which <see cref="OutboxMessage.Id"/> stays zero. Rows written already
    /// claimed (send after commit) are marked by id, so they always go by <c>INSERT</c>, <see cref="MaxRowsPerInsert"/> at a time. A data
    /// source that cannot write arrays (a slim one without <c>EnableArrays()</c>) inserts row by row instead; its refusal comes before
    /// anything reaches the server, so the caller's transaction is untouched.
    /// </summary>
    public override async Task<int> InsertRangeAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var leased = rows.Count > 0 && rows[0].LeaseUntil is not null;
        if (rows.Count > MaxRowsPerInsert && !leased)
        {
            return await CopyRangeAsync(connection, transaction, rows, cancellationToken).ConfigureAwait(false);
        }

        for (var start = 0; start < rows.Count; start += MaxRowsPerInsert)
        {
            var count = Math.Min(MaxRowsPerInsert, rows.Count - start);
            if (Volatile.Read(ref _noArrays) || !await InsertUnnestAsync(connection, transaction, rows, start, count, cancellationToken).ConfigureAwait(false))
            {
                await base.InsertRangeAsync(connection, transaction, [.. rows.Skip(start)], cancellationToken).ConfigureAwait(false);
                break;
            }
        }

        return rows.Count;
    }

    /// <summary>Inserts <paramref name="count"/> rows from <paramref name="start"/> with one statement; false when the data source cannot write arrays (nothing sent).</summary>
    private async Task<bool> InsertUnnestAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, int start, int count, CancellationToken cancellationToken)
    {
        var messageIds = new Guid[count];
        var payloads = new byte[count][];
        var options = new string?[count];
        var headers = new string?[count];
        var createdAt = new DateTime[count];
        var orderingKeys = new string?[count];
        var destinations = new string?[count];
        for (var i = 0; i < count; i++)
        {
            var row = rows[start + i];
            var message = row.Message;
            messageIds[i] = message.MessageId;
            payloads[i] = message.Payload;
            options[i] = row.OptionsJson;
            headers[i] = row.HeadersJson;
            createdAt[i] = message.CreatedAt.UtcDateTime;
            orderingKeys[i] = message.OrderingKey;
            destinations[i] = message.Destination;
        }

        var lease = rows[start].LeaseUntil;
        var quiet = lease is null && Quiet;
        var command = Command(connection, null, InsertManySql(lease is not null ? 2 : quiet ? 1 : 0));
        await using (command.ConfigureAwait(false))
        {
            SetTransaction(command, transaction);
            if (quiet)
            {
                Add(command, "commit_watch", CommitWatchFor(transaction).Key);
            }

            command.Parameters.Add(new NpgsqlParameter("message_ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { Value = messageIds });
            command.Parameters.Add(new NpgsqlParameter("payloads", NpgsqlDbType.Array | NpgsqlDbType.Bytea) { Value = payloads });
            command.Parameters.Add(new NpgsqlParameter("options", NpgsqlDbType.Array | NpgsqlDbType.Jsonb) { Value = options });
            command.Parameters.Add(new NpgsqlParameter("headers", NpgsqlDbType.Array | NpgsqlDbType.Jsonb) { Value = headers });
            command.Parameters.Add(new NpgsqlParameter("created_ats", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = createdAt });
            command.Parameters.Add(new NpgsqlParameter("ordering_keys", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = orderingKeys });
            command.Parameters.Add(new NpgsqlParameter("destinations", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = destinations });
            if (lease is { } leaseUntil)
            {
                if (_databaseClock)
                {
                    // The lease's length, from the server's time when the rows are written.
                    Add(command, "lease", leaseUntil - (rows[start].LeasedAt ?? leaseUntil));
                }
                else
                {
                    Add(command, "lease_until", leaseUntil.ToUniversalTime());
                }

                command.Parameters.Add(new NpgsqlParameter<long>("token", rows[start].LeaseToken));
            }

            var ids = new List<long>(count);
            try
            {
                if (_prepare)
                {
                    await command.PrepareAsync(cancellationToken).ConfigureAwait(false);
                }

                var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        ids.Add(reader.GetInt64(0));
                    }
                }
            }
            catch (Exception ex) when (ex is NotSupportedException or InvalidCastException && ids.Count == 0 && LacksArrays(ex))
            {
                // Refused while binding the parameters, before anything was sent.
                Volatile.Write(ref _noArrays, true);
                return false;
            }

            // The identity hands out ascending values in the order unnest produces the rows, which is the arrays' order; RETURNING
            // itself promises no order, so sort.
            ids.Sort();
            for (var i = 0; i < ids.Count && i < count; i++)
            {
                rows[start + i].Message.Id = ids[i];
            }

            return true;
        }
    }

    // Npgsql names the missing plugin in its message or its inner exception's ("EnableArrays"); any other refusal is a real error.
    private static bool LacksArrays(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            if (ex.Message.Contains("EnableArrays", StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The statement of <see cref="InsertUnnestAsync"/>: 0 plain, 1 quiet (no NOTIFY), 2 already claimed (never notifies, like <c>_insertLeasedSql</c>).</summary>
    private string InsertManySql(int kind) => kind switch
    {
        0 => _insertManySql ??= $"INSERT INTO {_table} ({ManyColumns}) SELECT * FROM {ManyValues} RETURNING id",
        1 => _insertManyQuietSql ??= $"INSERT INTO {_table} ({ManyColumns}) SELECT u.* FROM {ManyValues} AS u, {CommitWatchLockSql} AS commit_watch WHERE {_quietSql} = 'on' RETURNING id",
        _ => _insertManyLeasedSql ??= $"INSERT INTO {_table} ({ManyColumns}, locked_until, lease_token, attempts) SELECT u.*, {(_databaseClock ? "clock_timestamp() + @lease" : "@lease_until")}, @token, 1 FROM {ManyValues} AS u WHERE {_quietSql} = 'on' RETURNING id",
    };

    private const string ManyColumns = "message_id, payload, options, headers, created_at, ordering_key, destination";

    private const string ManyValues = "unnest(@message_ids, @payloads, @options, @headers, @created_ats, @ordering_keys, @destinations)";

    private static void SetTransaction(NpgsqlCommand command, DbTransaction transaction)
    {
        try
        {
            command.Transaction = (NpgsqlTransaction)transaction;
        }
        catch (InvalidOperationException ex)
        {
            // Npgsql keeps a committed transaction's Connection (other providers clear it), and refuses it here instead.
            throw new ArgumentException("The transaction is already committed or rolled back; enqueue inside an open transaction.", nameof(transaction), ex);
        }
    }

    /// <summary>Inserts the messages with one binary <c>COPY</c> within the caller's transaction. <see cref="OutboxMessage.Id"/> stays zero.</summary>
    private async Task<int> CopyRangeAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, CancellationToken cancellationToken)
    {
        // COPY runs in whatever transaction the connection has; make sure it is the caller's, still open, and not autocommit.
        using (var probe = Command(connection, null, $"SELECT {_quietSql} FROM {CommitWatchLockSql} AS commit_watch"))
        {
            try
            {
                probe.Transaction = (NpgsqlTransaction)transaction;
            }
            catch (InvalidOperationException ex)
            {
                throw new ArgumentException("The transaction is already committed or rolled back; enqueue inside an open transaction.", nameof(transaction), ex);
            }

            if (Quiet)
            {
                Add(probe, "commit_watch", CommitWatchFor(transaction).Key);
                await probe.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        var importer = await ((NpgsqlConnection)connection).BeginBinaryImportAsync(
            $"COPY {_table} (message_id, payload, options, headers, created_at, ordering_key, destination) FROM STDIN (FORMAT BINARY)", cancellationToken).ConfigureAwait(false);
        await using (importer.ConfigureAwait(false))
        {
            foreach (var row in rows)
            {
                await importer.StartRowAsync(cancellationToken).ConfigureAwait(false);
                await importer.WriteAsync(row.Message.MessageId, NpgsqlDbType.Uuid, cancellationToken).ConfigureAwait(false);
                await importer.WriteAsync(row.Message.Payload, NpgsqlDbType.Bytea, cancellationToken).ConfigureAwait(false);
                await WriteAsync(importer, row.OptionsJson, NpgsqlDbType.Jsonb, cancellationToken).ConfigureAwait(false);
                await WriteAsync(importer, row.HeadersJson, NpgsqlDbType.Jsonb, cancellationToken).ConfigureAwait(false);
                await importer.WriteAsync(row.Message.CreatedAt.ToUniversalTime(), NpgsqlDbType.TimestampTz, cancellationToken).ConfigureAwait(false);
                await WriteAsync(importer, row.Message.OrderingKey, NpgsqlDbType.Text, cancellationToken).ConfigureAwait(false);
                await WriteAsync(importer, row.Message.Destination, NpgsqlDbType.Text, cancellationToken).ConfigureAwait(false);
            }

            return (int)await importer.CompleteAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Claims in a short transaction of its own that first sets <c>jit = off</c> and <c>synchronous_commit = off</c>, sent with the claim
    /// in one round trip. Without statistics (a young or fast-growing table) the planner's estimate for the ordering-key check switches
    /// on JIT compilation, which costs 200 ms and more per claim; and a claim lost in a database crash only makes its messages claimable
    /// again (at least once), so its commit need not wait for the disk. The later mark does wait, and flushes the claim with it.
    /// </summary>
    public override async Task ClaimAsync(DbConnection connection, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, ICollection<OutboxMessage> claimed, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claimed);
        var npgsql = (NpgsqlConnection)connection;
        var transaction = await npgsql.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (transaction.ConfigureAwait(false))
        {
            var batch = new NpgsqlBatch(npgsql, transaction);
            await using (batch.ConfigureAwait(false))
            {
                batch.BatchCommands.Add(new NpgsqlBatchCommand("SET LOCAL jit = off"));
                batch.BatchCommands.Add(new NpgsqlBatchCommand("SET LOCAL synchronous_commit = off"));
                var claim = new NpgsqlBatchCommand(ClaimSqlFor(batchSize));
                if (_databaseClock)
                {
                    claim.Parameters.Add(new NpgsqlParameter<TimeSpan>("lease", leaseUntil - now));
                }
                else
                {
                    claim.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now.ToUniversalTime()));
                    claim.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("lease_until", leaseUntil.ToUniversalTime()));
                }

                claim.Parameters.Add(new NpgsqlParameter<long>("token", leaseToken));
                batch.BatchCommands.Add(claim);
                await ReadClaimedAsync(batch, claimed, cancellationToken).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Marks the rows in a short transaction with <c>synchronous_commit = off</c>, sent with the update in one round trip: a mark lost in
    /// a database crash only makes the messages publish again (at least once), so it need not wait for the disk flush.
    /// </summary>
    public override async Task<int> MarkDispatchedAsync(DbConnection connection, IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
        var transaction = await npgsql.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (transaction.ConfigureAwait(false))
        {
            var batch = new NpgsqlBatch(npgsql, transaction);
            await using (batch.ConfigureAwait(false))
            {
                batch.BatchCommands.Add(new NpgsqlBatchCommand("SET LOCAL synchronous_commit = off"));
                var mark = new NpgsqlBatchCommand(_markSql);
                mark.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("at", dispatchedAt.ToUniversalTime()));
                mark.Parameters.Add(new NpgsqlParameter<string>("ids", ToArrayLiteral(ids)));
                mark.Parameters.Add(new NpgsqlParameter<long>("token", leaseToken));
                batch.BatchCommands.Add(mark);
                if (_prepare)
                {
                    await batch.PrepareAsync(cancellationToken).ConfigureAwait(false);
                }

                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return mark.RecordsAffected;
            }
        }
    }

    public override bool ClaimsByRowLock => _claimByRowLock;

    /// <summary>
    /// Begins the claim's transaction and locks the batch in one round trip, after <c>SET LOCAL</c>s: <c>jit = off</c> (as for the
    /// leasing claim), <c>synchronous_commit = off</c> (a settlement lost in a database crash only makes the messages publish again) and
    /// <c>idle_in_transaction_session_timeout</c> = the hold, so that PostgreSQL ends the session of a dispatcher that stalls with the
    /// rows locked (a paused process, a lost host), freeing them for other dispatchers and failing the stalled one's settlement.
    /// </summary>
    public override async Task<DbTransaction> ClaimLockedAsync(DbConnection connection, int batchSize, DateTimeOffset now, TimeSpan hold, ICollection<OutboxMessage> claimed, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claimed);
        var npgsql = (NpgsqlConnection)connection;
        var transaction = await npgsql.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var batch = new NpgsqlBatch(npgsql, transaction);
            await using (batch.ConfigureAwait(false))
            {
                var holdMs = Math.Max(1, (long)Math.Ceiling(hold.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture);
                batch.BatchCommands.Add(new NpgsqlBatchCommand("SET LOCAL jit = off"));
                batch.BatchCommands.Add(new NpgsqlBatchCommand("SET LOCAL synchronous_commit = off"));
                batch.BatchCommands.Add(new NpgsqlBatchCommand($"SET LOCAL idle_in_transaction_session_timeout = {holdMs}"));
                var claim = new NpgsqlBatchCommand(LockedClaimSqlFor(batchSize));
                if (!_databaseClock)
                {
                    claim.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now.ToUniversalTime()));
                }

                batch.BatchCommands.Add(claim);
                await ReadClaimedAsync(batch, claimed, cancellationToken).ConfigureAwait(false);
            }

            return transaction;
        }
        catch
        {
            await transaction.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Marks, releases and dead-letters the claim's rows in one round trip (the caller commits).</summary>
    public override async Task SettleLockedAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<long> dispatched, IReadOnlyList<OutboxFailedAttempt> failed, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dispatched);
        ArgumentNullException.ThrowIfNull(failed);
        if (dispatched.Count == 0 && failed.Count == 0)
        {
            return;
        }

        var batch = new NpgsqlBatch((NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        await using (batch.ConfigureAwait(false))
        {
            var at = now.ToUniversalTime();
            if (dispatched.Count > 0)
            {
                var mark = new NpgsqlBatchCommand(_markLockedSql);
                mark.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("at", at));
                mark.Parameters.Add(new NpgsqlParameter<string>("ids", ToArrayLiteral(dispatched)));
                batch.BatchCommands.Add(mark);
            }

            foreach (var failure in failed)
            {
                var command = new NpgsqlBatchCommand(failure.RetryAt is null ? _deadLetterLockedSql : _releaseLockedSql);
                if (failure.RetryAt is { } retryAt)
                {
                    command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("retry_at", retryAt.ToUniversalTime()));
                }
                else
                {
                    command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("at", at));
                }

                command.Parameters.Add(new NpgsqlParameter<string>("error", failure.Error));
                command.Parameters.Add(new NpgsqlParameter<int>("uncertain", failure.OutcomeUnknown ? 1 : 0));
                command.Parameters.Add(new NpgsqlParameter<long>("id", failure.Id));
                batch.BatchCommands.Add(command);
            }

            if (_prepare && failed.Count == 0)
            {
                await batch.PrepareAsync(cancellationToken).ConfigureAwait(false);
            }

            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private string LockedClaimSqlFor(int batchSize) => ForSize(ref _lockedClaimSqlForSize, _lockedClaimSql, batchSize);

    /// <summary>Prepares the claim's batch (when statements are prepared), runs it and reads the claimed messages.</summary>
    private async Task ReadClaimedAsync(NpgsqlBatch batch, ICollection<OutboxMessage> claimed, CancellationToken cancellationToken)
    {
        if (_prepare)
        {
            await batch.PrepareAsync(cancellationToken).ConfigureAwait(false);
        }

        var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await using (reader.ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                claimed.Add(ReadMessage(reader));
            }
        }
    }

    public override async Task<OutboxSchemaState> ReadSchemaAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction, StateSql);
        await using (command.ConfigureAwait(false))
        {
            Add(command, "schema", _schema);
            Add(command, "table", _tableName);
            Add(command, "pending_ix", SqlIdentifier.Derive(_tableName, PendingIndexSuffix));
            Add(command, "leased_ix", SqlIdentifier.Derive(_tableName, LeasedIndexSuffix));
            Add(command, "cleanup_ix", SqlIdentifier.Derive(_tableName, CleanupIndexSuffix));
            Add(command, "ordering_ix", SqlIdentifier.Derive(_tableName, OrderingIndexSuffix));
            Add(command, "dead_letters_ix", SqlIdentifier.Derive(_tableName, DeadLetterIndexSuffix));
            Add(command, "trigger", SqlIdentifier.Derive(_tableName, NotifySuffix));
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                if (!reader.GetBoolean(0))
                {
                    return new OutboxSchemaState(0, false);
                }

                var comment = reader.IsDBNull(1) ? null : reader.GetString(1);
                var match = comment is null ? null : VersionComment().Match(comment);
                var version = match is { Success: true } ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 1;
                return new OutboxSchemaState(version, reader.GetInt32(2) != 5 || (_notifyOnCommit && !reader.GetBoolean(3)));
            }
        }
    }

    /// <summary>
    /// Begins a transaction (or joins the caller's) and takes a transaction-scoped advisory lock on the table's key: <c>CREATE ... IF NOT
    /// EXISTS</c> still fails with a unique violation when two sessions run it at once, so creators and migrators queue, then look again.
    /// </summary>
    public override async Task<DbTransaction?> BeginSchemaChangeAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        var tx = transaction ?? await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var command = Command(connection, tx, "SELECT pg_advisory_xact_lock(@key)");
            await using (command.ConfigureAwait(false))
            {
                Add(command, "key", _lockKey);
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            return tx;
        }
        catch
        {
            if (transaction is null)
            {
                await tx.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    public override string RecordVersionSql(int version, string description) =>
        $"COMMENT ON TABLE {_table} IS '{VersionCommentPrefix}{version.ToString(CultureInfo.InvariantCulture)}: {description.Replace("'", "''", StringComparison.Ordinal)}';";

    /// <summary>The layout's steps. Never change a released step: add one.</summary>
    private static OutboxMigration[] Layout(string schema, string table, bool notify)
    {
        var qualified = QualifiedName(schema, table);
        return
        [
            // Version 1, as 0.1.0-preview.1 created it. The schema is created only when missing: CREATE SCHEMA IF NOT EXISTS checks the
            // CREATE privilege on the database first, which a role that owns just its schema lacks.
            new OutboxMigration(1, "the outbox table of 0.1.0-preview.1", $"""
                DO $outboxer$ BEGIN
                    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = '{schema}') THEN
                        CREATE SCHEMA "{schema}";
                    END IF;
                END $outboxer$;
                CREATE TABLE IF NOT EXISTS {qualified} (
                    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    message_id uuid NOT NULL,
                    payload bytea NOT NULL,
                    options jsonb NULL,
                    headers jsonb NULL,
                    created_at timestamptz NOT NULL,
                    dispatched boolean NOT NULL DEFAULT false,
                    dispatched_at timestamptz NULL,
                    attempts integer NOT NULL DEFAULT 0,
                    locked_until timestamptz NULL,
                    last_error text NULL,
                    ordering_key text NULL,
                    dead_lettered_at timestamptz NULL
                );
                {IndexesSql(schema, table)}
                """),

            // Version 2: the destination the event stream named at enqueue, for statistics per destination. A nullable column with no
            // default: PostgreSQL adds it without rewriting the table, and processes of version 1 go on inserting without it.
            new OutboxMigration(2, "destination column", $"ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS destination text NULL;"),

            // Version 3: the token of the claim that holds a row, so that only that claim can mark, release or dead-letter it (fenced
            // claims). Nullable, no default, in no index: added without a rewrite, and claims stay HOT updates.
            new OutboxMigration(3, "lease_token column (fenced claims)", $"ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS lease_token bigint NULL;"),

            // Version 4: how many attempts had an unknown outcome (no confirm came), so that a dead letter that may have reached the
            // broker says so. A constant default: PostgreSQL 11 and later add it without rewriting the table.
            new OutboxMigration(4, "uncertain_attempts column (dead letters that may have been published); the notify trigger skips quiet statements", $"""
                ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS uncertain_attempts integer NOT NULL DEFAULT 0;
                {(notify ? TriggerConditionSql(schema, table) : string.Empty)}
                """),
        ];
    }

    private static string IndexesSql(string schema, string table)
    {
        var qualified = QualifiedName(schema, table);
        return $"""
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, PendingIndexSuffix)}" ON {qualified} (id) WHERE NOT dispatched AND locked_until IS NULL AND dead_lettered_at IS NULL;
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, LeasedIndexSuffix)}" ON {qualified} (locked_until) WHERE NOT dispatched AND locked_until IS NOT NULL AND dead_lettered_at IS NULL;
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, CleanupIndexSuffix)}" ON {qualified} (dispatched_at) WHERE dispatched;
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, OrderingIndexSuffix)}" ON {qualified} (ordering_key, id) WHERE NOT dispatched AND ordering_key IS NOT NULL;
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, DeadLetterIndexSuffix)}" ON {qualified} (id) WHERE dead_lettered_at IS NOT NULL;
            """;
    }

    // The indexes again (a table whose index was dropped gets it back) and, with NotifyOnCommit, the notify trigger.
    private static string RepairScript(string schema, string table, bool notify) =>
        IndexesSql(schema, table) + "\n" + (notify ? TriggerSql(schema, table) : string.Empty);

    // A statement-level trigger: every committed transaction that inserted sends one notification (PostgreSQL folds identical
    // notifications of a transaction into one, and delivers them only on commit), whoever inserted, in whatever language. The WHEN
    // condition skips the function call for the statements of a process whose own dispatcher is woken in memory (the quiet setting):
    // a PL/pgSQL call costs about 20 us per insert statement, the condition a fraction of that.
    private static string TriggerSql(string schema, string table)
    {
        var function = $"\"{schema}\".\"{SqlIdentifier.Derive(table, NotifySuffix)}\"";
        return $"""
            CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $outboxer$
            BEGIN
                PERFORM pg_notify('{ChannelFor(schema, table)}', '');
                RETURN NULL;
            END
            $outboxer$;
            {CreateTriggerSql(schema, table)}

            """;
    }

    private static string CreateTriggerSql(string schema, string table) => $"""
        CREATE OR REPLACE TRIGGER "{SqlIdentifier.Derive(table, NotifySuffix)}" AFTER INSERT ON {QualifiedName(schema, table)}
                FOR EACH STATEMENT WHEN (current_setting('{QuietSettingFor(ChannelFor(schema, table))}', true) IS DISTINCT FROM 'on')
                EXECUTE FUNCTION "{schema}"."{SqlIdentifier.Derive(table, NotifySuffix)}"();
        """;

    // Version 4 gives an existing notify trigger its WHEN condition (the function of versions 1-3 checks the quiet setting itself, so the
    // old function goes on working under the new trigger); a table without the trigger (NotifyOnCommit off) stays without.
    private static string TriggerConditionSql(string schema, string table) => $"""
        DO $outboxer_v4$ BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = '{schema}' AND c.relname = '{table}' AND t.tgname = '{SqlIdentifier.Derive(table, NotifySuffix)}') THEN
                {CreateTriggerSql(schema, table)}
            END IF;
        END $outboxer_v4$;
        """;

    /// <summary>
    /// The claim with its batch size as a literal: a prepared statement's generic plan then knows the limit, and keeps reading the
    /// pending index in id order (a handful of rows) instead of collecting every pending row to sort them, which a large backlog makes
    /// slow. A dispatcher always claims the same batch size, so this is one statement per store.
    /// </summary>
    private string ClaimSqlFor(int batchSize) => ForSize(ref _claimSqlForSize, _claimSql, batchSize);

    /// <summary>The statement with its batch size written in (a constant LIMIT plans better than a parameter), cached for the last size.</summary>
    private static string ForSize(ref ClaimStatement? cache, string sql, int batchSize)
    {
        var cached = Volatile.Read(ref cache);
        if (cached?.Size != batchSize)
        {
            cached = new ClaimStatement(batchSize, sql.Replace("LIMIT @limit", "LIMIT " + batchSize.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal));
            Volatile.Write(ref cache, cached);
        }

        return cached.Sql;
    }

    public static NpgsqlCommand Command(DbConnection connection, DbTransaction? transaction, string sql)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var command = (NpgsqlCommand)connection.CreateCommand();
        command.Transaction = (NpgsqlTransaction?)transaction;
        command.CommandText = sql;
        return command;
    }

    private static void Add<T>(NpgsqlCommand command, string name, T value) => command.Parameters.Add(new NpgsqlParameter<T>(name, value));

    private static Task WriteAsync(NpgsqlBinaryImporter importer, string? value, NpgsqlDbType type, CancellationToken cancellationToken) =>
        value is null ? importer.WriteNullAsync(cancellationToken) : importer.WriteAsync(value, type, cancellationToken);

    private static string ToArrayLiteral(IReadOnlyList<long> ids)
    {
        var text = new StringBuilder(2 + (ids.Count * 8));
        text.Append('{');
        for (var i = 0; i < ids.Count; i++)
        {
            if (i > 0)
            {
                text.Append(',');
            }

            text.Append(ids[i].ToString(CultureInfo.InvariantCulture));
        }

        return text.Append('}').ToString();
    }

    /// <summary>The transaction-local setting with which this process's enqueues tell the trigger that a local dispatcher is woken in memory.</summary>
    private static string QuietSettingFor(string channel) => "outboxer.quiet_" + channel["outboxer_".Length..];

    private static string ChannelFor(string schema, string table) =>
        "outboxer_" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{schema}.{table}")).AsSpan(0, 8));

    private static string QualifiedName(string schema, string table) => $"\"{schema}\".\"{table}\"";

    // A stable key for pg_advisory_xact_lock: the same in every process and .NET version (unlike string.GetHashCode).
    private static long LockKey(string schema, string table) =>
        BinaryPrimitives.ReadInt64BigEndian(SHA256.HashData(Encoding.UTF8.GetBytes($"Outboxer.PostgreSql:{schema}.{table}")));

    // The writer escapes NUL as \u0000 and a backslash as \\, so an escape is real when an even number of backslashes precede it.
    private static void RejectNul(string? json, string what)
    {
        if (json is null)
        {
            return;
        }

        for (var i = json.IndexOf("\\u0000", StringComparison.Ordinal); i >= 0; i = json.IndexOf("\\u0000", i + 1, StringComparison.Ordinal))
        {
            var backslashes = 0;
            for (var j = i - 1; j >= 0 && json[j] == '\\'; j--)
            {
                backslashes++;
            }

            if (backslashes % 2 == 0)
            {
                throw new ArgumentException(
                    $"The message's {what} contain the character U+0000, which PostgreSQL's jsonb cannot store; remove it or encode the value.",
                    "message");
            }
        }
    }

    [GeneratedRegex("^Outboxer outbox table, layout version ([0-9]+)", RegexOptions.CultureInvariant)]
    private static partial Regex VersionComment();

    private sealed record ClaimStatement(int Size, string Sql);

    private sealed class CommitWatch
    {
        public int Key { get; } = Random.Shared.Next();

        public bool Watched { get; set; }
    }
}
