using System.Data.Common;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Sqlite.Tests;

/// <summary>The store against a SQLite file of each test's own.</summary>
/// <remarks>
/// It derives from <see cref="OutboxStoreConformanceTests"/>, not <see cref="RowLockingOutboxStoreConformanceTests"/>: SQLite lets one
/// transaction write at a time, so there are no row locks for claims to skip.
/// </remarks>
public sealed class SqliteOutboxStoreTests : OutboxStoreConformanceTests
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"outboxer-{Guid.NewGuid():N}.db");
    private readonly List<string> _others = [];

    protected override string OptionsName => nameof(SqliteOutboxStoreOptions);

    protected override string DatabaseParameterName => "connectionString";

    protected override IReadOnlyDictionary<string, string> ExpectedIndexes { get; } = new Dictionary<string, string>
    {
        ["pending"] = "(id) WHERE dispatched = 0",
        ["ordering"] = "(ordering_key, id) WHERE dispatched = 0 AND ordering_key IS NOT NULL",
        ["dead_letters"] = "(id) WHERE dead_lettered_at IS NOT NULL",
        ["dispatched_at"] = "(dispatched_at) WHERE dispatched = 1",
    };

    // SQLite keeps names of any length whole, and the store names each index <table>_<suffix> however long the table name is.
    protected override int? MaxIndexNameLength => null;

    private string ConnectionString => new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false }.ToString();

    protected override RelationalOutboxStore CreateStore(string table, bool createTableIfMissing) =>
        new SqliteOutboxStore(ConnectionString, new SqliteOutboxStoreOptions { TableName = table, CreateTableIfMissing = createTableIfMissing });

    protected override RelationalOutboxStore CreateStoreWithoutDatabase() => new SqliteOutboxStore(null!);

    protected override string CreateScript(string table) => SqliteOutboxStore.GetCreateScript(new SqliteOutboxStoreOptions { TableName = table });

    protected override string QuoteTable(string table) => $"\"{table}\"";

    protected override string DropIndexStatement(string table, string index) => $"DROP INDEX \"{index}\"";

    // Index name -> what follows ON "<table>" in the CREATE INDEX statement SQLite keeps ("(id) WHERE dispatched = 0").
    protected override async Task<IReadOnlyDictionary<string, string>> ReadIndexesAsync(string table)
    {
        var indexes = new Dictionary<string, string>();
        await using var connection = await OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = $table AND sql IS NOT NULL";
        command.Parameters.Add(new SqliteParameter("$table", table));
        await using var reader = await command.ExecuteReaderAsync(Ct);
        var on = $"ON \"{table}\" ";
        while (await reader.ReadAsync(Ct))
        {
            var sql = reader.GetString(1);
            indexes[reader.GetString(0)] = sql[(sql.IndexOf(on, StringComparison.Ordinal) + on.Length)..];
        }

        return indexes;
    }

    // Times are UTC ticks.
    protected override DateTimeOffset ReadInstant(DbDataReader reader, int ordinal) => new(reader.GetInt64(ordinal), TimeSpan.Zero);

    protected override async Task<DbConnection> OpenConnectionAsync()
    {
        var connection = new SqliteConnection(ConnectionString);
        await connection.OpenAsync(Ct);
        return connection;
    }

    // Another file: SQLite calls every database "main".
    protected override async Task<DbConnection> OpenConnectionToAnotherDatabaseAsync()
    {
        var other = _path + ".other.db";
        _others.Add(other);
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = other, Pooling = false }.ToString());
        await connection.OpenAsync(Ct);
        return connection;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var file in new[] { _path, _path + "-wal", _path + "-shm" }.Concat(_others))
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task A_custom_table_name_is_used_and_created_on_first_use()
    {
        var store = new SqliteOutboxStore(ConnectionString, new SqliteOutboxStoreOptions { TableName = "my_outbox" });
        await store.AddWithinTransactionAsync(NewMessage("x"), null, Ct);

        await using var connection = await OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM my_outbox";
        Assert.Equal(1L, await command.ExecuteScalarAsync(Ct));
    }

    [Fact]
    public void The_create_script_is_available_for_teams_that_manage_their_schema()
    {
        var script = SqliteOutboxStore.GetCreateScript(new SqliteOutboxStoreOptions { TableName = "events" });
        Assert.Contains("CREATE TABLE IF NOT EXISTS \"events\"", script, StringComparison.Ordinal);
        Assert.Contains("WHERE dispatched = 0", script, StringComparison.Ordinal);
    }
}

public sealed class SqliteAmbientTransactionTests
{
    [Fact]
    public async Task Sqlite_refuses_to_enqueue_in_a_transaction_scope_because_its_connections_do_not_enlist()
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-{Guid.NewGuid():N}.db");
        try
        {
            await using var outbox = new Outbox(new SqliteOutboxStore($"Data Source={path}"), new RecordingPublisher());
            using var scope = new System.Transactions.TransactionScope(System.Transactions.TransactionScopeAsyncFlowOption.Enabled);
            await using var connection = new SqliteConnection($"Data Source={path}");
            await connection.OpenAsync(TestContext.Current.CancellationToken);

            await Assert.ThrowsAsync<NotSupportedException>(async () => await outbox.EnqueueAsync(connection, new OutboxMessage("x"), TestContext.Current.CancellationToken));
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            File.Delete(path);
        }
    }
}
