using System.Data.Common;
using Npgsql;
using Outboxer.Providers;
using Outboxer.Testing;
using Outboxer.Testing.Servers;

namespace Outboxer.PostgreSql.Tests;

/// <summary>The shared migration suite against a real PostgreSQL, in a schema of its own per test.</summary>
public sealed class PostgreSqlSchemaMigrationTests : OutboxSchemaConformanceTests
{
    private const string TableName = "outbox_messages";
    private readonly string _schema = $"outboxer_migrate_{Guid.NewGuid():N}"[..40];
    private readonly NpgsqlDataSource _dataSource = PostgreSqlServer.CreateDataSource();

    protected override string Table => $"\"{_schema}\".\"{TableName}\"";

    protected override string Version1Script =>
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "layout-v1.sql")).Replace("{schema}", _schema, StringComparison.Ordinal).Replace("{table}", TableName, StringComparison.Ordinal);

    protected override RelationalOutboxStore CreateStore(bool migrate) =>
        new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = _schema, TableName = TableName, CreateTableIfMissing = migrate });

    protected override async Task<DbConnection> OpenConnectionAsync() => await PostgreSqlServer.OpenAsync(_dataSource);

    protected override string MarkVersionSql(int version) => $"COMMENT ON TABLE {Table} IS 'Outboxer outbox table, layout version {version}: from the future'";

    protected override string ValueOf(string column) => column switch
    {
        "message_id" => "CAST(@message_id AS uuid)",
        "options" or "headers" => $"CAST(@{column} AS jsonb)",
        _ => base.ValueOf(column),
    };

    public override async ValueTask DisposeAsync()
    {
        await using (var connection = await PostgreSqlServer.OpenAsync(_dataSource))
        {
            await ExecuteAsync(connection, $"DROP SCHEMA IF EXISTS \"{_schema}\" CASCADE");
        }

        await _dataSource.DisposeAsync();
        await base.DisposeAsync();
    }
}
