using System.Data.Common;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Sqlite.Tests;

public sealed class SqliteOutboxStoreTests : OutboxStoreConformanceTests
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"outboxer-{Guid.NewGuid():N}.db");

    private string ConnectionString => new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false }.ToString();

    protected override string BusinessTable => "orders";

    protected override RelationalOutboxStore CreateStore() => new SqliteOutboxStore(ConnectionString);

    protected override async Task<DbConnection> OpenConnectionAsync()
    {
        var connection = new SqliteConnection(ConnectionString);
        await connection.OpenAsync(Ct);
        return connection;
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var file in new[] { _path, _path + "-wal", _path + "-shm" })
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

    [Theory]
    [InlineData("orders; DROP TABLE orders")]
    [InlineData("outbox\"")]
    [InlineData("1outbox")]
    [InlineData("")]
    public void A_table_name_that_is_not_a_plain_identifier_is_rejected_by_name(string name)
    {
        var ex = Assert.Throws<ArgumentException>(() => new SqliteOutboxStore(ConnectionString, new SqliteOutboxStoreOptions { TableName = name }));
        Assert.Equal("SqliteOutboxStoreOptions.TableName", ex.ParamName);
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
