using System.Data.Common;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;

namespace Outboxer.Sqlite;

/// <summary>
/// An outbox store in a SQLite database file (Microsoft.Data.Sqlite): the embedded default, for apps whose data lives in SQLite and
/// for running without any server. Claims are single <c>UPDATE ... RETURNING</c> statements, which SQLite runs one writer at a time,
/// so several dispatchers never claim the same row.
/// </summary>
/// <remarks>
/// Times are stored as UTC ticks (<see cref="DateTimeOffset.UtcTicks"/>) in <c>INTEGER</c> columns. Use a database file:
/// each connection to <c>:memory:</c> is a separate database. The store switches the file to WAL journaling when it creates the table.
/// </remarks>
public sealed class SqliteOutboxStore : DbOutboxStore
{
    private readonly string _table;
    private readonly string _createSql;
    private readonly string _insertSql;
    private readonly string _claimSql;
    private readonly string _markSql;
    private readonly string _releaseSql;
    private readonly string _removeSql;

    /// <summary>Initializes a store over the SQLite database that <paramref name="connectionString"/> names.</summary>
    /// <param name="connectionString">A Microsoft.Data.Sqlite connection string, for example <c>Data Source=app.db</c>.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults.</param>
    /// <exception cref="ArgumentException">The connection string is empty, or the table name is invalid.</exception>
    public SqliteOutboxStore(string connectionString, SqliteOutboxStoreOptions? options = null)
        : this(CreateDataSource(connectionString), options ?? new SqliteOutboxStoreOptions())
    {
    }

    private SqliteOutboxStore(DbDataSource dataSource, SqliteOutboxStoreOptions options)
        : base(dataSource, options.CreateTableIfMissing)
    {
        options.Validate();
        _table = $"\"{options.TableName}\"";
        _createSql = GetCreateScript(options);
        _insertSql = $"INSERT INTO {_table} (message_id, payload, options, headers, created_at, ordering_key) VALUES ($message_id, $payload, $options, $headers, $created_at, $ordering_key) RETURNING id";

        // Only the oldest pending message of each ordering key is claimable, so a key goes one message at a time, in order.
        _claimSql = $"""
            UPDATE {_table} SET locked_until = $lease_until, attempts = attempts + 1
            WHERE id IN (
                SELECT o.id FROM {_table} AS o
                WHERE o.dispatched = 0 AND o.dead_lettered_at IS NULL AND (o.locked_until IS NULL OR o.locked_until <= $now)
                  AND (o.ordering_key IS NULL OR NOT EXISTS (
                      SELECT 1 FROM {_table} AS p
                      WHERE p.ordering_key = o.ordering_key AND (p.id < o.id OR (p.id <> o.id AND p.locked_until > $now)) AND p.dispatched = 0 AND p.dead_lettered_at IS NULL))
                ORDER BY o.id LIMIT $limit)
            RETURNING id, message_id, payload, options, headers, created_at, attempts, ordering_key
            """;
        _markSql = $"UPDATE {_table} SET dispatched = 1, dispatched_at = $at, locked_until = NULL WHERE id IN (SELECT value FROM json_each($ids))";
        _releaseSql = $"UPDATE {_table} SET locked_until = $retry_at, last_error = $error WHERE id = $id AND dispatched = 0";
        _removeSql = $"DELETE FROM {_table} WHERE id IN (SELECT id FROM {_table} WHERE dispatched = 1 AND dispatched_at < $cutoff ORDER BY id LIMIT $limit)";
    }

    /// <inheritdoc />
    protected override string TableDisplayName => _table;

    /// <summary>Gets the SQL that creates the outbox table and its indexes, for teams that manage their schema themselves.</summary>
    /// <param name="options">The settings whose table name to use; <see langword="null"/> for the defaults.</param>
    /// <returns>The DDL script; every statement is safe to run again.</returns>
    /// <exception cref="ArgumentException">The table name is invalid.</exception>
    public static string GetCreateScript(SqliteOutboxStoreOptions? options = null)
    {
        options ??= new SqliteOutboxStoreOptions();
        options.Validate();
        var name = options.TableName;
        return $"""
            CREATE TABLE IF NOT EXISTS "{name}" (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                message_id TEXT NOT NULL,
                payload BLOB NOT NULL,
                options TEXT NULL,
                headers TEXT NULL,
                created_at INTEGER NOT NULL,
                dispatched INTEGER NOT NULL DEFAULT 0,
                dispatched_at INTEGER NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                locked_until INTEGER NULL,
                last_error TEXT NULL,
                ordering_key TEXT NULL,
                dead_lettered_at INTEGER NULL
            );
            CREATE INDEX IF NOT EXISTS "{name}_pending" ON "{name}" (id) WHERE dispatched = 0;
            CREATE INDEX IF NOT EXISTS "{name}_ordering" ON "{name}" (ordering_key, id) WHERE dispatched = 0 AND ordering_key IS NOT NULL;
            CREATE INDEX IF NOT EXISTS "{name}_dead_letters" ON "{name}" (id) WHERE dead_lettered_at IS NOT NULL;
            CREATE INDEX IF NOT EXISTS "{name}_dispatched_at" ON "{name}" (dispatched_at) WHERE dispatched = 1;
            """;
    }

    /// <inheritdoc />
    protected override bool CreateTableInCallerTransaction => true;

    /// <inheritdoc />
    /// <remarks>Microsoft.Data.Sqlite connections do not enlist in a <c>TransactionScope</c>.</remarks>
    protected override bool SupportsAmbientTransactions => false;

    /// <inheritdoc />
    protected override async Task CreateTableAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (transaction is null)
        {
            // The journal mode cannot change inside a transaction; WAL lets readers run beside the one writer.
            var wal = connection.CreateCommand();
            await using (wal.ConfigureAwait(false))
            {
                wal.CommandText = "PRAGMA journal_mode=WAL";
                await wal.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        // SQLite runs one writer at a time, so concurrent creators simply queue behind each other.
        var create = connection.CreateCommand();
        await using (create.ConfigureAwait(false))
        {
            create.Transaction = transaction;
            create.CommandText = _createSql;
            await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    protected override bool IsOwnProvider(DbTransaction transaction) => transaction is SqliteTransaction;

    /// <inheritdoc />
    protected override string OptionText(string key) => $"json_extract(options, '$.\"{key}\"')";

    /// <inheritdoc />
    protected override DbCommand CreateInsertCommand(DbConnection connection, DbTransaction? transaction, OutboxMessage message, string? optionsJson, string? headersJson)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(message);
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = _insertSql;
        AddParameter(command, "$message_id", message.MessageId.ToString());
        AddParameter(command, "$payload", message.Payload);
        AddParameter(command, "$options", optionsJson);
        AddParameter(command, "$headers", headersJson);
        AddParameter(command, "$created_at", message.CreatedAt.UtcTicks);
        AddParameter(command, "$ordering_key", message.OrderingKey);
        return command;
    }

    /// <inheritdoc />
    protected override DbCommand CreateClaimCommand(DbConnection connection, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil) =>
        Command(connection, _claimSql, ("$lease_until", leaseUntil.UtcTicks), ("$now", now.UtcTicks), ("$limit", batchSize));

    /// <inheritdoc />
    protected override DbCommand CreateMarkDispatchedCommand(DbConnection connection, IReadOnlyList<long> ids, DateTimeOffset dispatchedAt) =>
        Command(connection, _markSql, ("$at", dispatchedAt.UtcTicks), ("$ids", JsonSerializer.Serialize(ids, SqliteJsonContext.Default.IReadOnlyListInt64)));

    /// <inheritdoc />
    protected override DbCommand CreateReleaseCommand(DbConnection connection, long id, DateTimeOffset retryAt, string error) =>
        Command(connection, _releaseSql, ("$retry_at", retryAt.UtcTicks), ("$error", error), ("$id", id));

    /// <inheritdoc />
    protected override DbCommand CreateRemoveCommand(DbConnection connection, DateTimeOffset dispatchedBefore, int batchSize) =>
        Command(connection, _removeSql, ("$cutoff", dispatchedBefore.UtcTicks), ("$limit", batchSize));

    /// <inheritdoc />
    protected override object ToDbTimestamp(DateTimeOffset value) => value.UtcTicks;

    /// <inheritdoc />
    protected override DateTimeOffset ReadTimestamp(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return new DateTimeOffset(reader.GetInt64(ordinal), TimeSpan.Zero);
    }

    private static DbCommand Command(DbConnection connection, string sql, params (string Name, object Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            AddParameter(command, name, value);
        }

        return command;
    }

    private static DbDataSource CreateDataSource(string connectionString)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        return SqliteFactory.Instance.CreateDataSource(connectionString);
    }
}
