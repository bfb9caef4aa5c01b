using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using MySqlConnector;
using Outboxer.Providers;

namespace Outboxer.MySql;

/// <summary>MySQL's and MariaDB's statements and table layout for <see cref="RelationalOutboxStore"/>.</summary>
internal sealed partial class MySqlDialect : OutboxSqlDialect
{
    /// <summary>How long a schema change waits for another process's lock, in seconds.</summary>
    private const int LockTimeoutSeconds = 10;

    /// <summary>MySQL 8 refuses <c>GET_LOCK</c> names longer than this.</summary>
    private const int MaxLockNameLength = 64;

    private const string PendingIndexSuffix = "pending_ix";
    private const string CleanupIndexSuffix = "dispatched_at_ix";
    private const string OrderingIndexSuffix = "ordering_ix";

    /// <summary>The table comment that records the layout version; a table without it was created by 0.1.0-preview.1 (version 1).</summary>
    private const string VersionCommentPrefix = "Outboxer outbox table, layout version ";

    // The connection's database, whether the table exists, its comment, and whether each of its three indexes exists.
    private const string StateSql = """
        SELECT DATABASE(),
            (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table),
            (SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table),
            (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table AND INDEX_NAME = @pending_ix),
            (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table AND INDEX_NAME = @cleanup_ix),
            (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table AND INDEX_NAME = @ordering_ix)
        """;

    private readonly string _tableName;
    private readonly string _table;
    private readonly string _insertSql;
    private readonly string _insertLeasedSql;
    private readonly string _claimSql;
    private readonly string _claimUpdateLease;
    private readonly bool _databaseClock;
    private readonly string _leasedUntil;
    private readonly OutboxMigration[] _migrations;

    public MySqlDialect(MySqlOutboxStoreOptions options, string? database)
    {
        options.Validate();
        _tableName = options.TableName;
        _table = Quote(_tableName);
        DisplayName = string.IsNullOrEmpty(database) ? _table : $"`{database.Replace("`", "``", StringComparison.Ordinal)}`.{_table}";
        _migrations = Layout(_tableName);
        _databaseClock = options.UseDatabaseClock;

        // With the database's clock a lease is a length in microseconds (@lease_us) from the server's time when the statement runs.
        var leasedUntil = _databaseClock ? "TIMESTAMPADD(MICROSECOND, @lease_us, UTC_TIMESTAMP(6))" : "@lease_until";
        var now = _databaseClock ? "UTC_TIMESTAMP(6)" : "@now";
        _claimUpdateLease = leasedUntil;
        _leasedUntil = leasedUntil;

        // MySQL has no INSERT ... RETURNING (MariaDB has); LAST_INSERT_ID() is per session, so the second statement reads this insert's id.
        _insertSql = $"INSERT INTO {_table} (message_id, payload, options, headers, created_at, ordering_key, destination) VALUES (@message_id, @payload, @options, @headers, @created_at, @ordering_key, @destination); SELECT LAST_INSERT_ID()";
        _insertLeasedSql = $"INSERT INTO {_table} (message_id, payload, options, headers, created_at, ordering_key, destination, locked_until, lease_token, attempts) VALUES (@message_id, @payload, @options, @headers, @created_at, @ordering_key, @destination, {leasedUntil}, @token, 1); SELECT LAST_INSERT_ID()";

        // The first step of a claim: lock the claimable rows, passing over those another claim, a mark or a release holds, and an
        // enqueue not yet committed. attempts + 1 is the count the claim's UPDATE writes (the rows stay locked until it commits).
        _claimSql = $"""
            SELECT c.id, c.message_id, c.payload, c.options, c.headers, c.created_at, c.attempts + 1, c.ordering_key, c.destination
            FROM {_table} AS c
            WHERE c.dispatched = 0 AND c.dead_lettered_at IS NULL AND (c.locked_until IS NULL OR c.locked_until <= {now})
              AND (c.ordering_key IS NULL OR NOT EXISTS (
                  SELECT 1 FROM {_table} AS p
                  WHERE p.ordering_key = c.ordering_key AND (p.id < c.id OR (p.id <> c.id AND p.locked_until > {now})) AND p.dispatched = 0 AND p.dead_lettered_at IS NULL))
            ORDER BY c.id
            LIMIT @limit
            FOR UPDATE SKIP LOCKED
            """;
        ReleaseSql = $"UPDATE {_table} SET locked_until = @retry_at, last_error = @error, uncertain_attempts = uncertain_attempts + @uncertain WHERE id = @id AND lease_token = @token AND dispatched = 0 AND dead_lettered_at IS NULL";
        DeadLetterSql = $"UPDATE {_table} SET dead_lettered_at = @at, locked_until = NULL, last_error = @error WHERE id = @id AND lease_token = @token AND dispatched = 0 AND dead_lettered_at IS NULL";

        // Bounded batches keep each delete's locks short. A single-table DELETE ... ORDER BY ... LIMIT is planned without regard to the
        // LIMIT: MariaDB sorts every expired row, or walks (dispatched, id) over every dispatched row, locking all it reads. So the ids
        // come from a derived table instead (MySQL refuses LIMIT in an IN subquery, and lets a materialized derived table read the table
        // being deleted from): a read of the cleanup index, oldest first, that stops after the batch. STRAIGHT_JOIN then deletes just
        // those rows by primary key. A dispatched row never becomes pending again, so the ids need no second check.
        RemoveDispatchedSql = $"""
            DELETE o FROM (
                SELECT id FROM {_table}
                WHERE dispatched = 1 AND dispatched_at < @cutoff
                ORDER BY dispatched_at
                LIMIT @limit) AS expired
            STRAIGHT_JOIN {_table} AS o ON o.id = expired.id
            """;
        StatisticsSql = StandardStatisticsSql(_table, "dispatched = 0");
        DestinationStatisticsSql = StandardDestinationStatisticsSql(_table, "dispatched = 0");
        DeadLettersSql = $"""
            SELECT id, message_id, payload, options, headers, created_at, attempts, ordering_key, destination, last_error, dead_lettered_at, uncertain_attempts
            FROM {_table} WHERE dead_lettered_at IS NOT NULL AND id > @after ORDER BY id LIMIT @limit
            """;
    }

    public override string Table => _table;

    public override string DisplayName { get; }

    public override IReadOnlyList<OutboxMigration> Migrations => _migrations;

    public override string ReleaseSql { get; }

    public override string DeadLetterSql { get; }

    public override string RemoveDispatchedSql { get; }

    public override string StatisticsSql { get; }

    public override string DestinationStatisticsSql { get; }

    public override string DeadLettersSql { get; }

    public static string Script(MySqlOutboxStoreOptions options, int fromVersion) =>
        RelationalOutboxStore.ScriptFor(new MySqlDialect(options, null), fromVersion);

    public override bool Owns(DbTransaction transaction) => transaction is MySqlTransaction;

    // UTC wall-clock time without a Kind: MySqlConnector refuses a Utc DateTime when the connection string says DateTimeKind=Local
    // (and a Local one when it says Utc), but takes an Unspecified one under every setting, and never converts it.
    public override object ToDbTimestamp(DateTimeOffset value) => ToDb(value);

    public override DateTimeOffset ReadTimestamp(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);

        // DATETIME has no zone: the column holds UTC, whatever Kind the connection's DateTimeKind setting labels it with.
        return new DateTimeOffset(DateTime.SpecifyKind(reader.GetDateTime(ordinal), DateTimeKind.Utc));
    }

    public override DbCommand CreateInsertCommand(DbConnection connection, DbTransaction? transaction, SerializedMessage row)
    {
        var command = Command(connection, transaction, row.LeaseUntil is null ? _insertSql : _insertLeasedSql);
        var message = row.Message;

        // As text: CHAR(36) reads back as a Guid with MySqlConnector's default GuidFormat, and as a parsable string with any other.
        Add(command, "@message_id", MySqlDbType.VarChar, message.MessageId.ToString("D"));
        Add(command, "@payload", MySqlDbType.LongBlob, message.Payload);
        Add(command, "@options", MySqlDbType.JSON, row.OptionsJson);
        Add(command, "@headers", MySqlDbType.JSON, row.HeadersJson);
        Add(command, "@created_at", MySqlDbType.DateTime, ToDb(message.CreatedAt));
        Add(command, "@ordering_key", MySqlDbType.VarChar, message.OrderingKey);
        Add(command, "@destination", MySqlDbType.VarChar, message.Destination);
        if (row.LeaseUntil is { } leaseUntil)
        {
            AddLease(command, row.LeasedAt ?? leaseUntil, leaseUntil);
            Add(command, "@token", MySqlDbType.Int64, row.LeaseToken);
        }

        return command;
    }

    /// <summary>The most rows one multi-row <c>INSERT</c> of <see cref="InsertRangeAsync"/> takes.</summary>
    internal const int MaxRowsPerInsert = 500;

    /// <summary>
    /// The most bytes of values one multi-row <c>INSERT</c> carries before the list goes on in another: well under the smallest
    /// <c>max_allowed_packet</c> (4 MB on MySQL 5.7, 16 MB on MariaDB, 64 MB on MySQL 8), counting a payload twice (the text
    /// protocol escapes binary) and text three times (UTF-8). A message larger than this goes alone, as a single enqueue would.
    /// </summary>
    private const int MaxBytesPerInsert = 1 << 20;

    /// <summary>
    /// Inserts the messages within the caller's transaction with multi-row <c>INSERT ... VALUES</c>, up to <see cref="MaxRowsPerInsert"/>
    /// rows and about <see cref="MaxBytesPerInsert"/> bytes each, and assigns every <see cref="OutboxMessage.Id"/>: a multi-row
    /// <c>INSERT</c> is a "simple insert", which InnoDB gives consecutive auto-increment values in every lock mode, so the ids are
    /// <c>LAST_INSERT_ID()</c> (the first) plus steps of <c>@@auto_increment_increment</c>, read in the same round trip.
    /// </summary>
    public override async Task<int> InsertRangeAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var start = 0;
        while (start < rows.Count)
        {
            var count = 0;
            long bytes = 0;
            while (start + count < rows.Count && count < MaxRowsPerInsert)
            {
                var size = EstimatedSize(rows[start + count]);
                if (count > 0 && bytes + size > MaxBytesPerInsert)
                {
                    break;
                }

                bytes += size;
                count++;
            }

            await InsertChunkAsync(connection, transaction, rows, start, count, cancellationToken).ConfigureAwait(false);
            start += count;
        }

        return rows.Count;
    }

    private async Task InsertChunkAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, int start, int count, CancellationToken cancellationToken)
    {
        var lease = rows[start].LeaseUntil;
        var sql = new StringBuilder(128 + (count * 100));
        sql.Append("INSERT INTO ").Append(_table).Append(" (message_id, payload, options, headers, created_at, ordering_key, destination")
            .Append(lease is null ? ") VALUES " : ", locked_until, lease_token, attempts) VALUES ");
        var command = Command(connection, transaction, string.Empty);
        await using (command.ConfigureAwait(false))
        {
            if (lease is { } leaseUntil)
            {
                // Rows written already claimed (send after commit) share one lease.
                AddLease(command, rows[start].LeasedAt ?? leaseUntil, leaseUntil);
                Add(command, "@token", MySqlDbType.Int64, rows[start].LeaseToken);
            }

            for (var i = 0; i < count; i++)
            {
                var row = rows[start + i];
                var message = row.Message;
                var n = i.ToString(CultureInfo.InvariantCulture);
                sql.Append(i == 0 ? "(" : ", (")
                    .Append("@m").Append(n).Append(", @p").Append(n).Append(", @o").Append(n).Append(", @h").Append(n)
                    .Append(", @c").Append(n).Append(", @k").Append(n).Append(", @d").Append(n).Append(lease is null ? ")" : $", {_leasedUntil}, @token, 1)");
                Add(command, "@m" + n, MySqlDbType.VarChar, message.MessageId.ToString("D"));
                Add(command, "@p" + n, MySqlDbType.LongBlob, message.Payload);
                Add(command, "@o" + n, MySqlDbType.JSON, row.OptionsJson);
                Add(command, "@h" + n, MySqlDbType.JSON, row.HeadersJson);
                Add(command, "@c" + n, MySqlDbType.DateTime, ToDb(message.CreatedAt));
                Add(command, "@k" + n, MySqlDbType.VarChar, message.OrderingKey);
                Add(command, "@d" + n, MySqlDbType.VarChar, message.Destination);
            }

            command.CommandText = sql.Append("; SELECT LAST_INSERT_ID(), @@auto_increment_increment").ToString();
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                // The INSERT's result first (no rows), then the ids.
                while (reader.FieldCount == 0 && await reader.NextResultAsync(cancellationToken).ConfigureAwait(false))
                {
                }

                if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    var first = Convert.ToInt64(reader.GetValue(0), CultureInfo.InvariantCulture);
                    var step = Convert.ToInt64(reader.GetValue(1), CultureInfo.InvariantCulture);
                    for (var i = 0; i < count; i++)
                    {
                        rows[start + i].Message.Id = first + (i * step);
                    }
                }
            }
        }
    }

    private static long EstimatedSize(SerializedMessage row) =>
        64 + (2L * row.Message.Payload.Length)
        + (3L * ((row.OptionsJson?.Length ?? 0) + (row.HeadersJson?.Length ?? 0) + (row.Message.OrderingKey?.Length ?? 0) + (row.Message.Destination?.Length ?? 0)));

    /// <summary>
    /// Claims in one <c>READ COMMITTED</c> transaction (no gap locks, so enqueues never wait on a claim): a locking select of the
    /// claimable rows (<c>FOR UPDATE SKIP LOCKED</c>), then one <c>UPDATE ... WHERE id IN (...)</c> that sets the lease and counts the
    /// attempt, then commit. MySQL has no <c>UPDATE ... RETURNING</c>.
    /// </summary>
    public override async Task ClaimAsync(DbConnection connection, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, ICollection<OutboxMessage> claimed, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claimed);
        var transaction = await ((MySqlConnection)connection).BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken).ConfigureAwait(false);
        await using (transaction.ConfigureAwait(false))
        {
            var rows = new List<OutboxMessage>();
            var select = Command(connection, transaction, _claimSql);
            await using (select.ConfigureAwait(false))
            {
                if (!_databaseClock)
                {
                    Add(select, "@now", MySqlDbType.DateTime, ToDb(now));
                }

                Add(select, "@limit", MySqlDbType.Int32, batchSize);
                var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        rows.Add(ReadMessage(reader));
                    }
                }
            }

            if (rows.Count > 0)
            {
                var update = Command(connection, transaction, $"UPDATE {_table} SET locked_until = {_claimUpdateLease}, attempts = attempts + 1, lease_token = @token WHERE id IN ({IdList(rows.Count)})");
                await using (update.ConfigureAwait(false))
                {
                    AddLease(update, now, leaseUntil);
                    Add(update, "@token", MySqlDbType.Int64, leaseToken);
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

    // The lease as the statement needs it: its end on the caller's clock, or its length for the server's clock.
    private void AddLease(MySqlCommand command, DateTimeOffset now, DateTimeOffset leaseUntil)
    {
        if (_databaseClock)
        {
            Add(command, "@lease_us", MySqlDbType.Int64, (long)(leaseUntil - now).TotalMicroseconds);
        }
        else
        {
            Add(command, "@lease_until", MySqlDbType.DateTime, ToDb(leaseUntil));
        }
    }

    public override async Task<int> MarkDispatchedAsync(DbConnection connection, IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var command = Command(connection, null, $"UPDATE {_table} SET dispatched = 1, dispatched_at = @at, locked_until = NULL WHERE id IN ({IdList(ids.Count)}) AND lease_token = @token");
        await using (command.ConfigureAwait(false))
        {
            Add(command, "@at", MySqlDbType.DateTime, ToDb(dispatchedAt));
            Add(command, "@token", MySqlDbType.Int64, leaseToken);
            AddIds(command, ids, static id => id);
            return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public override async Task<OutboxSchemaState> ReadSchemaAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        var state = await ReadStateAsync(connection, cancellationToken).ConfigureAwait(false);
        if (!state.TableExists)
        {
            return new OutboxSchemaState(0, false);
        }

        var match = state.Comment is null ? null : VersionComment().Match(state.Comment);
        var version = match is { Success: true } ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 1;
        return new OutboxSchemaState(version, !state.PendingIndexExists || !state.CleanupIndexExists || !state.OrderingIndexExists);
    }

    /// <summary>
    /// Takes a named lock (<c>GET_LOCK</c>, which belongs to the session: DDL commits implicitly, so there is no transaction to hold it):
    /// <c>CREATE TABLE IF NOT EXISTS</c> and <c>ADD INDEX</c> collide when two sessions run them at once, so creators and migrators queue,
    /// then look again.
    /// </summary>
    public override async Task<DbTransaction?> BeginSchemaChangeAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        var lockName = await LockNameAsync(connection, cancellationToken).ConfigureAwait(false);
        var command = Command(connection, null, $"SELECT GET_LOCK(@name, {LockTimeoutSeconds})");
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.AddWithValue("@name", lockName);
            var acquired = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            if (acquired is null or DBNull || Convert.ToInt64(acquired, CultureInfo.InvariantCulture) != 1)
            {
                throw new OutboxException(
                    $"Could not create or migrate the outbox table {DisplayName}: another session held the lock '{lockName}' (GET_LOCK) for {LockTimeoutSeconds} seconds.",
                    isTransient: true);
            }
        }

        return null;
    }

    public override async Task EndSchemaChangeAsync(DbConnection connection)
    {
        // Released even when the DDL failed or the caller cancelled; the pool's connection reset would release it too.
        var release = Command(connection, null, "DO RELEASE_LOCK(@name)");
        await using (release.ConfigureAwait(false))
        {
            release.Parameters.AddWithValue("@name", await LockNameAsync(connection, CancellationToken.None).ConfigureAwait(false));
            await release.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>The table exists (made by hand, or an index was dropped) without some of its indexes: adds just those, in one <c>ALTER</c>.</summary>
    public override async Task RepairAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        var state = await ReadStateAsync(connection, cancellationToken).ConfigureAwait(false);
        var clauses = new List<string>(3);
        if (!state.PendingIndexExists)
        {
            clauses.Add($"ADD INDEX {PendingIndexDefinition(_tableName)}");
        }

        if (!state.CleanupIndexExists)
        {
            clauses.Add($"ADD INDEX {CleanupIndexDefinition(_tableName)}");
        }

        if (!state.OrderingIndexExists)
        {
            clauses.Add($"ADD INDEX {OrderingIndexDefinition(_tableName)}");
        }

        if (clauses.Count > 0)
        {
            var alter = Command(connection, null, $"ALTER TABLE {_table} {string.Join(", ", clauses)}");
            await using (alter.ConfigureAwait(false))
            {
                await alter.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    // ALTER TABLE ... COMMENT changes only the table's metadata: no rows are copied.
    public override string RecordVersionSql(int version, string description) =>
        $"ALTER TABLE {_table} COMMENT = '{VersionCommentPrefix}{version.ToString(CultureInfo.InvariantCulture)}: {description.Replace("'", "''", StringComparison.Ordinal)}';";

    /// <summary>The layout's steps. Never change a released step: add one.</summary>
    private static OutboxMigration[] Layout(string table) =>
    [
        new OutboxMigration(1, "the outbox table of 0.1.0-preview.1", $"""
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
                INDEX {OrderingIndexDefinition(table)}
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
            """),

        // The destination the event stream named at enqueue, for statistics per destination. MySQL's DDL commits by itself, so a step
        // interrupted before its version was recorded is recognised by its column and only recorded.
        new OutboxMigration(
            2,
            "destination column",
            $"ALTER TABLE {Quote(table)} ADD COLUMN destination VARCHAR(255) NULL;",
            $"SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' AND COLUMN_NAME = 'destination'"),

        // The token of the claim that holds a row, so that only that claim can mark, release or dead-letter it (fenced claims).
        new OutboxMigration(
            3,
            "lease_token column (fenced claims)",
            $"ALTER TABLE {Quote(table)} ADD COLUMN lease_token BIGINT NULL;",
            $"SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' AND COLUMN_NAME = 'lease_token'"),

        // How many attempts had an unknown outcome (no confirm came), so that a dead letter that may have reached the broker says so.
        new OutboxMigration(
            4,
            "uncertain_attempts column (dead letters that may have been published)",
            $"ALTER TABLE {Quote(table)} ADD COLUMN uncertain_attempts INT NOT NULL DEFAULT 0;",
            $"SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' AND COLUMN_NAME = 'uncertain_attempts'"),
    ];

    private async Task<(bool TableExists, string? Comment, bool PendingIndexExists, bool CleanupIndexExists, bool OrderingIndexExists)> ReadStateAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        var command = Command(connection, null, StateSql);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.AddWithValue("@table", _tableName);
            command.Parameters.AddWithValue("@pending_ix", SqlIdentifier.Derive(_tableName, PendingIndexSuffix));
            command.Parameters.AddWithValue("@cleanup_ix", SqlIdentifier.Derive(_tableName, CleanupIndexSuffix));
            command.Parameters.AddWithValue("@ordering_ix", SqlIdentifier.Derive(_tableName, OrderingIndexSuffix));
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                return (reader.GetInt64(1) > 0, reader.IsDBNull(2) ? null : reader.GetString(2), reader.GetInt64(3) > 0, reader.GetInt64(4) > 0, reader.GetInt64(5) > 0);
            }
        }
    }

    // GET_LOCK names are server-wide, so the name carries the database as well as the table; readable when it fits in 64 characters.
    private async Task<string> LockNameAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        var command = Command(connection, null, "SELECT DATABASE()");
        await using (command.ConfigureAwait(false))
        {
            if (await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not string { Length: > 0 } database)
            {
                throw new OutboxException(
                    $"Could not create or migrate the outbox table {DisplayName}: the connection has no database selected; name one in the connection string (Database=...).",
                    isTransient: false);
            }

            var name = $"outboxer:{database}.{_tableName}";
            return name.Length <= MaxLockNameLength
                ? name
                : "outboxer:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{database}.{_tableName}")).AsSpan(0, 16));
        }
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

    private static DateTime ToDb(DateTimeOffset value) => DateTime.SpecifyKind(value.UtcDateTime, DateTimeKind.Unspecified);

    // Claims walk the pending rows in id order and stop after a batch, however many dispatched rows wait for cleanup.
    private static string PendingIndexDefinition(string table) => $"{Quote(SqlIdentifier.Derive(table, PendingIndexSuffix))} (dispatched, id)";

    // Cleanup reads only the expired dispatched rows, oldest first.
    private static string CleanupIndexDefinition(string table) => $"{Quote(SqlIdentifier.Derive(table, CleanupIndexSuffix))} (dispatched, dispatched_at)";

    // Claims find the oldest pending message of a key.
    private static string OrderingIndexDefinition(string table) => $"{Quote(SqlIdentifier.Derive(table, OrderingIndexSuffix))} (ordering_key, dispatched, id)";

    private static string Quote(string name) => $"`{name}`";

    [GeneratedRegex("^Outboxer outbox table, layout version ([0-9]+)", RegexOptions.CultureInvariant)]
    private static partial Regex VersionComment();
}
