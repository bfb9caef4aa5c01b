using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using MySqlConnector;
using Outboxer.Providers;

namespace Outboxer.MySql;

/// <summary>
/// An outbox store in a MySQL 8 or MariaDB 10.6+ table (MySqlConnector). Claims select and lock rows with
/// <c>FOR UPDATE SKIP LOCKED</c> in a short <c>READ COMMITTED</c> transaction and set their lease in the same transaction, so any
/// number of dispatchers claim disjoint batches without waiting on each other.
/// </summary>
/// <remarks>
/// <para>
/// The table lives in the database that the connection string names. The payload is a <c>LONGBLOB</c>, options and headers are
/// <c>JSON</c> (on MariaDB an alias of <c>LONGTEXT</c> with a validity check), times are <c>DATETIME(6)</c> holding UTC (microsecond
/// precision), and text is <c>utf8mb4</c>. Every time is sent as a parameter (the store never calls <c>NOW()</c>), and <c>DATETIME</c>
/// is not converted by the session's <c>time_zone</c>, so the server's and the session's time zones do not matter.
/// The store does not own <see cref="MySqlDataSource"/>: dispose it yourself when the application stops.
/// </para>
/// <para>
/// With <see cref="MySqlOutboxStoreOptions.CreateTableIfMissing"/>, the first operation reads <c>information_schema</c> and runs DDL
/// only when the table or one of its indexes is missing, under a named lock (<c>GET_LOCK</c>), so processes that start together do
/// not race; once the table exists, starting needs no <c>CREATE</c> or <c>ALTER</c> privilege.
/// </para>
/// </remarks>
public sealed class MySqlOutboxStore : DbOutboxStore
{
    /// <summary>How long DDL waits for another process's creation lock, in seconds.</summary>
    private const int LockTimeoutSeconds = 10;

    /// <summary>MySQL 8 refuses <c>GET_LOCK</c> names longer than this.</summary>
    private const int MaxLockNameLength = 64;

    private const string PendingIndexSuffix = "pending_ix";
    private const string CleanupIndexSuffix = "dispatched_at_ix";

    // The connection's database, whether the table exists, and whether each of its two indexes does.
    private const string StateSql = """
        SELECT DATABASE(),
            (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table),
            (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table AND INDEX_NAME = @pending_ix),
            (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table AND INDEX_NAME = @cleanup_ix)
        """;

    private readonly string _tableName;
    private readonly string _table;
    private readonly string _displayName;
    private readonly string _pendingIndex;
    private readonly string _cleanupIndex;
    private readonly string _createTableSql;
    private readonly string _insertSql;
    private readonly string _claimSql;
    private readonly string _releaseSql;
    private readonly string _removeSql;

    /// <summary>Initializes a store over the MySQL or MariaDB database that <paramref name="dataSource"/> connects to.</summary>
    /// <param name="dataSource">Where the store's own connections come from; its connection string must name a database. The store does not dispose it.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">The table name is invalid; <see cref="ArgumentException.ParamName"/> names the option.</exception>
    public MySqlOutboxStore(MySqlDataSource dataSource, MySqlOutboxStoreOptions? options = null)
        : base(dataSource, (options ??= new MySqlOutboxStoreOptions()).CreateTableIfMissing)
    {
        options.Validate();
        _tableName = options.TableName;
        _table = Quote(_tableName);
        _displayName = DisplayName(dataSource, _tableName);
        _pendingIndex = SqlIdentifier.Derive(_tableName, PendingIndexSuffix);
        _cleanupIndex = SqlIdentifier.Derive(_tableName, CleanupIndexSuffix);
        _createTableSql = CreateTableSql(_tableName);

        // MySQL has no INSERT ... RETURNING (MariaDB has); LAST_INSERT_ID() is per session, so the second statement reads this insert's id.
        _insertSql = $"INSERT INTO {_table} (message_id, payload, options, headers, created_at, ordering_key) VALUES (@message_id, @payload, @options, @headers, @created_at, @ordering_key); SELECT LAST_INSERT_ID()";

        // The first step of a claim: lock the claimable rows, passing over those another claim, a mark or a release holds, and an
        // enqueue not yet committed. attempts + 1 is the count the claim's UPDATE writes (the rows stay locked until it commits).
        _claimSql = $"""
            SELECT c.id, c.message_id, c.payload, c.options, c.headers, c.created_at, c.attempts + 1, c.ordering_key
            FROM {_table} AS c
            WHERE c.dispatched = 0 AND c.dead_lettered_at IS NULL AND (c.locked_until IS NULL OR c.locked_until <= @now)
              AND (c.ordering_key IS NULL OR NOT EXISTS (
                  SELECT 1 FROM {_table} AS p
                  WHERE p.ordering_key = c.ordering_key AND (p.id < c.id OR (p.id <> c.id AND p.locked_until > @now)) AND p.dispatched = 0 AND p.dead_lettered_at IS NULL))
            ORDER BY c.id
            LIMIT @limit
            FOR UPDATE SKIP LOCKED
            """;
        _releaseSql = $"UPDATE {_table} SET locked_until = @retry_at, last_error = @error WHERE id = @id AND dispatched = 0";

        // Bounded batches keep each delete's locks short. A single-table DELETE ... ORDER BY ... LIMIT is planned without regard to the
        // LIMIT: MariaDB sorts every expired row, or walks (dispatched, id) over every dispatched row, locking all it reads. So the ids
        // come from a derived table instead (MySQL refuses LIMIT in an IN subquery, and lets a materialized derived table read the table
        // being deleted from): a read of the cleanup index, oldest first, that stops after the batch. STRAIGHT_JOIN then deletes just
        // those rows by primary key. A dispatched row never becomes pending again, so the ids need no second check.
        _removeSql = $"""
            DELETE o FROM (
                SELECT id FROM {_table}
                WHERE dispatched = 1 AND dispatched_at < @cutoff
                ORDER BY dispatched_at
                LIMIT @limit) AS expired
            STRAIGHT_JOIN {_table} AS o ON o.id = expired.id
            """;
    }

    /// <inheritdoc />
    protected override string TableDisplayName => _displayName;

    /// <summary>Gets the SQL that creates the outbox table and its indexes, for teams that manage their schema themselves.</summary>
    /// <param name="options">The settings whose table name to use; <see langword="null"/> for the defaults.</param>
    /// <returns>The DDL script: one <c>CREATE TABLE IF NOT EXISTS</c> statement, safe to run again, for the connection's current database.</returns>
    /// <exception cref="ArgumentException">The table name is invalid.</exception>
    public static string GetCreateScript(MySqlOutboxStoreOptions? options = null)
    {
        options ??= new MySqlOutboxStoreOptions();
        options.Validate();
        return CreateTableSql(options.TableName);
    }

    /// <inheritdoc />
    protected override async Task CreateTableAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);

        // Usually everything exists: one catalog read, no lock, no DDL privilege needed.
        var state = await ReadStateAsync(connection, cancellationToken).ConfigureAwait(false);
        if (state.Complete)
        {
            return;
        }

        if (state.Database is null)
        {
            throw new OutboxException(
                $"Could not create the outbox table {TableDisplayName}: the connection has no database selected; name one in the connection string (Database=...).",
                isTransient: false);
        }

        // CREATE TABLE IF NOT EXISTS and ADD INDEX collide when two sessions run them at once (and MySQL has no ADD INDEX IF NOT EXISTS),
        // so creators queue on a named lock, then look again. GET_LOCK belongs to the session, not a transaction (DDL commits implicitly).
        var lockName = LockName(state.Database, _tableName);
        var lockCommand = Command(connection, null, $"SELECT GET_LOCK(@name, {LockTimeoutSeconds})");
        await using (lockCommand.ConfigureAwait(false))
        {
            lockCommand.Parameters.AddWithValue("@name", lockName);
            var acquired = await lockCommand.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            if (acquired is null or DBNull || Convert.ToInt64(acquired, CultureInfo.InvariantCulture) != 1)
            {
                throw new OutboxException(
                    $"Could not create the outbox table {TableDisplayName}: another session held the lock '{lockName}' (GET_LOCK) for {LockTimeoutSeconds} seconds.",
                    isTransient: true);
            }
        }

        try
        {
            state = await ReadStateAsync(connection, cancellationToken).ConfigureAwait(false);
            var ddl = !state.TableExists ? _createTableSql : AddIndexesSql(state);
            if (ddl is not null)
            {
                var create = Command(connection, null, ddl);
                await using (create.ConfigureAwait(false))
                {
                    await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            // Released even when the DDL failed or the caller cancelled; the pool's connection reset would release it too.
            var release = Command(connection, null, "DO RELEASE_LOCK(@name)");
            await using (release.ConfigureAwait(false))
            {
                release.Parameters.AddWithValue("@name", lockName);
                await release.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    /// <inheritdoc />
    protected override bool IsOwnProvider(DbTransaction transaction) => transaction is MySqlTransaction;

    /// <inheritdoc />
    protected override DbCommand CreateInsertCommand(DbConnection connection, DbTransaction? transaction, OutboxMessage message, string? optionsJson, string? headersJson)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(message);
        var command = Command(connection, transaction, _insertSql);

        // As text: CHAR(36) reads back as a Guid with MySqlConnector's default GuidFormat, and as a parsable string with any other.
        Add(command, "@message_id", MySqlDbType.VarChar, message.MessageId.ToString("D"));
        Add(command, "@payload", MySqlDbType.LongBlob, message.Payload);
        Add(command, "@options", MySqlDbType.JSON, optionsJson);
        Add(command, "@headers", MySqlDbType.JSON, headersJson);
        Add(command, "@created_at", MySqlDbType.DateTime, ToDb(message.CreatedAt));
        Add(command, "@ordering_key", MySqlDbType.VarChar, message.OrderingKey);
        return command;
    }

    /// <summary>
    /// Creates the first statement of a claim: it selects and locks (<c>FOR UPDATE SKIP LOCKED</c>) up to <paramref name="batchSize"/>
    /// claimable rows, returning <c>id, message_id, payload, options, headers, created_at, attempts</c> with the attempt the claim counts.
    /// MySQL has no <c>UPDATE ... RETURNING</c>, so <see cref="ClaimCoreAsync"/> runs it in a transaction and then sets the lease.
    /// </summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="batchSize">The most rows to claim.</param>
    /// <param name="now">The current time.</param>
    /// <param name="leaseUntil">Until when the rows stay reserved; set by the second statement, not by this one.</param>
    /// <returns>The command, without a transaction; a locking read needs one to hold its locks.</returns>
    protected override DbCommand CreateClaimCommand(DbConnection connection, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil)
    {
        var command = Command(connection, null, _claimSql);
        Add(command, "@now", MySqlDbType.DateTime, ToDb(now));
        Add(command, "@limit", MySqlDbType.Int32, batchSize);
        return command;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Runs in one <c>READ COMMITTED</c> transaction (no gap locks, so enqueues never wait on a claim): the locking select of
    /// <see cref="CreateClaimCommand"/>, then one <c>UPDATE ... WHERE id IN (...)</c> that sets the lease and counts the attempt, then commit.
    /// </remarks>
    protected override async Task ClaimCoreAsync(DbConnection connection, ICollection<OutboxMessage> claimed, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(claimed);
        var transaction = await ((MySqlConnection)connection).BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken).ConfigureAwait(false);
        await using (transaction.ConfigureAwait(false))
        {
            var rows = new List<OutboxMessage>();
            var select = (MySqlCommand)CreateClaimCommand(connection, batchSize, now, leaseUntil);
            await using (select.ConfigureAwait(false))
            {
                select.Transaction = transaction;
                var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        rows.Add(ReadClaimed(reader));
                    }
                }
            }

            if (rows.Count > 0)
            {
                var update = Command(connection, transaction, $"UPDATE {_table} SET locked_until = @lease_until, attempts = attempts + 1 WHERE id IN ({IdList(rows.Count)})");
                await using (update.ConfigureAwait(false))
                {
                    Add(update, "@lease_until", MySqlDbType.DateTime, ToDb(leaseUntil));
                    AddIds(update, rows, static m => m.Id);
                    await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            foreach (var row in rows)
            {
                claimed.Add(row);
            }
        }
    }

    /// <inheritdoc />
    protected override DbCommand CreateMarkDispatchedCommand(DbConnection connection, IReadOnlyList<long> ids, DateTimeOffset dispatchedAt)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var command = Command(connection, null, $"UPDATE {_table} SET dispatched = 1, dispatched_at = @at, locked_until = NULL WHERE id IN ({IdList(ids.Count)})");
        Add(command, "@at", MySqlDbType.DateTime, ToDb(dispatchedAt));
        AddIds(command, ids, static id => id);
        return command;
    }

    /// <inheritdoc />
    protected override DbCommand CreateReleaseCommand(DbConnection connection, long id, DateTimeOffset retryAt, string error)
    {
        ArgumentNullException.ThrowIfNull(error);
        var command = Command(connection, null, _releaseSql);
        Add(command, "@retry_at", MySqlDbType.DateTime, ToDb(retryAt));
        Add(command, "@error", MySqlDbType.Text, error);
        Add(command, "@id", MySqlDbType.Int64, id);
        return command;
    }

    /// <inheritdoc />
    protected override DbCommand CreateRemoveCommand(DbConnection connection, DateTimeOffset dispatchedBefore, int batchSize)
    {
        var command = Command(connection, null, _removeSql);
        Add(command, "@cutoff", MySqlDbType.DateTime, ToDb(dispatchedBefore));
        Add(command, "@limit", MySqlDbType.Int32, batchSize);
        return command;
    }

    /// <inheritdoc />
    protected override DateTimeOffset ReadTimestamp(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);

        // DATETIME has no zone: the column holds UTC, whatever Kind the connection's DateTimeKind setting labels it with.
        return new DateTimeOffset(DateTime.SpecifyKind(reader.GetDateTime(ordinal), DateTimeKind.Utc));
    }

    // UTC wall-clock time without a Kind: MySqlConnector refuses a Utc DateTime when the connection string says DateTimeKind=Local
    // (and a Local one when it says Utc), but takes an Unspecified one under every setting, and never converts it.
    /// <inheritdoc />
    protected override object ToDbTimestamp(DateTimeOffset value) => ToDb(value);

    private static DateTime ToDb(DateTimeOffset value) => DateTime.SpecifyKind(value.UtcDateTime, DateTimeKind.Unspecified);

    private async Task<(string? Database, bool TableExists, bool PendingIndexExists, bool CleanupIndexExists, bool Complete)> ReadStateAsync(
        DbConnection connection, CancellationToken cancellationToken)
    {
        var command = Command(connection, null, StateSql);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.AddWithValue("@table", _tableName);
            command.Parameters.AddWithValue("@pending_ix", _pendingIndex);
            command.Parameters.AddWithValue("@cleanup_ix", _cleanupIndex);
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                var database = reader.IsDBNull(0) ? null : reader.GetString(0);
                var table = reader.GetInt64(1) > 0;
                var pending = reader.GetInt64(2) > 0;
                var cleanup = reader.GetInt64(3) > 0;
                return (database, table, pending, cleanup, table && pending && cleanup);
            }
        }
    }

    // The table exists (made by hand or by an older script) without one or both indexes: add just those, in one ALTER.
    private string? AddIndexesSql((string? Database, bool TableExists, bool PendingIndexExists, bool CleanupIndexExists, bool Complete) state)
    {
        var clauses = new List<string>(2);
        if (!state.PendingIndexExists)
        {
            clauses.Add($"ADD INDEX {PendingIndexDefinition(_tableName)}");
        }

        if (!state.CleanupIndexExists)
        {
            clauses.Add($"ADD INDEX {CleanupIndexDefinition(_tableName)}");
        }

        return clauses.Count == 0 ? null : $"ALTER TABLE {_table} {string.Join(", ", clauses)}";
    }

    private static MySqlCommand Command(DbConnection connection, DbTransaction? transaction, string sql)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var command = ((MySqlConnection)connection).CreateCommand();
        command.Transaction = (MySqlTransaction?)transaction;
        command.CommandText = sql;
        return command;
    }

    private static void Add(MySqlCommand command, string name, MySqlDbType type, object? value) =>
        command.Parameters.Add(new MySqlParameter(name, type) { Value = value ?? DBNull.Value });

    private static string IdList(int count)
    {
        var text = new StringBuilder(count * 6);
        for (var i = 0; i < count; i++)
        {
            if (i > 0)
            {
                text.Append(", ");
            }

            text.Append("@id").Append(i.ToString(CultureInfo.InvariantCulture));
        }

        return text.ToString();
    }

    private static void AddIds<T>(MySqlCommand command, IReadOnlyList<T> items, Func<T, long> id)
    {
        for (var i = 0; i < items.Count; i++)
        {
            Add(command, "@id" + i.ToString(CultureInfo.InvariantCulture), MySqlDbType.Int64, id(items[i]));
        }
    }

    private static string CreateTableSql(string table) => $"""
        CREATE TABLE IF NOT EXISTS {Quote(table)} (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            message_id CHAR(36) CHARACTER SET ascii NOT NULL,
            payload LONGBLOB NOT NULL,
            options JSON NULL,
            headers JSON NULL,
            created_at DATETIME(6) NOT NULL,
            dispatched TINYINT(1) NOT NULL DEFAULT 0,
            dispatched_at DATETIME(6) NULL,
            attempts INT NOT NULL DEFAULT 0,
            locked_until DATETIME(6) NULL,
            last_error TEXT NULL,
            ordering_key VARCHAR(255) NULL,
            dead_lettered_at DATETIME(6) NULL,
            INDEX {PendingIndexDefinition(table)},
            INDEX {CleanupIndexDefinition(table)},
            INDEX {Quote(SqlIdentifier.Derive(table, "ordering_ix"))} (ordering_key, dispatched, id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

        """;

    // Claims walk the pending rows in id order and stop after a batch, however many dispatched rows wait for cleanup.
    private static string PendingIndexDefinition(string table) => $"{Quote(SqlIdentifier.Derive(table, PendingIndexSuffix))} (dispatched, id)";

    // Cleanup reads only the expired dispatched rows, oldest first.
    private static string CleanupIndexDefinition(string table) => $"{Quote(SqlIdentifier.Derive(table, CleanupIndexSuffix))} (dispatched, dispatched_at)";

    private static string Quote(string name) => $"`{name}`";

    private static string DisplayName(MySqlDataSource dataSource, string table)
    {
        var database = new MySqlConnectionStringBuilder(dataSource.ConnectionString).Database;
        return string.IsNullOrEmpty(database) ? Quote(table) : $"`{database.Replace("`", "``", StringComparison.Ordinal)}`.{Quote(table)}";
    }

    // GET_LOCK names are server-wide, so the name carries the database as well as the table; readable when it fits in 64 characters.
    private static string LockName(string database, string table)
    {
        var name = $"outboxer:{database}.{table}";
        if (name.Length <= MaxLockNameLength)
        {
            return name;
        }

        return "outboxer:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{database}.{table}")).AsSpan(0, 16));
    }
}
