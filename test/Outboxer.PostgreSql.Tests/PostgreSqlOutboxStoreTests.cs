using System.Data.Common;
using System.Text;
using Npgsql;
using Outboxer.Providers;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.PostgreSql.Tests;

/// <summary>The store against a real PostgreSQL, with its statements prepared (the default).</summary>
public class PostgreSqlOutboxStoreTests : OutboxStoreConformanceTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    // How pg_indexes shows the index of the never-claimed messages, which claims read in id order.
    private const string PendingIndexEnd = "(id) WHERE ((NOT dispatched) AND (locked_until IS NULL) AND (dead_lettered_at IS NULL))";

    private readonly string _schema = NewName("outboxer_test");
    private readonly List<string> _schemas = [];
    private readonly List<string> _roles = [];
    private readonly List<NpgsqlDataSource> _dataSources = [];
    private readonly NpgsqlDataSource _dataSource = PostgreSqlServer.CreateDataSource();

    protected override string BusinessTable => $"\"{_schema}\".\"orders\"";

    public static TheoryData<string, string> InvalidNames => new()
    {
        { nameof(PostgreSqlOutboxStoreOptions.SchemaName), "x; DROP TABLE y" },
        { nameof(PostgreSqlOutboxStoreOptions.SchemaName), "a\"b" },
        { nameof(PostgreSqlOutboxStoreOptions.SchemaName), "" },
        { nameof(PostgreSqlOutboxStoreOptions.SchemaName), new string('s', 64) },
        { nameof(PostgreSqlOutboxStoreOptions.TableName), "x; DROP TABLE y" },
        { nameof(PostgreSqlOutboxStoreOptions.TableName), "a\"b" },
        { nameof(PostgreSqlOutboxStoreOptions.TableName), "" },
        { nameof(PostgreSqlOutboxStoreOptions.TableName), new string('t', 64) },
    };

    /// <summary>Gets the <see cref="PostgreSqlOutboxStoreOptions.PrepareStatements"/> of every store the tests create.</summary>
    protected virtual bool PrepareStatements => true;

    protected override IOutboxStore CreateStore() => new PostgreSqlOutboxStore(_dataSource, Options());

    protected override async Task<DbConnection> OpenConnectionAsync() => await PostgreSqlServer.OpenAsync(_dataSource);

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
    public async Task Ten_stores_creating_the_table_at_once_on_a_fresh_schema_all_succeed()
    {
        // Three fresh schemas: one race does not always interleave the creators badly enough to show a missing lock.
        for (var round = 0; round < 3; round++)
        {
            var schema = NewSchema();
            var stores = Enumerable.Range(0, 10).Select(_ => new PostgreSqlOutboxStore(_dataSource, Options(schema: schema))).ToArray();

            await Task.WhenAll(stores.Select(store => store.EnsureCreatedAsync(Ct)));

            var id = await stores[3].AddWithinTransactionAsync(NewMessage("after the race"), null, Ct);
            Assert.Equal(id, Assert.Single(await stores[7].ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
            Assert.Equal(5, (await ReadIndexesAsync(schema)).Count);
        }
    }

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public void A_schema_or_table_name_that_is_not_a_plain_identifier_is_rejected_by_option_name(string option, string name)
    {
        var options = option == nameof(PostgreSqlOutboxStoreOptions.SchemaName)
            ? new PostgreSqlOutboxStoreOptions { SchemaName = name }
            : new PostgreSqlOutboxStoreOptions { TableName = name };

        var ex = Assert.Throws<ArgumentException>(() => new PostgreSqlOutboxStore(_dataSource, options));
        Assert.Equal($"PostgreSqlOutboxStoreOptions.{option}", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => PostgreSqlOutboxStore.GetCreateScript(options));
        Assert.Equal($"PostgreSqlOutboxStoreOptions.{option}", ex.ParamName);
    }

    [Fact]
    public void A_null_data_source_is_rejected()
    {
        var ex = Assert.Throws<ArgumentNullException>(() => new PostgreSqlOutboxStore(null!));
        Assert.Equal("dataSource", ex.ParamName);
    }

    [Fact]
    public async Task The_create_script_applied_by_hand_makes_a_table_that_a_store_which_creates_nothing_uses()
    {
        var options = Options(table: "managed_outbox", create: false);
        await using (var connection = await OpenConnectionAsync())
        {
            await ExecuteAsync(connection, null, PostgreSqlOutboxStore.GetCreateScript(options));
            await ExecuteAsync(connection, null, PostgreSqlOutboxStore.GetCreateScript(options));
        }

        var store = new PostgreSqlOutboxStore(_dataSource, options);
        var id = await store.AddWithinTransactionAsync(NewMessage("managed"), null, Ct);
        Assert.Equal(id, Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
        await store.MarkDispatchedAsync([id], T0, Ct);
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddDays(1), 10, Ct));
    }

    [Fact]
    public void The_create_script_names_the_schema_the_table_and_the_partial_indexes()
    {
        var script = PostgreSqlOutboxStore.GetCreateScript(new PostgreSqlOutboxStoreOptions { SchemaName = "messaging", TableName = "events" });

        Assert.Contains("CREATE SCHEMA IF NOT EXISTS \"messaging\";", script, StringComparison.Ordinal);
        Assert.Contains("CREATE TABLE IF NOT EXISTS \"messaging\".\"events\"", script, StringComparison.Ordinal);
        Assert.Contains("CREATE INDEX IF NOT EXISTS \"events_pending_ix\" ON \"messaging\".\"events\" (id) WHERE NOT dispatched AND locked_until IS NULL AND dead_lettered_at IS NULL;", script, StringComparison.Ordinal);
        Assert.Contains("CREATE INDEX IF NOT EXISTS \"events_dispatched_at_ix\" ON \"messaging\".\"events\" (dispatched_at) WHERE dispatched;", script, StringComparison.Ordinal);
        Assert.Contains("\"public\".\"outbox_messages\"", PostgreSqlOutboxStore.GetCreateScript(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_store_that_creates_nothing_fails_on_a_missing_table_with_an_error_naming_it()
    {
        var store = new PostgreSqlOutboxStore(_dataSource, Options(table: "missing", create: false));

        var ex = await Assert.ThrowsAsync<OutboxException>(() => store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Contains($"\"{_schema}\".\"missing\"", ex.Message, StringComparison.Ordinal);
        Assert.IsType<PostgresException>(ex.InnerException);
        Assert.False(ex.IsTransient);
    }

    [Fact]
    public async Task The_columns_have_the_intended_types_and_the_partial_indexes_exist()
    {
        await CreateStore().EnsureCreatedAsync(Ct);

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
        Assert.Equal(13, columns.Count);

        var indexes = await ReadIndexesAsync(_schema);
        Assert.Equal(5, indexes.Count);
        Assert.EndsWith(PendingIndexEnd, indexes["outbox_messages_pending_ix"], StringComparison.Ordinal);
        Assert.EndsWith("(locked_until) WHERE ((NOT dispatched) AND (locked_until IS NOT NULL) AND (dead_lettered_at IS NULL))", indexes["outbox_messages_leased_ix"], StringComparison.Ordinal);
        Assert.EndsWith("(dispatched_at) WHERE dispatched", indexes["outbox_messages_dispatched_at_ix"], StringComparison.Ordinal);
        Assert.EndsWith("(ordering_key, id) WHERE ((NOT dispatched) AND (ordering_key IS NOT NULL))", indexes["outbox_messages_ordering_ix"], StringComparison.Ordinal);
        Assert.EndsWith("(id) WHERE (dead_lettered_at IS NOT NULL)", indexes["outbox_messages_dead_letters_ix"], StringComparison.Ordinal);
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
    public async Task A_claim_skips_rows_another_transaction_has_locked_instead_of_waiting_for_them()
    {
        var store = CreateStore();
        var ids = new List<long>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await store.AddWithinTransactionAsync(NewMessage($"m{i}"), null, Ct));
        }

        await using (var blocker = await PostgreSqlServer.OpenAsync(_dataSource))
        await using (var transaction = await blocker.BeginTransactionAsync(Ct))
        {
            await ExecuteAsync(blocker, transaction, $"SELECT id FROM \"{_schema}\".outbox_messages WHERE NOT dispatched ORDER BY id LIMIT 1 FOR UPDATE");

            // A claim that waited would hit the data source's lock_timeout and fail, rather than hang.
            var claimed = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);
            Assert.Equal(ids[1..], claimed.Select(m => m.Id));
            await transaction.RollbackAsync(Ct);
        }

        Assert.Equal(ids[0], Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
    }

    [Fact]
    public async Task A_message_enqueued_in_a_still_open_transaction_is_invisible_to_claims_until_commit()
    {
        var store = CreateStore();
        await store.EnsureCreatedAsync(Ct);
        await using var connection = await OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync(Ct);
        var id = await store.AddAsync(transaction, NewMessage("in flight"), Ct);

        Assert.Empty(await CreateStore().ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        await transaction.CommitAsync(Ct);

        Assert.Equal(id, Assert.Single(await CreateStore().ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
    }

    [Fact]
    public async Task Creating_the_table_again_does_not_wait_for_an_open_transaction_that_writes_to_it()
    {
        var store = CreateStore();
        await using var connection = await OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync(Ct);
        await store.AddAsync(transaction, NewMessage("holding a row lock"), Ct);

        // CREATE INDEX IF NOT EXISTS would wait for this transaction's lock on the table (until lock_timeout fails it).
        await CreateStore().EnsureCreatedAsync(Ct);
        await transaction.CommitAsync(Ct);
    }

    [Fact]
    public async Task Two_stores_with_different_tables_in_one_schema_both_work_and_each_has_its_own_indexes()
    {
        var first = new PostgreSqlOutboxStore(_dataSource, Options(table: "outbox_a"));
        var second = new PostgreSqlOutboxStore(_dataSource, Options(table: "outbox_b"));

        var a = await first.AddWithinTransactionAsync(NewMessage("a"), null, Ct);
        var b = await second.AddWithinTransactionAsync(NewMessage("b"), null, Ct);

        Assert.Equal("a", Encoding.UTF8.GetString(Assert.Single(await first.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Payload));
        Assert.Equal("b", Encoding.UTF8.GetString(Assert.Single(await second.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Payload));
        Assert.Equal(1, a);
        Assert.Equal(1, b);
        var indexes = await ReadIndexesAsync(_schema);
        Assert.Equal(
            ["outbox_a_dead_letters_ix", "outbox_a_dispatched_at_ix", "outbox_a_leased_ix", "outbox_a_ordering_ix", "outbox_a_pending_ix", "outbox_b_dead_letters_ix", "outbox_b_dispatched_at_ix", "outbox_b_leased_ix", "outbox_b_ordering_ix", "outbox_b_pending_ix"],
            indexes.Keys.Order());
        Assert.Contains("ON " + _schema + ".outbox_a ", indexes["outbox_a_pending_ix"], StringComparison.Ordinal);
        Assert.Contains("ON " + _schema + ".outbox_b ", indexes["outbox_b_pending_ix"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_table_name_of_the_longest_allowed_length_still_gets_distinct_indexes()
    {
        var table = new string('t', SqlIdentifier.MaxLength);
        var store = new PostgreSqlOutboxStore(_dataSource, Options(table: table));
        await store.EnsureCreatedAsync(Ct);

        var indexes = await ReadIndexesAsync(_schema);
        Assert.Equal(5, indexes.Count);
        Assert.All(indexes.Keys, name => Assert.True(name.Length <= SqlIdentifier.MaxLength, name));
        Assert.Single(indexes, i => i.Key.EndsWith("_pending_ix", StringComparison.Ordinal) && i.Value.EndsWith(PendingIndexEnd, StringComparison.Ordinal));
        Assert.Single(indexes, i => i.Key.EndsWith("_dispatched_at_ix", StringComparison.Ordinal) && i.Value.EndsWith("(dispatched_at) WHERE dispatched", StringComparison.Ordinal));

        // Running the check again finds everything in place instead of creating anything.
        await new PostgreSqlOutboxStore(_dataSource, Options(table: table)).EnsureCreatedAsync(Ct);
        Assert.Equal(5, (await ReadIndexesAsync(_schema)).Count);
    }

    [Fact]
    public async Task A_role_without_create_privileges_uses_an_existing_table_with_the_default_settings()
    {
        await CreateStore().EnsureCreatedAsync(Ct);
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
        Assert.Equal(id, Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
        await store.MarkDispatchedAsync([id], T0, Ct);
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddDays(1), 10, Ct));

        // The role really cannot create: a store on a table that does not exist yet fails.
        var creator = new PostgreSqlOutboxStore(appDataSource, Options(table: "not_allowed"));
        var ex = await Assert.ThrowsAsync<OutboxException>(() => creator.EnsureCreatedAsync(Ct));
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, Assert.IsType<PostgresException>(ex.InnerException).SqlState);
    }

    [Fact]
    public async Task A_value_with_a_nul_character_is_rejected_before_it_can_abort_the_callers_transaction()
    {
        var store = CreateStore();
        await store.EnsureCreatedAsync(Ct);
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
    public async Task A_failure_text_with_a_nul_character_or_half_a_surrogate_pair_is_still_recorded()
    {
        var store = CreateStore();
        var id = await store.AddWithinTransactionAsync(NewMessage("flaky"), null, Ct);
        Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));

        // 3999 characters, then a surrogate pair that the 4000-character limit cuts in half.
        var error = "broker\0down \uDE00" + new string('x', 3986) + "\U0001F600";
        await store.ReleaseAsync(id, T0.AddSeconds(5), error, Ct);

        await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
        await using var command = new NpgsqlCommand($"SELECT last_error, locked_until FROM \"{_schema}\".outbox_messages WHERE id = {id}", connection);
        await using var reader = await command.ExecuteReaderAsync(Ct);
        Assert.True(await reader.ReadAsync(Ct));
        Assert.Equal("broker\uFFFDdown \uFFFD" + new string('x', 3986) + "\uFFFD", reader.GetString(0));
        Assert.Equal(T0.AddSeconds(5), reader.GetFieldValue<DateTimeOffset>(1));
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
        await store.MarkDispatchedAsync([claimed.Id], local, Ct);
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
        Assert.Equal("acme", Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Headers["tenant"]);
        await store.ReleaseAsync(id, T0.AddSeconds(1), "broker down", Ct);
        Assert.Equal(2, Assert.Single(await store.ClaimAsync(10, T0.AddSeconds(1), T0.AddSeconds(31), Ct)).Attempts);
        await store.MarkDispatchedAsync([id], T0.AddSeconds(2), Ct);
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddDays(1), 10, Ct));
    }

    private static string NewName(string prefix) => $"{prefix}_{Guid.NewGuid():N}";

    private PostgreSqlOutboxStoreOptions Options(string table = "outbox_messages", bool create = true, string? schema = null) =>
        new() { SchemaName = schema ?? _schema, TableName = table, CreateTableIfMissing = create, PrepareStatements = PrepareStatements };

    private string NewSchema()
    {
        var schema = NewName("outboxer_fresh");
        _schemas.Add(schema);
        return schema;
    }

    private async Task<Dictionary<string, string>> ReadIndexesAsync(string schema)
    {
        var indexes = new Dictionary<string, string>();
        await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
        await using var command = new NpgsqlCommand("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = @schema AND indexname NOT LIKE '%pkey'", connection);
        command.Parameters.AddWithValue("schema", schema);
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            indexes[reader.GetString(0)] = reader.GetString(1);
        }

        return indexes;
    }
}

/// <summary>Every store test again with unprepared statements, as behind a pooler in transaction mode.</summary>
public sealed class PostgreSqlOutboxStoreWithoutPreparedStatementsTests : PostgreSqlOutboxStoreTests
{
    protected override bool PrepareStatements => false;
}
