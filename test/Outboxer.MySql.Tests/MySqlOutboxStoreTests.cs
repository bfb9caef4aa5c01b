using System.Data.Common;
using System.Globalization;
using System.Text;
using MySqlConnector;
using Outboxer.Providers;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.MySql.Tests;

/// <summary>The store against a real MySQL or MariaDB, whose tables of every test share one database.</summary>
public sealed class MySqlOutboxStoreTests : RowLockingOutboxStoreConformanceTests
{
    private readonly string _suffix = Guid.NewGuid().ToString("N")[..16];
    private readonly List<MySqlDataSource> _dataSources = [];
    private readonly MySqlDataSource _dataSource = MySqlServer.CreateDataSource();
    private string? _table;

    protected override string OutboxTable => _table ??= NewTableName("outbox");

    protected override string OptionsName => nameof(MySqlOutboxStoreOptions);

    // Up to 500 messages (and about 1 MB of values) go in one multi-row INSERT.
    protected override int RowsPerInsertStatement => 500;

    protected override string DatabaseParameterName => "dataSource";

    // Index name suffix -> its columns in order: each ordering key's pending messages, the pending ones by id, the dispatched ones for cleanup.
    protected override IReadOnlyDictionary<string, string> ExpectedIndexes { get; } = new Dictionary<string, string>
    {
        ["ordering_ix"] = "ordering_key,dispatched,id",
        ["pending_ix"] = "dispatched,id",
        ["dispatched_at_ix"] = "dispatched,dispatched_at",
    };

    protected override TimeSpan LockTimeout => TimeSpan.FromSeconds(MySqlServer.LockWaitTimeoutSeconds);

    protected override RelationalOutboxStore CreateStore(string table, bool createTableIfMissing) => new MySqlOutboxStore(_dataSource, Options(table, createTableIfMissing));

    protected override RelationalOutboxStore CreateStoreOnDatabaseClock()
    {
        var options = Options();
        options.UseDatabaseClock = true;
        return new MySqlOutboxStore(_dataSource, options);
    }

    protected override string LeasesAnHourEarlierSql =>
        $"UPDATE {QuoteTable(OutboxTable)} SET locked_until = locked_until - INTERVAL 1 HOUR WHERE locked_until IS NOT NULL";

    protected override RelationalOutboxStore CreateStoreWithoutDatabase() => new MySqlOutboxStore(null!);

    protected override string CreateScript(string table) => MySqlOutboxStore.GetCreateScript(Options(table));

    // Every test's tables share the database: each name ends with this test's suffix, and DisposeAsync drops every table that has it.
    protected override string NewTableName(string prefix) => $"{prefix}_{_suffix}";

    protected override string QuoteTable(string table) => $"`{table}`";

    protected override string DropIndexStatement(string table, string index) => $"ALTER TABLE `{table}` DROP INDEX `{index}`";

    // Index name -> its columns in order ("dispatched,id"), without the primary key.
    protected override async Task<IReadOnlyDictionary<string, string>> ReadIndexesAsync(string table)
    {
        var indexes = new Dictionary<string, string>();
        await using var connection = await MySqlServer.OpenAsync(_dataSource);
        await using var command = new MySqlCommand(
            """
            SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR ',')
            FROM information_schema.STATISTICS
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table AND INDEX_NAME <> 'PRIMARY'
            GROUP BY INDEX_NAME
            """,
            connection);
        command.Parameters.AddWithValue("@table", table);
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            indexes[reader.GetString(0)] = reader.GetString(1);
        }

        return indexes;
    }

    // DATETIME(6) columns hold the UTC time of day.
    protected override DateTimeOffset ReadInstant(DbDataReader reader, int ordinal) => new(DateTime.SpecifyKind(reader.GetDateTime(ordinal), DateTimeKind.Utc));

    protected override async Task<DbConnection> OpenConnectionAsync() => await MySqlServer.OpenAsync(_dataSource);

    // Every user may use information_schema, a database of every server.
    protected override async Task<DbConnection> OpenConnectionToAnotherDatabaseAsync()
    {
        var connection = new MySqlConnection(new MySqlConnectionStringBuilder(MySqlServer.ConnectionString) { Database = "information_schema" }.ConnectionString);
        await connection.OpenAsync(Ct);
        return connection;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var dataSource in _dataSources)
        {
            await dataSource.DisposeAsync();
        }

        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(CancellationToken.None);
            var tables = new List<string>();
            await using (var command = new MySqlCommand("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE @pattern", connection))
            {
                command.Parameters.AddWithValue("@pattern", $"%{_suffix}%");
                await using var reader = await command.ExecuteReaderAsync(CancellationToken.None);
                while (await reader.ReadAsync(CancellationToken.None))
                {
                    tables.Add(reader.GetString(0));
                }
            }

            foreach (var table in tables)
            {
                await using var command = new MySqlCommand($"DROP TABLE IF EXISTS `{table}`", connection);
                await command.ExecuteNonQueryAsync(CancellationToken.None);
            }
        }
        finally
        {
            await _dataSource.DisposeAsync();
        }
    }

    [Fact]
    public void The_create_script_names_the_table_and_its_indexes_and_uses_innodb_and_utf8mb4()
    {
        var script = MySqlOutboxStore.GetCreateScript(new MySqlOutboxStoreOptions { TableName = "events" });

        Assert.Contains("CREATE TABLE IF NOT EXISTS `events` (", script, StringComparison.Ordinal);
        Assert.Contains("INDEX `events_pending_ix` (dispatched, id)", script, StringComparison.Ordinal);
        Assert.Contains("INDEX `events_dispatched_at_ix` (dispatched, dispatched_at)", script, StringComparison.Ordinal);
        Assert.Contains("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4", script, StringComparison.Ordinal);
        Assert.Contains("`outbox_messages`", MySqlOutboxStore.GetCreateScript(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_table_is_innodb_utf8mb4_and_its_columns_have_the_intended_types()
    {
        await CreateStore().MigrateAsync(Ct);

        var columns = new Dictionary<string, (string Type, string Nullable, string? Charset)>();
        await using (var connection = await MySqlServer.OpenAsync(_dataSource))
        {
            await using (var command = new MySqlCommand(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table",
                connection))
            {
                command.Parameters.AddWithValue("@table", OutboxTable);
                await using var reader = await command.ExecuteReaderAsync(Ct);
                while (await reader.ReadAsync(Ct))
                {
                    columns[reader.GetString(0)] = (reader.GetString(1).ToLowerInvariant(), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetString(3));
                }
            }

            await using (var command = new MySqlCommand("SELECT ENGINE, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = @table", connection))
            {
                command.Parameters.AddWithValue("@table", OutboxTable);
                await using var reader = await command.ExecuteReaderAsync(Ct);
                Assert.True(await reader.ReadAsync(Ct));
                Assert.Equal("InnoDB", reader.GetString(0));
                Assert.StartsWith("utf8mb4_", reader.GetString(1), StringComparison.Ordinal);
            }
        }

        Assert.StartsWith("bigint", columns["id"].Type, StringComparison.Ordinal); // bigint(20) on MariaDB, bigint on MySQL 8
        Assert.Equal("NO", columns["id"].Nullable);
        Assert.Equal(("char(36)", "NO", "ascii"), columns["message_id"]);
        Assert.Equal(("longblob", "NO", null), columns["payload"]);

        // MySQL has a real JSON type; MariaDB's JSON is LONGTEXT (utf8mb4) with a JSON_VALID check.
        Assert.Contains(columns["options"].Type, new[] { "json", "longtext" });
        Assert.Contains(columns["headers"].Type, new[] { "json", "longtext" });
        Assert.Equal("YES", columns["options"].Nullable);
        Assert.Equal("YES", columns["headers"].Nullable);
        Assert.Equal(("datetime(6)", "NO", null), columns["created_at"]);
        Assert.Equal(("tinyint(1)", "NO", null), columns["dispatched"]);
        Assert.Equal(("datetime(6)", "YES", null), columns["dispatched_at"]);
        Assert.Equal("NO", columns["attempts"].Nullable);
        Assert.StartsWith("int", columns["attempts"].Type, StringComparison.Ordinal);
        Assert.Equal(("datetime(6)", "YES", null), columns["locked_until"]);
        Assert.Equal(("text", "YES", "utf8mb4"), columns["last_error"]);
        Assert.Equal(("varchar(255)", "YES", "utf8mb4"), columns["destination"]);
        Assert.StartsWith("bigint", columns["lease_token"].Type, StringComparison.Ordinal);
        Assert.Equal("YES", columns["lease_token"].Nullable);
        Assert.StartsWith("int", columns["uncertain_attempts"].Type, StringComparison.Ordinal);
        Assert.Equal("NO", columns["uncertain_attempts"].Nullable);
        Assert.Equal(16, columns.Count);
    }

    [Fact]
    public async Task A_four_byte_emoji_in_headers_options_and_the_failure_text_round_trips()
    {
        var store = CreateStore();
        var message = NewMessage("\U0001F600 payload");
        message.Headers["mood"] = "happy \U0001F600";
        message.Options["routing_key"] = "\U0001F680.launch";
        var id = await store.AddWithinTransactionAsync(message, null, Ct);

        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal("happy \U0001F600", claimed.Headers["mood"]);
        Assert.Equal("\U0001F680.launch", claimed.Options["routing_key"]);
        Assert.Equal("\U0001F600 payload", Encoding.UTF8.GetString(claimed.Payload));

        // utf8(mb3) would refuse the emoji ("Incorrect string value") and fail the release.
        Assert.True(await store.ReleaseAsync(id, claimed.LeaseToken, T0.AddSeconds(5), "broker said \U0001F4A5", cancellationToken: Ct));
        Assert.Equal("broker said \U0001F4A5", await ScalarAsync<string>($"SELECT last_error FROM `{OutboxTable}` WHERE id = {id}"));
    }

    [Fact]
    public async Task Times_keep_their_microseconds()
    {
        var store = CreateStore();
        var message = NewMessage("precise");
        message.CreatedAt = T0.AddTicks(1_234_567_890); // 123.456789 s after T0: every microsecond digit set.
        var id = await store.AddWithinTransactionAsync(message, null, Ct);

        var lease = T0.AddTicks(300_000_010); // 30.000001 s
        var claimed = Assert.Single(await store.ClaimAsync(10, T0, lease, Ct));
        Assert.Equal(message.CreatedAt, claimed.CreatedAt);
        Assert.Equal(new DateTime(2026, 1, 1, 12, 2, 3, DateTimeKind.Unspecified).AddTicks(4_567_890), await ScalarAsync<DateTime>($"SELECT created_at FROM `{OutboxTable}` WHERE id = {id}"));

        // One microsecond before the lease ends the row is still reserved; at the end it is claimable again.
        Assert.Empty(await store.ClaimAsync(10, lease.AddTicks(-10), lease.AddSeconds(30), Ct));
        Assert.Single(await store.ClaimAsync(10, lease, lease.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task A_one_megabyte_payload_round_trips()
    {
        var store = CreateStore();
        var payload = new byte[1024 * 1024 + 7];
        new Random(42).NextBytes(payload);
        await store.AddWithinTransactionAsync(new OutboxMessage(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = T0 }, null, Ct);

        // A BLOB column would have refused (strict mode) or cut it at 64 KB.
        Assert.Equal(payload, Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Payload);
    }

    [Fact]
    public async Task Cleanup_deletes_in_batches_across_many_rows()
    {
        var store = CreateStore();
        await store.MigrateAsync(Ct);
        await using (var connection = await OpenConnectionAsync())
        {
            // 250 dispatched rows and 5 pending ones, written in bulk.
            var values = string.Join(", ", Enumerable.Range(0, 255).Select(i =>
                $"(UUID(), 'x', '2026-01-01 12:00:00', {(i < 250 ? "1, '2026-01-01 12:00:00'" : "0, NULL")})"));
            await ExecuteAsync(connection, null, $"INSERT INTO `{OutboxTable}` (message_id, payload, created_at, dispatched, dispatched_at) VALUES {values}");
        }

        var removed = new List<int>();
        for (var i = 0; i < 4; i++)
        {
            removed.Add(await store.RemoveDispatchedAsync(T0.AddHours(1), 100, Ct));
        }

        Assert.Equal([100, 100, 50, 0], removed);
        Assert.Equal(5, (await store.ClaimAsync(100, T0, T0.AddSeconds(30), Ct)).Count);
    }

    [Fact]
    public async Task Full_cleanup_batches_read_only_expired_rows_and_do_not_wait_for_rows_that_claims_and_marks_hold()
    {
        var store = CreateStore();
        await store.MigrateAsync(Ct);
        await using (var connection = await OpenConnectionAsync())
        {
            // Interleaved by id: 200 rows dispatched long ago, 50 dispatched recently, 50 pending.
            var values = string.Join(", ", Enumerable.Range(0, 300).Select(i => (i % 6) switch
            {
                < 4 => "(UUID(), 'x', '2026-01-01', 1, '2026-01-01 12:00:00')",
                4 => "(UUID(), 'x', '2026-01-01', 1, '2026-01-03 12:00:00')",
                _ => "(UUID(), 'x', '2026-01-01', 0, NULL)",
            }));
            await ExecuteAsync(connection, null, $"INSERT INTO `{OutboxTable}` (message_id, payload, created_at, dispatched, dispatched_at) VALUES {values}");
            await ExecuteAsync(connection, null, $"ANALYZE TABLE `{OutboxTable}`");
        }

        // Claims hold every pending row and marks every recent one. A delete that sorted all expired rows, or walked the dispatched
        // rows by id, would read (and wait for) locked rows; one that reads the cleanup index and stops at the batch never meets them.
        await using var blocker = await MySqlServer.OpenAsync(_dataSource);
        var held = new List<long>();
        await using (var command = new MySqlCommand($"SELECT id FROM `{OutboxTable}` WHERE dispatched = 0 OR dispatched_at > '2026-01-02'", blocker))
        await using (var reader = await command.ExecuteReaderAsync(Ct))
        {
            while (await reader.ReadAsync(Ct))
            {
                held.Add(reader.GetInt64(0));
            }
        }

        Assert.Equal(100, held.Count);
        await using var transaction = await blocker.BeginTransactionAsync(Ct);

        // One primary-key lookup per row: a single IN (...) is planned as a scan here, which would lock every row it reads.
        await ExecuteAsync(blocker, transaction, string.Concat(held.Select(id => $"DO (SELECT id FROM `{OutboxTable}` WHERE id = {id} FOR UPDATE); ")));

        var started = TimeProvider.System.GetTimestamp();
        Assert.Equal(100, await store.RemoveDispatchedAsync(T0.AddDays(1), 100, Ct));
        Assert.Equal(100, await store.RemoveDispatchedAsync(T0.AddDays(1), 100, Ct));
        Assert.True(TimeProvider.System.GetElapsedTime(started) < TimeSpan.FromSeconds(MySqlServer.LockWaitTimeoutSeconds), "The cleanup waited for a lock.");
        await transaction.RollbackAsync(Ct);

        Assert.Equal(0, await store.RemoveDispatchedAsync(T0.AddDays(1), 100, Ct));
        Assert.Equal(100L, await ScalarAsync<long>($"SELECT COUNT(*) FROM `{OutboxTable}`"));
    }

    [Fact]
    public async Task Many_claimed_messages_are_marked_dispatched_in_one_call()
    {
        var store = CreateStore();
        for (var i = 0; i < 250; i++)
        {
            await store.AddWithinTransactionAsync(NewMessage($"m{i}"), null, Ct);
        }

        var claimed = await store.ClaimAsync(1000, T0, T0.AddSeconds(30), Ct);
        Assert.Equal(250, claimed.Count);
        Assert.Equal(250, await store.MarkDispatchedAsync(claimed.Select(m => m.Id).ToList(), claimed[0].LeaseToken, T0.AddSeconds(1), Ct));

        Assert.Equal(250L, await ScalarAsync<long>($"SELECT COUNT(*) FROM `{OutboxTable}` WHERE dispatched = 1 AND dispatched_at = '2026-01-01 12:00:01' AND locked_until IS NULL"));
        Assert.Empty(await store.ClaimAsync(1000, T0.AddHours(1), T0.AddHours(2), Ct));
    }

    [Fact]
    public async Task Times_are_stored_as_the_same_instant_whatever_the_session_time_zone()
    {
        // The store's own sessions run at +05:00, the caller's at +05:00 too, and the checks read at -07:00.
        var shifted = MySqlServer.CreateDataSource(sessionSql: "SET time_zone = '+05:00'");
        _dataSources.Add(shifted);
        var store = new MySqlOutboxStore(shifted, Options());
        var message = NewMessage("offset");
        message.CreatedAt = message.CreatedAt.ToOffset(TimeSpan.FromHours(-5));
        await using (var connection = await MySqlServer.OpenAsync(_dataSource))
        {
            await ExecuteAsync(connection, null, "SET time_zone = '+05:00'");
            await using var transaction = await connection.BeginTransactionAsync(Ct);
            await store.AddAsync(transaction, message, Ct);
            await transaction.CommitAsync(Ct);
        }

        var local = T0.ToOffset(TimeSpan.FromHours(2));
        var claimed = Assert.Single(await store.ClaimAsync(10, local, local.AddSeconds(30), Ct));
        Assert.Equal(message.CreatedAt, claimed.CreatedAt);
        Assert.Equal(TimeSpan.Zero, claimed.CreatedAt.Offset);
        Assert.Empty(await store.ClaimAsync(10, T0.AddSeconds(29), T0.AddSeconds(59), Ct));
        await store.MarkDispatchedAsync([claimed.Id], claimed.LeaseToken, local.AddSeconds(1), Ct);

        await using (var reader = await MySqlServer.OpenAsync(_dataSource))
        {
            await ExecuteAsync(reader, null, "SET time_zone = '-07:00'");
            await using var command = new MySqlCommand($"SELECT created_at, dispatched_at FROM `{OutboxTable}` WHERE id = {claimed.Id}", reader);
            await using var row = await command.ExecuteReaderAsync(Ct);
            Assert.True(await row.ReadAsync(Ct));
            Assert.Equal(message.CreatedAt.UtcDateTime, DateTime.SpecifyKind(row.GetDateTime(0), DateTimeKind.Utc));
            Assert.Equal(new DateTime(2026, 1, 1, 12, 0, 1), row.GetDateTime(1));
        }

        Assert.Equal(0, await store.RemoveDispatchedAsync(T0.AddSeconds(1), 10, Ct));
        Assert.Equal(1, await store.RemoveDispatchedAsync(local.AddSeconds(1).AddTicks(10), 10, Ct));
    }

    [Fact]
    public async Task A_data_source_with_unusual_type_settings_still_round_trips_every_field()
    {
        var unusual = MySqlServer.CreateDataSource(b =>
        {
            b.GuidFormat = MySqlGuidFormat.Binary16;
            b.DateTimeKind = MySqlDateTimeKind.Local;
            b.AllowZeroDateTime = true;
            b.TreatTinyAsBoolean = false;
        });
        _dataSources.Add(unusual);
        var store = new MySqlOutboxStore(unusual, Options());
        var message = NewMessage("unusual");
        message.Headers["tenant"] = "acme";
        var id = await store.AddWithinTransactionAsync(message, null, Ct);

        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal(message.MessageId, claimed.MessageId);
        Assert.Equal(message.CreatedAt, claimed.CreatedAt);
        Assert.Equal("acme", claimed.Headers["tenant"]);
        Assert.True(await store.ReleaseAsync(id, claimed.LeaseToken, T0.AddSeconds(1), "broker down", cancellationToken: Ct));
        var again = Assert.Single(await store.ClaimAsync(10, T0.AddSeconds(1), T0.AddSeconds(31), Ct));
        Assert.Equal(2, again.Attempts);
        Assert.Equal(1, await store.MarkDispatchedAsync([id], again.LeaseToken, T0.AddSeconds(2), Ct));
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddDays(1), 10, Ct));
    }

    [Fact]
    public async Task Creation_fails_naming_the_lock_when_another_session_holds_it_for_ten_seconds()
    {
        var table = NewTableName("locked");
        await using var holder = await MySqlServer.OpenAsync(_dataSource);
        var lockName = $"outboxer:{holder.Database}.{table}";
        await using (var command = new MySqlCommand("SELECT GET_LOCK(@name, 0)", holder))
        {
            command.Parameters.AddWithValue("@name", lockName);
            Assert.Equal(1L, Convert.ToInt64(await command.ExecuteScalarAsync(Ct), CultureInfo.InvariantCulture));
        }

        var ex = await Assert.ThrowsAsync<OutboxException>(() => new MySqlOutboxStore(_dataSource, Options(table)).MigrateAsync(Ct));
        Assert.Contains($"'{lockName}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"`{table}`", ex.Message, StringComparison.Ordinal);
        Assert.True(ex.IsTransient);

        await ExecuteAsync(holder, null, $"DO RELEASE_LOCK('{lockName}')");
        await new MySqlOutboxStore(_dataSource, Options(table)).MigrateAsync(Ct);
        AssertHasItsIndexes(table, await ReadIndexesAsync(table));
    }

    [Fact]
    public async Task A_connection_without_a_database_fails_creation_with_an_error_saying_so()
    {
        var noDatabase = MySqlServer.CreateDataSource(b => b.Database = "");
        _dataSources.Add(noDatabase);

        var ex = await Assert.ThrowsAsync<OutboxException>(() => new MySqlOutboxStore(noDatabase, Options()).MigrateAsync(Ct));
        Assert.Contains("no database selected", ex.Message, StringComparison.Ordinal);
        Assert.False(ex.IsTransient);
    }

    [Fact]
    public async Task A_nul_character_in_a_header_round_trips()
    {
        var store = CreateStore();
        var message = NewMessage("nul");
        message.Headers["trace"] = "a\0b";
        message.Headers["path"] = "C:\\u0000";
        await store.AddWithinTransactionAsync(message, null, Ct);

        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal("a\0b", claimed.Headers["trace"]);
        Assert.Equal("C:\\u0000", claimed.Headers["path"]);
    }

    [Fact]
    public async Task Enqueue_into_a_disposed_transaction_throws_and_writes_nothing()
    {
        var store = CreateStore();
        await using var connection = await OpenConnectionAsync();
        var transaction = await connection.BeginTransactionAsync(Ct);
        await transaction.DisposeAsync();

        var ex = await Assert.ThrowsAsync<ArgumentException>(async () => await store.AddAsync(transaction, NewMessage("late"), Ct));
        Assert.Equal("transaction", ex.ParamName);
        Assert.Empty(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task Errors_name_the_database_and_the_table()
    {
        var table = NewTableName("named");
        var store = new MySqlOutboxStore(_dataSource, Options(table, create: false));

        var ex = await Assert.ThrowsAsync<OutboxException>(() => store.RemoveDispatchedAsync(T0, 10, Ct));
        var database = new MySqlConnectionStringBuilder(MySqlServer.ConnectionString).Database;
        Assert.Contains($"`{database}`.`{table}`", ex.Message, StringComparison.Ordinal);
    }

    // The suite moves time by hand (T0 and later), so its stores keep leases on the times it passes, not on the server's clock.
    private MySqlOutboxStoreOptions Options(string? table = null, bool create = true) =>
        new() { TableName = table ?? OutboxTable, CreateTableIfMissing = create, UseDatabaseClock = false };

    private async Task<T> ScalarAsync<T>(string sql)
    {
        await using var connection = await MySqlServer.OpenAsync(_dataSource);
        await using var command = new MySqlCommand(sql, connection);
        return (T)Convert.ChangeType(await command.ExecuteScalarAsync(Ct), typeof(T), CultureInfo.InvariantCulture)!;
    }
}
