using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;

namespace Outboxer.Sqlite;

/// <summary>SQLite's statements and table layout for <see cref="RelationalOutboxStore"/>.</summary>
internal sealed class SqliteDialect : OutboxSqlDialect
{
    private readonly string _tableName;
    private readonly string _table;
    private readonly string _versionsName;
    private readonly string _insertSql;
    private readonly string _insertLeasedSql;
    private readonly string _claimSql;
    private readonly string _markSql;
    private readonly OutboxMigration[] _migrations;

    public SqliteDialect(SqliteOutboxStoreOptions options)
    {
        options.Validate();
        _tableName = options.TableName;
        _table = $"\"{_tableName}\"";
        _versionsName = SqlIdentifier.Derive(_tableName, "versions");
        _migrations = Layout(_tableName);
        _insertSql = $"INSERT INTO {_table} (message_id, payload, options, headers, created_at, ordering_key, destination) VALUES ($message_id, $payload, $options, $headers, $created_at, $ordering_key, $destination) RETURNING id";
        _insertLeasedSql = $"INSERT INTO {_table} (message_id, payload, options, headers, created_at, ordering_key, destination, locked_until, lease_token, attempts) VALUES ($message_id, $payload, $options, $headers, $created_at, $ordering_key, $destination, $lease_until, $token, 1) RETURNING id";

        // Only the oldest pending message of each ordering key is claimable, so a key goes one message at a time, in order. SQLite runs
        // one writer at a time, so one UPDATE ... RETURNING claims atomically.
        _claimSql = $"""
            UPDATE {_table} SET locked_until = $lease_until, attempts = attempts + 1, lease_token = $token
            WHERE id IN (
                SELECT o.id FROM {_table} AS o
                WHERE o.dispatched = 0 AND o.dead_lettered_at IS NULL AND (o.locked_until IS NULL OR o.locked_until <= $now)
                  AND (o.ordering_key IS NULL OR NOT EXISTS (
                      SELECT 1 FROM {_table} AS p
                      WHERE p.ordering_key = o.ordering_key AND (p.id < o.id OR (p.id <> o.id AND p.locked_until > $now)) AND p.dispatched = 0 AND p.dead_lettered_at IS NULL))
                ORDER BY o.id LIMIT $limit)
            RETURNING id, message_id, payload, options, headers, created_at, attempts, ordering_key, destination
            """;
        _markSql = $"UPDATE {_table} SET dispatched = 1, dispatched_at = $at, locked_until = NULL WHERE id IN (SELECT value FROM json_each($ids)) AND lease_token = $token";
        ReleaseSql = $"UPDATE {_table} SET locked_until = @retry_at, last_error = @error, uncertain_attempts = uncertain_attempts + @uncertain WHERE id = @id AND lease_token = @token AND dispatched = 0 AND dead_lettered_at IS NULL";
        DeadLetterSql = $"UPDATE {_table} SET dead_lettered_at = @at, locked_until = NULL, last_error = @error WHERE id = @id AND lease_token = @token AND dispatched = 0 AND dead_lettered_at IS NULL";
        RemoveDispatchedSql = $"DELETE FROM {_table} WHERE id IN (SELECT id FROM {_table} WHERE dispatched = 1 AND dispatched_at < @cutoff ORDER BY id LIMIT @limit)";
        StatisticsSql = StandardStatisticsSql(_table, "dispatched = 0");
        DestinationStatisticsSql = StandardDestinationStatisticsSql(_table, "dispatched = 0");
        DeadLettersSql = $"""
            SELECT id, message_id, payload, options, headers, created_at, attempts, ordering_key, destination, last_error, dead_lettered_at, uncertain_attempts
            FROM {_table} WHERE dead_lettered_at IS NOT NULL AND id > @after ORDER BY id LIMIT @limit
            """;
    }

    public override string Table => _table;

    public override IReadOnlyList<OutboxMigration> Migrations => _migrations;

    /// <summary>Microsoft.Data.Sqlite connections do not enlist in a <c>TransactionScope</c>.</summary>
    public override bool SupportsAmbientTransactions => false;

    /// <summary>SQLite lets one connection write at a time: a table missing when a message is enqueued is created in the caller's transaction.</summary>
    public override bool MigratesInCallerTransaction => true;

    public override string ReleaseSql { get; }

    public override string DeadLetterSql { get; }

    public override string RemoveDispatchedSql { get; }

    public override string StatisticsSql { get; }

    public override string DestinationStatisticsSql { get; }

    public override string DeadLettersSql { get; }

    /// <summary>The indexes again, for a table whose index was dropped.</summary>
    public override string? RepairSql => IndexesSql(_tableName);

    public static string Script(SqliteOutboxStoreOptions options, int fromVersion) =>
        RelationalOutboxStore.ScriptFor(new SqliteDialect(options), fromVersion);

    public override bool Owns(DbTransaction transaction) => transaction is SqliteTransaction;

    /// <summary>SQLite names every database <c>main</c>: the file is what tells two apart (in-memory and temporary databases are not checked).</summary>
    public override string? DatabaseOf(DbConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        // DataSource is the file SQLite opened (or, before opening, the connection string's): no parsing on the enqueue path.
        var file = connection.DataSource;
        return string.IsNullOrEmpty(file) || file.StartsWith(':') || file.StartsWith("file:", StringComparison.OrdinalIgnoreCase) ? null : Path.GetFullPath(file);
    }

    /// <summary>Times are UTC ticks in <c>INTEGER</c> columns.</summary>
    public override object ToDbTimestamp(DateTimeOffset value) => value.UtcTicks;

    public override DateTimeOffset ReadTimestamp(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return new DateTimeOffset(reader.GetInt64(ordinal), TimeSpan.Zero);
    }

    public override DbCommand CreateInsertCommand(DbConnection connection, DbTransaction? transaction, SerializedMessage row)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var message = row.Message;
        var command = Command(connection, row.LeaseUntil is null ? _insertSql : _insertLeasedSql, ("$message_id", message.MessageId.ToString()), ("$payload", message.Payload), ("$options", row.OptionsJson),
            ("$headers", row.HeadersJson), ("$created_at", message.CreatedAt.UtcTicks), ("$ordering_key", message.OrderingKey), ("$destination", message.Destination));
        if (row.LeaseUntil is { } leaseUntil)
        {
            command.Parameters.Add(new SqliteParameter("$lease_until", leaseUntil.UtcTicks));
            command.Parameters.Add(new SqliteParameter("$token", row.LeaseToken));
        }

        command.Transaction = transaction;
        return command;
    }

    /// <summary>
    /// The most rows one multi-row <c>INSERT</c> of <see cref="InsertRangeAsync"/> takes: 7 parameters each, well under the 999 that
    /// SQLite builds before 3.32 allow per statement (32,766 since).
    /// </summary>
    internal const int MaxRowsPerInsert = 100;

    private string? _insertManySql;

    /// <summary>
    /// Inserts the messages within the caller's transaction with multi-row <c>INSERT ... VALUES ... RETURNING id</c>, up to
    /// <see cref="MaxRowsPerInsert"/> rows each, and assigns every <see cref="OutboxMessage.Id"/>.
    /// </summary>
    public override async Task<int> InsertRangeAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rows);
        for (var start = 0; start < rows.Count; start += MaxRowsPerInsert)
        {
            var count = Math.Min(MaxRowsPerInsert, rows.Count - start);
            var lease = rows[start].LeaseUntil;
            var command = Command(connection, count == MaxRowsPerInsert && lease is null ? _insertManySql ??= InsertManySql(count, leased: false) : InsertManySql(count, lease is not null));
            await using (command.ConfigureAwait(false))
            {
                command.Transaction = transaction;
                if (lease is { } leaseUntil)
                {
                    // Rows written already claimed (send after commit) share one lease.
                    command.Parameters.Add(new SqliteParameter("$lease_until", leaseUntil.UtcTicks));
                    command.Parameters.Add(new SqliteParameter("$token", rows[start].LeaseToken));
                }

                for (var i = 0; i < count; i++)
                {
                    var row = rows[start + i];
                    var message = row.Message;
                    var n = i.ToString(CultureInfo.InvariantCulture);
                    command.Parameters.Add(new SqliteParameter("$m" + n, message.MessageId.ToString()));
                    command.Parameters.Add(new SqliteParameter("$p" + n, message.Payload));
                    command.Parameters.Add(new SqliteParameter("$o" + n, (object?)row.OptionsJson ?? DBNull.Value));
                    command.Parameters.Add(new SqliteParameter("$h" + n, (object?)row.HeadersJson ?? DBNull.Value));
                    command.Parameters.Add(new SqliteParameter("$c" + n, message.CreatedAt.UtcTicks));
                    command.Parameters.Add(new SqliteParameter("$k" + n, (object?)message.OrderingKey ?? DBNull.Value));
                    command.Parameters.Add(new SqliteParameter("$d" + n, (object?)message.Destination ?? DBNull.Value));
                }

                var ids = new List<long>(count);
                var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        ids.Add(reader.GetInt64(0));
                    }
                }

                // Rows are inserted in the order of VALUES, each with a larger id; RETURNING itself promises no order, so sort.
                ids.Sort();
                for (var i = 0; i < ids.Count && i < count; i++)
                {
                    rows[start + i].Message.Id = ids[i];
                }
            }
        }

        return rows.Count;
    }

    private string InsertManySql(int count, bool leased)
    {
        var sql = new System.Text.StringBuilder(128 + (count * 40));
        sql.Append("INSERT INTO ").Append(_table).Append(" (message_id, payload, options, headers, created_at, ordering_key, destination")
            .Append(leased ? ", locked_until, lease_token, attempts) VALUES " : ") VALUES ");
        for (var i = 0; i < count; i++)
        {
            var n = i.ToString(CultureInfo.InvariantCulture);
            sql.Append(i == 0 ? "(" : ", (")
                .Append("$m").Append(n).Append(", $p").Append(n).Append(", $o").Append(n).Append(", $h").Append(n)
                .Append(", $c").Append(n).Append(", $k").Append(n).Append(", $d").Append(n).Append(leased ? ", $lease_until, $token, 1)" : ")");
        }

        return sql.Append(" RETURNING id").ToString();
    }

    public override async Task ClaimAsync(DbConnection connection, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, ICollection<OutboxMessage> claimed, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claimed);
        var command = Command(connection, _claimSql, ("$lease_until", leaseUntil.UtcTicks), ("$now", now.UtcTicks), ("$limit", batchSize), ("$token", leaseToken));
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    claimed.Add(ReadMessage(reader));
                }
            }
        }
    }

    public override async Task<int> MarkDispatchedAsync(DbConnection connection, IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken)
    {
        var command = Command(connection, _markSql, ("$at", dispatchedAt.UtcTicks), ("$ids", JsonSerializer.Serialize(ids, SqliteJsonContext.Default.IReadOnlyListInt64)), ("$token", leaseToken));
        await using (command.ConfigureAwait(false))
        {
            return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public override async Task<OutboxSchemaState> ReadSchemaAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        var command = Command(
            connection,
            "SELECT name FROM sqlite_master WHERE (type = 'table' AND name IN ($table, $versions)) OR (type = 'index' AND tbl_name = $table AND name IN ($i0, $i1, $i2, $i3))",
            ("$table", _tableName),
            ("$versions", _versionsName),
            ("$i0", $"{_tableName}_pending"),
            ("$i1", $"{_tableName}_ordering"),
            ("$i2", $"{_tableName}_dead_letters"),
            ("$i3", $"{_tableName}_dispatched_at"));
        var tables = new HashSet<string>(StringComparer.Ordinal);
        await using (command.ConfigureAwait(false))
        {
            command.Transaction = transaction;
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    tables.Add(reader.GetString(0));
                }
            }
        }

        if (!tables.Contains(_tableName))
        {
            return new OutboxSchemaState(0, false);
        }

        var needsRepair = tables.Count - (tables.Contains(_versionsName) ? 2 : 1) != 4;
        if (!tables.Contains(_versionsName))
        {
            return new OutboxSchemaState(1, needsRepair);
        }

        var max = Command(connection, $"SELECT max(version) FROM \"{_versionsName}\"");
        await using (max.ConfigureAwait(false))
        {
            max.Transaction = transaction;
            var version = await max.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return new OutboxSchemaState(version is null or DBNull ? 1 : Convert.ToInt32(version, CultureInfo.InvariantCulture), needsRepair);
        }
    }

    /// <summary>
    /// SQLite runs one writer at a time, so concurrent migrators queue on the write lock that <c>BEGIN IMMEDIATE</c> takes (or that the
    /// caller's transaction holds). A new database file is switched to WAL journaling first, which lets readers run beside the writer.
    /// </summary>
    public override async Task<DbTransaction?> BeginSchemaChangeAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        if (transaction is not null)
        {
            return transaction;
        }

        // The journal mode cannot change inside a transaction.
        var wal = Command(connection, "PRAGMA journal_mode=WAL");
        await using (wal.ConfigureAwait(false))
        {
            await wal.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        return ((SqliteConnection)connection).BeginTransaction(deferred: false);
    }

    public override string RecordVersionSql(int version, string description) =>
        $"""
        CREATE TABLE IF NOT EXISTS "{_versionsName}" (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
        INSERT INTO "{_versionsName}" (version, description) VALUES ({version.ToString(CultureInfo.InvariantCulture)}, '{description.Replace("'", "''", StringComparison.Ordinal)}');
        """;

    /// <summary>The layout's steps. Never change a released step: add one.</summary>
    private static OutboxMigration[] Layout(string name) =>
    [
        new OutboxMigration(1, "the outbox table of 0.1.0-preview.1", $"""
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
            {IndexesSql(name)}
            """),

        // The destination the event stream named at enqueue, for statistics per destination.
        new OutboxMigration(2, "destination column", $"ALTER TABLE \"{name}\" ADD COLUMN destination TEXT NULL;"),

        // The token of the claim that holds a row, so that only that claim can mark, release or dead-letter it (fenced claims).
        new OutboxMigration(3, "lease_token column (fenced claims)", $"ALTER TABLE \"{name}\" ADD COLUMN lease_token INTEGER NULL;"),

        // How many attempts had an unknown outcome (no confirm came), so that a dead letter that may have reached the broker says so.
        new OutboxMigration(4, "uncertain_attempts column (dead letters that may have been published)", $"ALTER TABLE \"{name}\" ADD COLUMN uncertain_attempts INTEGER NOT NULL DEFAULT 0;"),
    ];

    private static string IndexesSql(string name) => $"""
        CREATE INDEX IF NOT EXISTS "{name}_pending" ON "{name}" (id) WHERE dispatched = 0;
        CREATE INDEX IF NOT EXISTS "{name}_ordering" ON "{name}" (ordering_key, id) WHERE dispatched = 0 AND ordering_key IS NOT NULL;
        CREATE INDEX IF NOT EXISTS "{name}_dead_letters" ON "{name}" (id) WHERE dead_lettered_at IS NOT NULL;
        CREATE INDEX IF NOT EXISTS "{name}_dispatched_at" ON "{name}" (dispatched_at) WHERE dispatched = 1;
        """;

    private static DbCommand Command(DbConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }

        return command;
    }
}
