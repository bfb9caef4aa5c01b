using System.Data.Common;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;
using Outboxer.Testing;

namespace Outboxer.Sqlite.Tests;

/// <summary>The shared migration suite against SQLite, with a database file of its own per test.</summary>
public sealed class SqliteSchemaMigrationTests : OutboxSchemaConformanceTests
{
    private const string TableName = "outbox_messages";
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"outboxer-migrate-{Guid.NewGuid():N}.db");

    private string ConnectionString => new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString();

    protected override string Table => $"\"{TableName}\"";

    protected override string Version1Script =>
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "layout-v1.sql")).Replace("{table}", TableName, StringComparison.Ordinal);

    protected override RelationalOutboxStore CreateStore(bool migrate) =>
        new SqliteOutboxStore(ConnectionString, new SqliteOutboxStoreOptions { TableName = TableName, CreateTableIfMissing = migrate });

    protected override async Task<DbConnection> OpenConnectionAsync()
    {
        var connection = new SqliteConnection(ConnectionString);
        await connection.OpenAsync(Ct);
        return connection;
    }

    protected override string MarkVersionSql(int version) =>
        $"INSERT INTO \"{TableName}_versions\" (version, description) VALUES ({version}, 'from the future')";

    // Times are UTC ticks.
    protected override object Timestamp(DateTimeOffset value) => value.UtcTicks;

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var file in new[] { _path, _path + "-wal", _path + "-shm" })
        {
            File.Delete(file);
        }
    }
}
