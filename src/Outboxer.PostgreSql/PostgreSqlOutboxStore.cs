using System.Buffers.Binary;
using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Npgsql;
using NpgsqlTypes;
using Outboxer.Providers;

namespace Outboxer.PostgreSql;

/// <summary>
/// An outbox store in a PostgreSQL table (Npgsql). Claims are single <c>UPDATE</c> statements over rows selected with
/// <c>FOR UPDATE SKIP LOCKED</c>, so any number of dispatchers claim disjoint batches without waiting on each other.
/// </summary>
/// <remarks>
/// <para>
/// Options and headers are stored as <c>jsonb</c>, times as <c>timestamptz</c> (microsecond precision), the payload as <c>bytea</c>.
/// The store does not own <see cref="NpgsqlDataSource"/>: dispose it yourself when the application stops.
/// </para>
/// <para>
/// With <see cref="PostgreSqlOutboxStoreOptions.CreateTableIfMissing"/>, the first operation checks the catalog and runs the DDL only
/// when something is missing, under a transaction-scoped advisory lock, so processes that start together do not race; once the table
/// exists, starting needs no <c>CREATE</c> privilege and takes no lock on the table.
/// </para>
/// </remarks>
public sealed class PostgreSqlOutboxStore : DbOutboxStore, IOutboxWakeUpSource
{
    private const string PendingIndexSuffix = "pending_ix";
    private const string LeasedIndexSuffix = "leased_ix";
    private const string CleanupIndexSuffix = "dispatched_at_ix";
    private const string OrderingIndexSuffix = "ordering_ix";
    private const string DeadLetterIndexSuffix = "dead_letters_ix";
    private const string NotifySuffix = "notify";

    // Whether the schema exists, how many of the table and its five indexes do, and whether the notify trigger does.
    private const string StateSql = """
        SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = @schema),
            (SELECT count(*)::integer FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = @schema AND c.relname IN (@table, @pending_ix, @leased_ix, @cleanup_ix, @ordering_ix, @dead_letters_ix)),
            EXISTS (SELECT FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
                    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = @schema AND c.relname = @table AND t.tgname = @trigger)
        """;

    private readonly string _schema;
    private readonly string _tableName;
    private readonly string _table;
    private readonly string _pendingIndex;
    private readonly string _cleanupIndex;
    private readonly string _trigger;
    private readonly string _channel;
    private readonly bool _notifyOnCommit;
    private readonly bool _prepare;
    private readonly long _lockKey;
    private readonly string _createSchemaSql;
    private readonly string _createTableSql;
    private readonly string _insertSql;
    private readonly string _insertQuietSql;
    private readonly string _quietSql;
    private readonly string _claimSql;
    private readonly string _markSql;
    private readonly string _releaseSql;
    private readonly string _removeSql;
    private int _localListeners;
    private ClaimStatement? _claimSqlForSize;

    /// <summary>Initializes a store over the PostgreSQL database that <paramref name="dataSource"/> connects to.</summary>
    /// <param name="dataSource">Where the store's own connections come from; the store does not dispose it.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">The schema or table name is invalid; <see cref="ArgumentException.ParamName"/> names the option.</exception>
    public PostgreSqlOutboxStore(NpgsqlDataSource dataSource, PostgreSqlOutboxStoreOptions? options = null)
        : base(dataSource, (options ??= new PostgreSqlOutboxStoreOptions()).CreateTableIfMissing)
    {
        options.Validate();
        _schema = options.SchemaName;
        _tableName = options.TableName;
        _table = QualifiedName(_schema, _tableName);
        _pendingIndex = SqlIdentifier.Derive(_tableName, PendingIndexSuffix);
        _cleanupIndex = SqlIdentifier.Derive(_tableName, CleanupIndexSuffix);
        _trigger = SqlIdentifier.Derive(_tableName, NotifySuffix);
        _channel = ChannelFor(_schema, _tableName);
        _notifyOnCommit = options.NotifyOnCommit;
        _prepare = options.PrepareStatements;
        _lockKey = LockKey(_schema, _tableName);
        _createSchemaSql = CreateSchemaSql(_schema);
        _createTableSql = CreateTableSql(_schema, _tableName);
        _insertSql = $"INSERT INTO {_table} (message_id, payload, options, headers, created_at, ordering_key) VALUES (@message_id, @payload, @options, @headers, @created_at, @ordering_key) RETURNING id";

        // While this process's dispatcher listens, enqueues wake it in memory; the transaction-local setting tells the trigger not to
        // NOTIFY (a notifying commit holds a global lock through its disk flush, which serializes concurrent enqueuing commits).
        _quietSql = $"set_config('{QuietSettingFor(_channel)}', 'on', true)";
        _insertQuietSql = $"INSERT INTO {_table} (message_id, payload, options, headers, created_at, ordering_key) SELECT @message_id, @payload, @options, @headers, @created_at, @ordering_key WHERE {_quietSql} = 'on' RETURNING id";

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
        _claimSql = $"""
            WITH fresh AS MATERIALIZED (
                SELECT c.id FROM {_table} AS c
                WHERE NOT c.dispatched AND c.dead_lettered_at IS NULL AND c.locked_until IS NULL
                  AND {keyFree}
                ORDER BY c.id
                LIMIT @limit
                FOR UPDATE SKIP LOCKED),
            due AS MATERIALIZED (
                SELECT c.id FROM {_table} AS c
                WHERE NOT c.dispatched AND c.dead_lettered_at IS NULL AND c.locked_until IS NOT NULL AND c.locked_until <= @now
                  AND {keyFree}
                ORDER BY c.locked_until
                LIMIT @limit
                FOR UPDATE SKIP LOCKED),
            claimable AS (SELECT id FROM fresh UNION ALL SELECT id FROM due ORDER BY id LIMIT @limit)
            UPDATE {_table} AS o SET locked_until = @lease_until, attempts = o.attempts + 1
            FROM claimable
            WHERE o.id = claimable.id
            RETURNING o.id, o.message_id, o.payload, o.options::text, o.headers::text, o.created_at, o.attempts, o.ordering_key
            """;

        // The ids travel as the text of a bigint[] ('{1,2,3}'), not as a long[] parameter: a slim (NativeAOT) data source
        // without EnableArrays() cannot write arrays, and would fail only here, after the messages were published.
        _markSql = $"UPDATE {_table} SET dispatched = true, dispatched_at = @at, locked_until = NULL WHERE id = ANY(CAST(@ids AS bigint[]))";
        _releaseSql = $"UPDATE {_table} SET locked_until = @retry_at, last_error = @error WHERE id = @id AND NOT dispatched";

        // Bounded batches keep each delete's locks short; SKIP LOCKED lets cleanups in several processes run side by side.
        _removeSql = $"""
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
    }

    /// <inheritdoc />
    protected override string TableDisplayName => _table;

    /// <summary>Gets a value indicating whether a dispatcher in this process listens, so that enqueues need not notify.</summary>
    private bool Quiet => _notifyOnCommit && Volatile.Read(ref _localListeners) > 0;

    /// <summary>
    /// Gets the <c>LISTEN/NOTIFY</c> channel on which the table's insert trigger announces commits, one notification per committing
    /// transaction: <c>outboxer_</c> and a hash of the schema and table names.
    /// </summary>
    public string NotificationChannel => _channel;

    /// <summary>
    /// Listens on <see cref="NotificationChannel"/> with a connection of its own and calls <paramref name="wakeUp"/> for every commit that
    /// inserted into the table, from any process (the trigger fires only when the inserting transaction commits).
    /// </summary>
    /// <remarks>
    /// While a listener of this store instance is connected, messages enqueued through this same instance do not notify: the
    /// <see cref="Outbox"/> that enqueued them wakes its own dispatcher in memory, and a notifying commit would hold PostgreSQL's global
    /// notification lock through its disk flush, serializing concurrent enqueuing commits. Processes that only enqueue still notify.
    /// </remarks>
    /// <param name="wakeUp">Called on every notification, and once when listening starts.</param>
    /// <param name="cancellationToken">Stops listening.</param>
    /// <returns>A task that ends when listening stops.</returns>
    /// <exception cref="OutboxException">The connection failed.</exception>
    public async Task ListenAsync(Action wakeUp, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(wakeUp);
        if (!_notifyOnCommit)
        {
            // No trigger sends notifications: polling alone finds other processes' messages.
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
            return;
        }

        try
        {
            var connection = await ((NpgsqlDataSource)DataSource).OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                connection.Notification += (_, _) => wakeUp();
                var listen = Command(connection, null, $"LISTEN \"{_channel}\"");
                await using (listen.ConfigureAwait(false))
                {
                    await listen.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                wakeUp();
                Interlocked.Increment(ref _localListeners);
                try
                {
                    while (true)
                    {
                        await connection.WaitAsync(cancellationToken).ConfigureAwait(false);
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref _localListeners);
                }
            }
        }
        catch (NpgsqlException ex)
        {
            throw new OutboxException($"Listening on {_channel} for commits to {_table} failed: {ex.Message}", ex.IsTransient, ex);
        }
    }

    /// <summary>Gets the SQL that creates the schema, the outbox table and its indexes, for teams that manage their schema themselves.</summary>
    /// <param name="options">The settings whose schema and table names to use; <see langword="null"/> for the defaults.</param>
    /// <returns>The DDL script; every statement is safe to run again.</returns>
    /// <exception cref="ArgumentException">The schema or table name is invalid.</exception>
    public static string GetCreateScript(PostgreSqlOutboxStoreOptions? options = null)
    {
        options ??= new PostgreSqlOutboxStoreOptions();
        options.Validate();
        return CreateSchemaSql(options.SchemaName) + CreateTableSql(options.SchemaName, options.TableName)
            + (options.NotifyOnCommit ? CreateTriggerSql(options.SchemaName, options.TableName) : string.Empty);
    }

    /// <inheritdoc />
    protected override async Task CreateTableAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);

        // Usually everything exists: one catalog read, no lock on the table, no CREATE privilege needed. (CREATE ... IF NOT EXISTS
        // checks privileges first, and CREATE INDEX IF NOT EXISTS waits for a share lock behind every open write to the table.)
        var (_, complete) = await ReadStateAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
        if (complete)
        {
            return;
        }

        var own = transaction is null ? await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false) : null;
        try
        {
            var tx = transaction ?? own!;

            // CREATE SCHEMA/TABLE IF NOT EXISTS still fail with a unique violation when two sessions run them at once, so creators
            // queue on an advisory lock held until commit, then look again.
            var lockCommand = Command(connection, tx, "SELECT pg_advisory_xact_lock(@key)");
            await using (lockCommand.ConfigureAwait(false))
            {
                Add(lockCommand, "key", _lockKey);
                await lockCommand.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            var (schemaExists, created) = await ReadStateAsync(connection, tx, cancellationToken).ConfigureAwait(false);
            if (!created)
            {
                var create = Command(connection, tx, (schemaExists ? _createTableSql : _createSchemaSql + _createTableSql) + (_notifyOnCommit ? CreateTriggerSql(_schema, _tableName) : string.Empty));
                await using (create.ConfigureAwait(false))
                {
                    await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
            }

            if (own is not null)
            {
                await own.CommitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            if (own is not null)
            {
                await own.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <inheritdoc />
    protected override bool IsOwnProvider(DbTransaction transaction) => transaction is NpgsqlTransaction;

    /// <inheritdoc />
    protected override string OptionText(string key) => $"(options->>'{key}')";

    /// <inheritdoc />
    protected override DbCommand CreateInsertCommand(DbConnection connection, DbTransaction? transaction, OutboxMessage message, string? optionsJson, string? headersJson)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(message);

        // Checked before anything reaches the server: a failed statement would abort the caller's whole transaction.
        RejectNul(optionsJson, "options");
        RejectNul(headersJson, "headers");
        var command = Command(connection, null, Quiet ? _insertQuietSql : _insertSql);
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

        Add(command, "message_id", message.MessageId);
        Add(command, "payload", message.Payload);
        command.Parameters.Add(new NpgsqlParameter("options", NpgsqlDbType.Jsonb) { Value = (object?)optionsJson ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("headers", NpgsqlDbType.Jsonb) { Value = (object?)headersJson ?? DBNull.Value });
        Add(command, "created_at", message.CreatedAt.ToUniversalTime());
        command.Parameters.Add(new NpgsqlParameter("ordering_key", NpgsqlDbType.Text) { Value = (object?)message.OrderingKey ?? DBNull.Value });
        return command;
    }

    /// <summary>Inserts the messages with one binary <c>COPY</c> within the caller's transaction. <see cref="OutboxMessage.Id"/> stays zero.</summary>
    /// <param name="connection">The transaction's connection.</param>
    /// <param name="transaction">The caller's transaction.</param>
    /// <param name="rows">The validated messages.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many rows were copied.</returns>
    protected override async Task<int> InsertRangeAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rows);
        foreach (var row in rows)
        {
            // Checked before anything reaches the server: a failed COPY would abort the caller's whole transaction.
            RejectNul(row.OptionsJson, "options");
            RejectNul(row.HeadersJson, "headers");
        }

        // COPY runs in whatever transaction the connection has; make sure it is the caller's, still open, and not autocommit.
        using (var probe = Command(connection, null, "SELECT " + _quietSql))
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
                await probe.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        var importer = await ((NpgsqlConnection)connection).BeginBinaryImportAsync(
            $"COPY {_table} (message_id, payload, options, headers, created_at, ordering_key) FROM STDIN (FORMAT BINARY)", cancellationToken).ConfigureAwait(false);
        await using (importer.ConfigureAwait(false))
        {
            foreach (var row in rows)
            {
                await importer.StartRowAsync(cancellationToken).ConfigureAwait(false);
                await importer.WriteAsync(row.Message.MessageId, NpgsqlDbType.Uuid, cancellationToken).ConfigureAwait(false);
                await importer.WriteAsync(row.Message.Payload, NpgsqlDbType.Bytea, cancellationToken).ConfigureAwait(false);
                await WriteJsonAsync(importer, row.OptionsJson, cancellationToken).ConfigureAwait(false);
                await WriteJsonAsync(importer, row.HeadersJson, cancellationToken).ConfigureAwait(false);
                await importer.WriteAsync(row.Message.CreatedAt.ToUniversalTime(), NpgsqlDbType.TimestampTz, cancellationToken).ConfigureAwait(false);
                if (row.Message.OrderingKey is { } key)
                {
                    await importer.WriteAsync(key, NpgsqlDbType.Text, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await importer.WriteNullAsync(cancellationToken).ConfigureAwait(false);
                }
            }

            return (int)await importer.CompleteAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static Task WriteJsonAsync(NpgsqlBinaryImporter importer, string? json, CancellationToken cancellationToken) =>
        json is null ? importer.WriteNullAsync(cancellationToken) : importer.WriteAsync(json, NpgsqlDbType.Jsonb, cancellationToken);

    /// <summary>Prepares the insert when <see cref="PostgreSqlOutboxStoreOptions.PrepareStatements"/> is on.</summary>
    /// <param name="command">The insert command.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the command is prepared.</returns>
    protected override Task PrepareAsync(DbCommand command, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        return _prepare ? command.PrepareAsync(cancellationToken) : Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override DbCommand CreateClaimCommand(DbConnection connection, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil)
    {
        var command = Command(connection, null, _claimSql);
        Add(command, "now", now.ToUniversalTime());
        Add(command, "limit", batchSize);
        Add(command, "lease_until", leaseUntil.ToUniversalTime());
        return command;
    }

    /// <summary>
    /// Claims in a short transaction of its own that first sets <c>jit = off</c> and <c>synchronous_commit = off</c>, sent with the claim
    /// in one round trip. Without statistics (a young or fast-growing table) the planner's estimate for the ordering-key check switches
    /// on JIT compilation, which costs 200 ms and more per claim; and a claim lost in a database crash only makes its messages claimable
    /// again (at least once), so its commit need not wait for the disk. The later mark does wait, and flushes the claim with it.
    /// </summary>
    /// <param name="connection">An open connection of the store's own.</param>
    /// <param name="claimed">The list to add the claimed messages to.</param>
    /// <param name="batchSize">The most rows to claim.</param>
    /// <param name="now">The current time.</param>
    /// <param name="leaseUntil">Until when the rows stay reserved.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the rows are claimed.</returns>
    protected override async Task ClaimCoreAsync(DbConnection connection, ICollection<OutboxMessage> claimed, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
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
                claim.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("now", now.ToUniversalTime()));
                claim.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("lease_until", leaseUntil.ToUniversalTime()));
                batch.BatchCommands.Add(claim);
                if (_prepare)
                {
                    await batch.PrepareAsync(cancellationToken).ConfigureAwait(false);
                }

                var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        claimed.Add(ReadClaimed(reader));
                    }
                }
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The claim with its batch size as a literal: a prepared statement's generic plan then knows the limit, and keeps reading the
    /// pending index in id order (a handful of rows) instead of collecting every pending row to sort them, which a large backlog makes
    /// slow. A dispatcher always claims the same batch size, so this is one statement per store.
    /// </summary>
    private string ClaimSqlFor(int batchSize)
    {
        var cached = Volatile.Read(ref _claimSqlForSize);
        if (cached?.Size != batchSize)
        {
            cached = new ClaimStatement(batchSize, _claimSql.Replace("LIMIT @limit", "LIMIT " + batchSize.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal));
            Volatile.Write(ref _claimSqlForSize, cached);
        }

        return cached.Sql;
    }

    /// <summary>
    /// Marks the rows in a short transaction with <c>synchronous_commit = off</c>, sent with the update in one round trip: a mark lost in
    /// a database crash only makes the messages publish again (at least once), so it need not wait for the disk flush.
    /// </summary>
    /// <param name="connection">An open connection of the store's own.</param>
    /// <param name="ids">The row ids.</param>
    /// <param name="dispatchedAt">The time to record.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the rows are updated.</returns>
    protected override async Task MarkDispatchedCoreAsync(DbConnection connection, IReadOnlyList<long> ids, DateTimeOffset dispatchedAt, CancellationToken cancellationToken)
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
                batch.BatchCommands.Add(mark);
                if (_prepare)
                {
                    await batch.PrepareAsync(cancellationToken).ConfigureAwait(false);
                }

                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    protected override DbCommand CreateMarkDispatchedCommand(DbConnection connection, IReadOnlyList<long> ids, DateTimeOffset dispatchedAt)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var command = Command(connection, null, _markSql);
        Add(command, "at", dispatchedAt.ToUniversalTime());
        Add(command, "ids", ToArrayLiteral(ids));
        return command;
    }

    /// <inheritdoc />
    protected override DbCommand CreateReleaseCommand(DbConnection connection, long id, DateTimeOffset retryAt, string error)
    {
        ArgumentNullException.ThrowIfNull(error);
        var command = Command(connection, null, _releaseSql);
        Add(command, "retry_at", retryAt.ToUniversalTime());
        Add(command, "error", error);
        Add(command, "id", id);
        return command;
    }

    /// <inheritdoc />
    protected override DbCommand CreateRemoveCommand(DbConnection connection, DateTimeOffset dispatchedBefore, int batchSize)
    {
        var command = Command(connection, null, _removeSql);
        Add(command, "cutoff", dispatchedBefore.ToUniversalTime());
        Add(command, "limit", batchSize);
        return command;
    }

    /// <inheritdoc />
    protected override DateTimeOffset ReadTimestamp(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return reader.GetFieldValue<DateTimeOffset>(ordinal);
    }

    private async Task<(bool SchemaExists, bool Complete)> ReadStateAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction, StateSql);
        await using (command.ConfigureAwait(false))
        {
            Add(command, "schema", _schema);
            Add(command, "table", _tableName);
            Add(command, "pending_ix", _pendingIndex);
            Add(command, "leased_ix", SqlIdentifier.Derive(_tableName, LeasedIndexSuffix));
            Add(command, "cleanup_ix", _cleanupIndex);
            Add(command, "ordering_ix", SqlIdentifier.Derive(_tableName, OrderingIndexSuffix));
            Add(command, "dead_letters_ix", SqlIdentifier.Derive(_tableName, DeadLetterIndexSuffix));
            Add(command, "trigger", _trigger);
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                return (reader.GetBoolean(0), reader.GetInt32(1) == 6 && (reader.GetBoolean(2) || !_notifyOnCommit));
            }
        }
    }

    private static NpgsqlCommand Command(DbConnection connection, DbTransaction? transaction, string sql)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var command = (NpgsqlCommand)connection.CreateCommand();
        command.Transaction = (NpgsqlTransaction?)transaction;
        command.CommandText = sql;
        return command;
    }

    private static void Add<T>(NpgsqlCommand command, string name, T value) => command.Parameters.Add(new NpgsqlParameter<T>(name, value));

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

    private static string CreateSchemaSql(string schema) => $"""
        CREATE SCHEMA IF NOT EXISTS "{schema}";

        """;

    private static string CreateTableSql(string schema, string table)
    {
        var qualified = QualifiedName(schema, table);
        return $"""
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
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, PendingIndexSuffix)}" ON {qualified} (id) WHERE NOT dispatched AND locked_until IS NULL AND dead_lettered_at IS NULL;
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, LeasedIndexSuffix)}" ON {qualified} (locked_until) WHERE NOT dispatched AND locked_until IS NOT NULL AND dead_lettered_at IS NULL;
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, CleanupIndexSuffix)}" ON {qualified} (dispatched_at) WHERE dispatched;
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, OrderingIndexSuffix)}" ON {qualified} (ordering_key, id) WHERE NOT dispatched AND ordering_key IS NOT NULL;
            CREATE INDEX IF NOT EXISTS "{SqlIdentifier.Derive(table, DeadLetterIndexSuffix)}" ON {qualified} (id) WHERE dead_lettered_at IS NOT NULL;

            """;
    }

    // A statement-level trigger: every committed transaction that inserted sends one notification (PostgreSQL folds identical
    // notifications of a transaction into one, and delivers them only on commit), whoever inserted, in whatever language.
    private static string CreateTriggerSql(string schema, string table)
    {
        var function = $"\"{schema}\".\"{SqlIdentifier.Derive(table, NotifySuffix)}\"";
        return $"""
            CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $outboxer$
            BEGIN
                IF current_setting('{QuietSettingFor(ChannelFor(schema, table))}', true) IS DISTINCT FROM 'on' THEN
                    PERFORM pg_notify('{ChannelFor(schema, table)}', '');
                END IF;
                RETURN NULL;
            END
            $outboxer$;
            CREATE OR REPLACE TRIGGER "{SqlIdentifier.Derive(table, NotifySuffix)}" AFTER INSERT ON {QualifiedName(schema, table)}
                FOR EACH STATEMENT EXECUTE FUNCTION {function}();

            """;
    }

    /// <summary>The transaction-local setting with which this process's enqueues tell the trigger that a local dispatcher is woken in memory.</summary>
    private static string QuietSettingFor(string channel) => "outboxer.quiet_" + channel["outboxer_".Length..];

    private static string ChannelFor(string schema, string table) =>
        "outboxer_" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{schema}.{table}")).AsSpan(0, 8));

    private static string QualifiedName(string schema, string table) => $"\"{schema}\".\"{table}\"";

    // A stable key for pg_advisory_xact_lock: the same in every process and .NET version (unlike string.GetHashCode).
    private static long LockKey(string schema, string table) =>
        BinaryPrimitives.ReadInt64BigEndian(SHA256.HashData(Encoding.UTF8.GetBytes($"Outboxer.PostgreSql:{schema}.{table}")));

    // jsonb cannot hold U+0000 (the server rejects "\u0000"). The writer escapes NUL as \u0000 and a backslash as \\, so an escape is
    // real when an even number of backslashes precede it.
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

    private sealed record ClaimStatement(int Size, string Sql);
}
