using System.Data.Common;
using Npgsql;
using Outboxer.Providers;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

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

    [Fact]
    public async Task Version_4_gives_the_notify_trigger_of_an_existing_table_its_quiet_condition_and_it_still_notifies()
    {
        // A version 3 table with the notify trigger and function as versions 1 to 3 created them (the function checks the quiet setting).
        var store = new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = _schema, TableName = TableName });
        var channel = store.NotificationChannel;
        var function = $"\"{_schema}\".\"{TableName}_notify\"";
        await using (var connection = await PostgreSqlServer.OpenAsync(_dataSource))
        {
            await ExecuteAsync(connection, Version1Script);
            await ExecuteAsync(connection, $"""
                ALTER TABLE {Table} ADD COLUMN destination text NULL;
                ALTER TABLE {Table} ADD COLUMN lease_token bigint NULL;
                COMMENT ON TABLE {Table} IS 'Outboxer outbox table, layout version 3: lease_token column (fenced claims)';
                CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $f$
                BEGIN
                    IF current_setting('outboxer.quiet_{channel["outboxer_".Length..]}', true) IS DISTINCT FROM 'on' THEN
                        PERFORM pg_notify('{channel}', '');
                    END IF;
                    RETURN NULL;
                END
                $f$;
                CREATE TRIGGER "{TableName}_notify" AFTER INSERT ON {Table} FOR EACH STATEMENT EXECUTE FUNCTION {function}();
                """);
        }

        Assert.Equal(3, (await store.GetSchemaStatusAsync(TestContext.Current.CancellationToken)).Version);
        Assert.True((await store.MigrateAsync(TestContext.Current.CancellationToken)).IsCurrent);

        await using var listener = await PostgreSqlServer.OpenAsync(_dataSource);
        await using (var command = new NpgsqlCommand($"SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = '{Table}'::regclass AND t.tgname = '{TableName}_notify'", (NpgsqlConnection)listener))
        {
            var definition = (string)(await command.ExecuteScalarAsync(TestContext.Current.CancellationToken))!;
            Assert.Contains("WHEN ((current_setting(", definition, StringComparison.Ordinal);
        }

        // A process that only enqueues still wakes the listeners.
        var notified = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ((NpgsqlConnection)listener).Notification += (_, _) => notified.TrySetResult();
        await ExecuteAsync(listener, $"LISTEN \"{channel}\"");
        var message = new OutboxMessage("after the migration") { MessageId = Guid.NewGuid(), CreatedAt = DateTimeOffset.UtcNow };
        await new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = _schema, TableName = TableName })
            .AddWithinTransactionAsync(message, null, TestContext.Current.CancellationToken);
        await ((NpgsqlConnection)listener).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        Assert.True(notified.Task.IsCompleted, "The migrated trigger sent no notification for a commit that was not quiet.");
    }

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
