using System.Data.Common;
using MySqlConnector;
using Outboxer.Providers;
using Outboxer.Testing;
using Outboxer.Testing.Servers;

namespace Outboxer.MySql.Tests;

/// <summary>The shared migration suite against a real MariaDB, with a table of its own per test.</summary>
public sealed class MySqlSchemaMigrationTests : OutboxSchemaConformanceTests
{
    private readonly string _table = $"outbox_migrate_{Guid.NewGuid():N}"[..40];
    private readonly MySqlDataSource _dataSource = MySqlServer.CreateDataSource();

    protected override string Table => $"`{_table}`";

    protected override string Version1Script =>
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "layout-v1.sql")).Replace("{table}", _table, StringComparison.Ordinal);

    protected override RelationalOutboxStore CreateStore(bool migrate) =>
        new MySqlOutboxStore(_dataSource, new MySqlOutboxStoreOptions { TableName = _table, CreateTableIfMissing = migrate });

    protected override async Task<DbConnection> OpenConnectionAsync() => await MySqlServer.OpenAsync(_dataSource);

    protected override string MarkVersionSql(int version) => $"ALTER TABLE {Table} COMMENT = 'Outboxer outbox table, layout version {version}: from the future'";

    // DATETIME holds UTC wall-clock time without a zone.
    protected override object Timestamp(DateTimeOffset value) => DateTime.SpecifyKind(value.UtcDateTime, DateTimeKind.Unspecified);

    public override async ValueTask DisposeAsync()
    {
        await using (var connection = await MySqlServer.OpenAsync(_dataSource))
        {
            await ExecuteAsync(connection, $"DROP TABLE IF EXISTS {Table}");
        }

        await _dataSource.DisposeAsync();
        await base.DisposeAsync();
    }
}
