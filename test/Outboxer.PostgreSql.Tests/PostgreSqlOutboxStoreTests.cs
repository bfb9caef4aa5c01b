using System.Data.Common;
using Npgsql;
using Outboxer.Providers;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.PostgreSql.Tests;

/// <summary>The store against a real PostgreSQL, with its statements prepared (the default).</summary>
public class PostgreSqlOutboxStoreTests : LockedClaimOutboxStoreConformanceTests
{
    private readonly string _schema = NewName("outboxer_test");
    private readonly List<string> _schemas = [];
    private readonly List<string> _roles = [];
    private readonly List<NpgsqlDataSource> _dataSources = [];
    private readonly NpgsqlDataSource _dataSource = PostgreSqlServer.CreateDataSource();

    public static TheoryData<string> InvalidSchemaNames => ["x; DROP TABLE y", "a\"b", "", new string('s', 64)];

    protected override string OptionsName => nameof(PostgreSqlOutboxStoreOptions);

    protected override string DatabaseParameterName => "dataSource";

    // As pg_indexes shows them after USING btree: the never-claimed messages, which claims read in id order; the leased ones, by the time
    // their lease ends; the dispatched ones, for cleanup; each ordering key's pending messages; the dead letters.
    protected override IReadOnlyDictionary<string, string> ExpectedIndexes { get; } = new Dictionary<string, string>
    {
        ["pending_ix"] = "(id) WHERE ((NOT dispatched) AND (locked_until IS NULL) AND (dead_lettered_at IS NULL))",
        ["leased_ix"] = "(locked_until) WHERE ((NOT dispatched) AND (locked_until IS NOT NULL) AND (dead_lettered_at IS NULL))",
        ["dispatched_at_ix"] = "(dispatched_at) WHERE dispatched",
        ["ordering_ix"] = "(ordering_key, id) WHERE ((NOT dispatched) AND (ordering_key IS NOT NULL))",
        ["dead_letters_ix"] = "(id) WHERE (dead_lettered_at IS NOT NULL)",
    };

    protected override TimeSpan LockTimeout => PostgreSqlServer.LockTimeout;

    // Up to 200 messages go in one INSERT ... SELECT FROM unnest(...); more in one binary COPY.
    protected override int RowsPerInsertStatement => 200;

    // jsonb cannot hold U+0000: refused before the server, whose error would abort the caller's transaction.
    protected override void MakeUnstorable(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        message.Headers["note"] = "nul \u0000 here";
    }

    /// <summary>Gets the <see cref="PostgreSqlOutboxStoreOptions.PrepareStatements"/> of every store the tests create.</summary>
    protected virtual bool PrepareStatements => true;

    protected override RelationalOutboxStore CreateStore(string table, bool createTableIfMissing) => new PostgreSqlOutboxStore(_dataSource, Options(table, createTableIfMissing));

    protected override RelationalOutboxStore CreateLockingStore() => new PostgreSqlOutboxStore(_dataSource, Options(OutboxTable));

    protected override RelationalOutboxStore CreateStoreOnDatabaseClock()
    {
        var options = Options(OutboxTable);
        options.UseDatabaseClock = true;
        return new PostgreSqlOutboxStore(_dataSource, options);
    }

    protected override string LeasesAnHourEarlierSql =>
        $"UPDATE {QuoteTable(OutboxTable)} SET locked_until = locked_until - interval '1 hour' WHERE locked_until IS NOT NULL";

    protected override RelationalOutboxStore CreateStoreWithoutDatabase() => new PostgreSqlOutboxStore(null!);

    protected override string CreateScript(string table) => PostgreSqlOutboxStore.GetCreateScript(Options(table));

    protected override string QuoteTable(string table) => $"\"{_schema}\".\"{table}\"";

    protected override string DropIndexStatement(string table, string index) => $"DROP INDEX \"{_schema}\".\"{index}\"";

    protected override Task<IReadOnlyDictionary<string, string>> ReadIndexesAsync(string table) => ReadIndexesAsync(_schema, table);

    protected override DateTimeOffset ReadInstant(DbDataReader reader, int ordinal) => reader.GetFieldValue<DateTimeOffset>(ordinal);

    protected override async Task<DbConnection> OpenConnectionAsync() => await PostgreSqlServer.OpenAsync(_dataSource);

    // Every PostgreSQL server has the database "postgres"; the tests' is another one.
    protected override async Task<DbConnection> OpenConnectionToAnotherDatabaseAsync()
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(PostgreSqlServer.ConnectionString) { Database = "postgres" }.ConnectionString);
        await connection.OpenAsync(Ct);
        return connection;
    }

    public override async ValueTask InitializeAsync()
    {
        await using (var connection = await PostgreSqlServer.OpenAsync(_dataSource))
        {
            await ExecuteAsync(connection, null, $"CREATE SCHEMA \"{_schema}\"");
        }

        _schemas.Add(_schema);
        await base.InitializeAsync();
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var dataSource in _dataSources)
        {
            await dataSource.DisposeAsync();
        }

        if (_schemas.Count > 0 || _roles.Count > 0)
        {
            await using var connection = await _dataSource.OpenConnectionAsync(CancellationToken.None);
            foreach (var schema in _schemas)
            {
                await Execute(connection, $"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            }

            foreach (var role in _roles)
            {
                await Execute(connection, $"DROP ROLE IF EXISTS \"{role}\"");
            }
        }

        await _dataSource.DisposeAsync();

        static async Task Execute(NpgsqlConnection connection, string sql)
        {
            await using var command = new NpgsqlCommand(sql, connection);
            await command.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Ten_stores_creating_the_table_at_once_in_a_schema_that_does_not_exist_yet_all_succeed()
    {
        // CREATE SCHEMA IF NOT EXISTS races as CREATE TABLE does. Three fresh schemas: one race does not always interleave the creators
        // badly enough to show a missing lock.
        for (var round = 0; round < 3; round++)
        {
            var schema = NewSchema();
            await TenStoresCreateAtOnceAsync(
                () => new PostgreSqlOutboxStore(_dataSource, Options(schema: schema)),
                () => ReadIndexesAsync(schema, "outbox_messages"),
                "outbox_messages");
        }
    }

    [Theory]
    [MemberData(nameof(InvalidSchemaNames))]
    public void A_schema_name_that_is_not_a_plain_identifier_is_rejected_by_option_name(string name)
    {
        var options = new PostgreSqlOutboxStoreOptions { SchemaName = name };

        var ex = Assert.Throws<ArgumentException>(() => new PostgreSqlOutboxStore(_dataSource, options));
        Assert.Equal("PostgreSqlOutboxStoreOptions.SchemaName", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => PostgreSqlOutboxStore.GetCreateScript(options));
        Assert.Equal("PostgreSqlOutboxStoreOptions.SchemaName", ex.ParamName);
    }

    [Fact]
    public void The_create_script_names_the_schema_the_table_and_the_partial_indexes()
    {
        var script = PostgreSqlOutboxStore.GetCreateScript(new PostgreSqlOutboxStoreOptions { SchemaName = "messaging", TableName = "events" });

        Assert.Contains("CREATE SCHEMA \"messaging\";", script, StringComparison.Ordinal);
        Assert.Contains("ADD COLUMN IF NOT EXISTS destination text NULL;", script, StringComparison.Ordinal);
        Assert.Contains("COMMENT ON TABLE \"messaging\".\"events\" IS 'Outboxer outbox table, layout version 2: destination column';", script, StringComparison.Ordinal);
        Assert.Contains("CREATE TABLE IF NOT EXISTS \"messaging\".\"events\"", script, StringComparison.Ordinal);
        Assert.Contains("CREATE INDEX IF NOT EXISTS \"events_pending_ix\" ON \"messaging\".\"events\" (id) WHERE NOT dispatched AND locked_until IS NULL AND dead_lettered_at IS NULL;", script, StringComparison.Ordinal);
        Assert.Contains("CREATE INDEX IF NOT EXISTS \"events_dispatched_at_ix\" ON \"messaging\".\"events\" (dispatched_at) WHERE dispatched;", script, StringComparison.Ordinal);
        Assert.Contains("\"public\".\"outbox_messages\"", PostgreSqlOutboxStore.GetCreateScript(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_columns_have_the_intended_types()
    {
        await CreateStore().MigrateAsync(Ct);

        var columns = new Dictionary<string, (string Type, string Nullable, string Identity)>();
        await using (var connection = await PostgreSqlServer.OpenAsync(_dataSource))
        await using (var command = new NpgsqlCommand(
            "SELECT column_name, data_type, is_nullable, is_identity FROM information_schema.columns WHERE table_schema = @schema AND table_name = 'outbox_messages'",
            connection))
        {
            command.Parameters.AddWithValue("schema", _schema);
            await using var reader = await command.ExecuteReaderAsync(Ct);
            while (await reader.ReadAsync(Ct))
            {
                columns[reader.GetString(0)] = (reader.GetString(1), reader.GetString(2), reader.GetString(3));
            }
        }

        Assert.Equal(("bigint", "NO", "YES"), columns["id"]);
        Assert.Equal(("uuid", "NO", "NO"), columns["message_id"]);
        Assert.Equal(("bytea", "NO", "NO"), columns["payload"]);
        Assert.Equal(("jsonb", "YES", "NO"), columns["options"]);
        Assert.Equal(("jsonb", "YES", "NO"), columns["headers"]);
        Assert.Equal(("timestamp with time zone", "NO", "NO"), columns["created_at"]);
        Assert.Equal(("boolean", "NO", "NO"), columns["dispatched"]);
        Assert.Equal(("timestamp with time zone", "YES", "NO"), columns["dispatched_at"]);
        Assert.Equal(("integer", "NO", "NO"), columns["attempts"]);
        Assert.Equal(("timestamp with time zone", "YES", "NO"), columns["locked_until"]);
        Assert.Equal(("text", "YES", "NO"), columns["last_error"]);
        Assert.Equal(("text", "YES", "NO"), columns["ordering_key"]);
        Assert.Equal(("timestamp with time zone", "YES", "NO"), columns["dead_lettered_at"]);
        Assert.Equal(("text", "YES", "NO"), columns["destination"]);
        Assert.Equal(("bigint", "YES", "NO"), columns["lease_token"]);
        Assert.Equal(("integer", "NO", "NO"), columns["uncertain_attempts"]);
        Assert.Equal(16, columns.Count);
    }

    [Fact]
    public async Task Options_and_headers_are_stored_as_real_jsonb_with_their_json_types()
    {
        var message = NewMessage("typed");
        message.Options["delay_seconds"] = 5;
        message.Options["exchange.durable"] = false;
        message.Options["exchange.name"] = "orders";
        message.Headers["nested"] = new Dictionary<string, object?> { ["list"] = new List<object?> { 1, "two" } };
        await CreateStore().AddWithinTransactionAsync(message, null, Ct);

        await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
        await using var command = new NpgsqlCommand(
            $"""
            SELECT jsonb_typeof(options->'delay_seconds'), jsonb_typeof(options->'exchange.durable'), jsonb_typeof(options->'exchange.name'),
                jsonb_typeof(headers->'nested'), jsonb_typeof(headers->'nested'->'list'), options @> '{"{"}"exchange.name": "orders"{"}"}'
            FROM "{_schema}".outbox_messages
            """,
            connection);
        await using var reader = await command.ExecuteReaderAsync(Ct);
        Assert.True(await reader.ReadAsync(Ct));
        Assert.Equal("number", reader.GetString(0));
        Assert.Equal("boolean", reader.GetString(1));
        Assert.Equal("string", reader.GetString(2));
        Assert.Equal("object", reader.GetString(3));
        Assert.Equal("array", reader.GetString(4));
        Assert.True(reader.GetBoolean(5));
    }

    [Fact]
    public async Task A_role_without_create_privileges_uses_an_existing_table_with_the_default_settings()
    {
        await CreateStore().MigrateAsync(Ct);
        var role = NewName("outboxer_app");
        await using (var connection = await OpenConnectionAsync())
        {
            await ExecuteAsync(connection, null, $"CREATE ROLE \"{role}\" LOGIN");
            _roles.Add(role);
            await ExecuteAsync(connection, null, $"GRANT USAGE ON SCHEMA \"{_schema}\" TO \"{role}\"");
            await ExecuteAsync(connection, null, $"GRANT SELECT, INSERT, UPDATE, DELETE ON \"{_schema}\".outbox_messages TO \"{role}\"");
        }

        var appDataSource = PostgreSqlServer.CreateDataSource(role);
        _dataSources.Add(appDataSource);
        var store = new PostgreSqlOutboxStore(appDataSource, Options());
        var id = await store.AddWithinTransactionAsync(NewMessage("least privilege"), null, Ct);
        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal(id, claimed.Id);
        await store.MarkDispatchedAsync([id], claimed.LeaseToken, T0, Ct);
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddDays(1), 10, Ct));

        // The role really cannot create: a store on a table that does not exist yet fails.
        var creator = new PostgreSqlOutboxStore(appDataSource, Options(table: "not_allowed"));
        var ex = await Assert.ThrowsAsync<OutboxException>(() => creator.MigrateAsync(Ct));
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, Assert.IsType<PostgresException>(ex.InnerException).SqlState);
    }

    [Fact]
    public async Task A_value_with_a_nul_character_is_rejected_before_it_can_abort_the_callers_transaction()
    {
        var store = CreateStore();
        await store.MigrateAsync(Ct);
        await using (var connection = await OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync(Ct))
        {
            await ExecuteAsync(connection, transaction, $"INSERT INTO {BusinessTable} (id, name) VALUES (1, 'kept')");
            var message = NewMessage("nul");
            message.Headers["trace"] = "a\0b";

            var ex = await Assert.ThrowsAsync<ArgumentException>(async () => await store.AddAsync(transaction, message, Ct));
            Assert.Equal("message", ex.ParamName);
            Assert.Contains("U+0000", ex.Message, StringComparison.Ordinal);

            // The transaction is still usable: the business row commits, and an escaped-looking but harmless text is stored.
            var lookalike = NewMessage("lookalike");
            lookalike.Headers["path"] = "C:\\u0000";
            await store.AddAsync(transaction, lookalike, Ct);
            await transaction.CommitAsync(Ct);
        }

        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal("C:\\u0000", claimed.Headers["path"]);
    }

    [Fact]
    public async Task Times_with_an_offset_are_stored_as_the_same_instant()
    {
        var store = CreateStore();
        var local = T0.ToOffset(TimeSpan.FromHours(2));
        var message = NewMessage("offset");
        message.CreatedAt = message.CreatedAt.ToOffset(TimeSpan.FromHours(-5));
        await store.AddWithinTransactionAsync(message, null, Ct);

        var claimed = Assert.Single(await store.ClaimAsync(10, local, local.AddSeconds(30), Ct));
        Assert.Equal(message.CreatedAt, claimed.CreatedAt);
        Assert.Equal(TimeSpan.Zero, claimed.CreatedAt.Offset);
        Assert.Empty(await store.ClaimAsync(10, T0.AddSeconds(29), T0.AddSeconds(59), Ct));
        await store.MarkDispatchedAsync([claimed.Id], claimed.LeaseToken, local, Ct);
        Assert.Equal(1, await store.RemoveDispatchedAsync(local.AddTicks(10), 10, Ct));
    }

    [Fact]
    public async Task A_store_over_a_slim_data_source_works_without_enabling_arrays_or_other_extra_types()
    {
        var slim = new NpgsqlSlimDataSourceBuilder(PostgreSqlServer.ConnectionString).Build();
        _dataSources.Add(slim);
        var store = new PostgreSqlOutboxStore(slim, Options());
        var message = NewMessage("slim");
        message.Headers["tenant"] = "acme";

        var id = await store.AddWithinTransactionAsync(message, null, Ct);
        var first = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal("acme", first.Headers["tenant"]);
        Assert.True(await store.ReleaseAsync(id, first.LeaseToken, T0.AddSeconds(1), "broker down", cancellationToken: Ct));
        var second = Assert.Single(await store.ClaimAsync(10, T0.AddSeconds(1), T0.AddSeconds(31), Ct));
        Assert.Equal(2, second.Attempts);
        Assert.Equal(1, await store.MarkDispatchedAsync([id], second.LeaseToken, T0.AddSeconds(2), Ct));
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddDays(1), 10, Ct));

        // A list goes row by row where arrays cannot be written; the refused array insert never reached the server.
        var many = Enumerable.Range(0, 3).Select(i => NewMessage($"slim {i}")).ToList();
        await using (var connection = await slim.OpenConnectionAsync(Ct))
        await using (var transaction = await connection.BeginTransactionAsync(Ct))
        {
            Assert.Equal(3, await store.AddRangeAsync(transaction, many, Ct));
            Assert.Equal(1, await store.AddRangeAsync(transaction, [NewMessage("slim again")], Ct));
            await transaction.CommitAsync(Ct);
        }

        Assert.All(many, m => Assert.True(m.Id > 0));
        Assert.Equal(4, (await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Count);
    }

    private static string NewName(string prefix) => $"{prefix}_{Guid.NewGuid():N}";

    // The suite moves time by hand (T0 and later), so its stores keep leases on the times it passes, not on the server's clock.
    private PostgreSqlOutboxStoreOptions Options(string table = "outbox_messages", bool create = true, string? schema = null) =>
        new() { SchemaName = schema ?? _schema, TableName = table, CreateTableIfMissing = create, PrepareStatements = PrepareStatements, UseDatabaseClock = false };

    private string NewSchema()
    {
        var schema = NewName("outboxer_fresh");
        _schemas.Add(schema);
        return schema;
    }

    // Index name -> its definition after USING btree ("(id) WHERE ..."), without the primary key.
    private async Task<IReadOnlyDictionary<string, string>> ReadIndexesAsync(string schema, string table)
    {
        const string Using = " USING btree ";
        var indexes = new Dictionary<string, string>();
        await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
        await using var command = new NpgsqlCommand(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = @schema AND tablename = @table AND indexname NOT LIKE '%pkey'",
            connection);
        command.Parameters.AddWithValue("schema", schema);
        command.Parameters.AddWithValue("table", table);
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            var definition = reader.GetString(1);
            indexes[reader.GetString(0)] = definition[(definition.IndexOf(Using, StringComparison.Ordinal) + Using.Length)..];
        }

        return indexes;
    }
}

/// <summary>Every store test again with unprepared statements, as behind a pooler in transaction mode.</summary>
public sealed class PostgreSqlOutboxStoreWithoutPreparedStatementsTests : PostgreSqlOutboxStoreTests
{
    protected override bool PrepareStatements => false;
}
