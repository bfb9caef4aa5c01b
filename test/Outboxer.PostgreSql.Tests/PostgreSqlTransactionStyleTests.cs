using System.Data;
using System.Transactions;
using Npgsql;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.PostgreSql.Tests;

/// <summary>The ways .NET code holds a transaction: an ambient TransactionScope, and an IDbTransaction as Dapper passes it around.</summary>
public sealed class PostgreSqlTransactionStyleTests : IAsyncLifetime
{
    private readonly string _schema = $"outboxer_tx_{Guid.NewGuid():N}"[..28];
    private readonly NpgsqlDataSource _dataSource = PostgreSqlServer.CreateDataSource();
    private readonly RecordingPublisher _publisher = new();
    private Outbox _outbox = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        await using (var create = _dataSource.CreateCommand($"CREATE SCHEMA \"{_schema}\"; CREATE TABLE \"{_schema}\".orders (id int PRIMARY KEY)"))
        {
            await create.ExecuteNonQueryAsync(Ct);
        }

        _outbox = new Outbox(new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = _schema }), _publisher);
    }

    public async ValueTask DisposeAsync()
    {
        await _outbox.DisposeAsync();
        await using (var drop = _dataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{_schema}\" CASCADE"))
        {
            await drop.ExecuteNonQueryAsync();
        }

        await _dataSource.DisposeAsync();
    }

    [Fact]
    public async Task A_message_enqueued_in_a_completed_transaction_scope_is_published()
    {
        var message = new OutboxMessage("scoped");
        using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await using var connection = await _dataSource.OpenConnectionAsync(Ct);
            await InsertOrderAsync(connection, null, 1);
            await _outbox.EnqueueAsync(connection, message, Ct);
            scope.Complete();
        }

        Assert.Equal(1, await _outbox.DispatchPendingAsync(Ct));
        Assert.Equal(message.MessageId, Assert.Single(_publisher.Published).MessageId);
        Assert.Equal(1L, await CountOrdersAsync());
    }

    [Fact]
    public async Task A_message_enqueued_in_a_scope_that_is_not_completed_is_never_published()
    {
        using (new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await using var connection = await _dataSource.OpenConnectionAsync(Ct);
            await InsertOrderAsync(connection, null, 1);
            await _outbox.EnqueueAsync(connection, new OutboxMessage("abandoned"), Ct);
        }

        Assert.Equal(0, await _outbox.DispatchPendingAsync(Ct));
        Assert.Equal(0L, await CountOrdersAsync());
    }

    [Fact]
    public async Task Enqueueing_on_a_connection_without_an_ambient_transaction_is_refused_and_writes_nothing()
    {
        await using var connection = await _dataSource.OpenConnectionAsync(Ct);

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(async () => await _outbox.EnqueueAsync(connection, new OutboxMessage("loose"), Ct));

        Assert.Contains("TransactionScope", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, await _outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task Dapper_style_code_holding_an_IDbTransaction_commits_or_rolls_back_the_message_with_its_rows()
    {
        foreach (var commit in new[] { true, false })
        {
            await using var connection = await _dataSource.OpenConnectionAsync(Ct);
            IDbTransaction transaction = await connection.BeginTransactionAsync(Ct);
            await InsertOrderAsync(connection, (NpgsqlTransaction)transaction, commit ? 1 : 2);
            await _outbox.EnqueueAsync(transaction, new OutboxMessage(commit ? "kept" : "undone"), Ct);
            if (commit)
            {
                transaction.Commit();
            }
            else
            {
                transaction.Rollback();
            }

            transaction.Dispose();
        }

        Assert.Equal(1, await _outbox.DispatchPendingAsync(Ct));
        Assert.Equal("kept", System.Text.Encoding.UTF8.GetString(Assert.Single(_publisher.Published).Payload));
    }

    [Fact]
    public async Task Code_written_with_Dapper_enqueues_on_its_own_connection_and_transaction_and_commits_or_rolls_back_together()
    {
        foreach (var commit in new[] { true, false })
        {
            using IDbConnection connection = await _dataSource.OpenConnectionAsync(Ct);
            using var transaction = connection.BeginTransaction();
            await Dapper.SqlMapper.ExecuteAsync(connection, $"INSERT INTO \"{_schema}\".orders (id) VALUES (@Id)", new { Id = commit ? 10 : 20 }, transaction);
            await _outbox.EnqueueAsync(transaction, new OutboxMessage(commit ? "dapper kept" : "dapper undone"), Ct);
            if (commit)
            {
                transaction.Commit();
            }
            else
            {
                transaction.Rollback();
            }
        }

        Assert.Equal(1, await _outbox.DispatchPendingAsync(Ct));
        Assert.Equal("dapper kept", System.Text.Encoding.UTF8.GetString(Assert.Single(_publisher.Published).Payload));
        Assert.Equal(1L, await CountOrdersAsync());
    }

    private async Task InsertOrderAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, int id)
    {
        await using var insert = new NpgsqlCommand($"INSERT INTO \"{_schema}\".orders (id) VALUES ({id})", connection, transaction);
        await insert.ExecuteNonQueryAsync(Ct);
    }

    private async Task<long> CountOrdersAsync()
    {
        await using var count = _dataSource.CreateCommand($"SELECT count(*) FROM \"{_schema}\".orders");
        return (long)(await count.ExecuteScalarAsync(Ct))!;
    }
}
