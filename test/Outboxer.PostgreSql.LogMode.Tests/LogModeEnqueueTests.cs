using System.Data;
using System.Diagnostics;
using System.Transactions;
using Npgsql;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.PostgreSql.LogMode.Tests;

/// <summary>The enqueue side of the log mode: every path of <see cref="Outbox"/> writes into the log, checked as a table store checks.</summary>
public sealed class LogModeEnqueueTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Every_enqueue_path_is_relayed_and_no_rolled_back_message_ever_is()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var publisher = new RecordingPublisher();
        var relay = await world.StartRelayAsync(publisher);
        var outbox = world.Outbox;
        var committed = new List<string>();
        var rolledBack = new List<string>();

        // A DbTransaction, committed and rolled back.
        await using (var connection = await world.DataSource.OpenConnectionAsync(Ct))
        {
            await using (var transaction = await connection.BeginTransactionAsync(Ct))
            {
                await outbox.EnqueueAsync(transaction, LogModeWorld.Message("transaction"), Ct);
                await outbox.EnqueueAsync((IDbTransaction)transaction, LogModeWorld.Message("idbtransaction"), Ct);
                await transaction.CommitAsync(Ct);
                committed.AddRange(["transaction", "idbtransaction"]);
            }

            await using (var transaction = await connection.BeginTransactionAsync(Ct))
            {
                await outbox.EnqueueAsync(transaction, LogModeWorld.Message("rolled-back"), Ct);
                await transaction.RollbackAsync(Ct);
                rolledBack.Add("rolled-back");
            }

            // EnqueueManyAsync: one round trip.
            await using (var transaction = await connection.BeginTransactionAsync(Ct))
            {
                var many = Enumerable.Range(0, 5).Select(i => LogModeWorld.Message($"many-{i}")).ToList();
                Assert.Equal(5, await outbox.EnqueueManyAsync(transaction, many, Ct));
                Assert.True(many.Select(m => m.Id).SequenceEqual(many.Select(m => m.Id).Order()), "the log positions follow the order of the messages");
                Assert.All(many, m => Assert.NotEqual(0, m.Id));
                await transaction.CommitAsync(Ct);
                committed.AddRange(many.Select(m => (string)m.Headers["name"]!));
            }
        }

        // A connection enlisted in a TransactionScope, completed and not.
        using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await using var connection = await world.DataSource.OpenConnectionAsync(Ct);
            await outbox.EnqueueAsync(connection, LogModeWorld.Message("scope"), Ct);
            scope.Complete();
            committed.Add("scope");
        }

        using (new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await using var connection = await world.DataSource.OpenConnectionAsync(Ct);
            await outbox.EnqueueAsync(connection, LogModeWorld.Message("scope-not-completed"), Ct);
            rolledBack.Add("scope-not-completed");
        }

        // SendAsync and SendWithinTransactionAsync, whose work succeeds or throws.
        Assert.NotEqual(0, await outbox.SendAsync(LogModeWorld.Message("send"), Ct));
        committed.Add("send");
        await outbox.SendWithinTransactionAsync(LogModeWorld.Message("send-within"), async (transaction, ct) =>
        {
            await using var command = new NpgsqlCommand("SELECT 1", (NpgsqlConnection)transaction.Connection!, (NpgsqlTransaction)transaction);
            await command.ExecuteScalarAsync(ct);
        }, Ct);
        committed.Add("send-within");
        await Assert.ThrowsAsync<InvalidOperationException>(() => outbox.SendWithinTransactionAsync(
            LogModeWorld.Message("send-within-failed"), (_, _) => throw new InvalidOperationException("the work failed"), Ct));
        rolledBack.Add("send-within-failed");

        // A last message: once it is published, everything committed before it was decoded (commit order).
        await outbox.SendAsync(LogModeWorld.Message("last"), Ct);
        committed.Add("last");

        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count >= committed.Count, $"the {committed.Count} committed messages are published");
        await LogModeWorld.WaitUntilAsync(() => relay.AcknowledgedPosition.ToString() != "0/0", "the relay acknowledges");
        var names = publisher.Published.Select(m => (string)m.Headers["name"]!).ToList();
        Assert.Equal(committed.Order(), names.Order());
        Assert.Empty(names.Intersect(rolledBack));
        Assert.Equal(0, relay.DeadLettered);
    }

    [Fact]
    public async Task Every_field_of_a_message_survives_the_log_unchanged()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var publisher = new RecordingPublisher();
        await world.StartRelayAsync(publisher);

        var payload = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        var message = new OutboxMessage(payload)
        {
            MessageId = Guid.CreateVersion7(),
            CreatedAt = new DateTimeOffset(2026, 12, 2, 3, 4, 5, TimeSpan.FromHours(2)).AddTicks(1234567),
            OrderingKey = "customer-😀-42",
            Destination = "orders.exchange",
        };
        message.Options["exchange"] = "orders";
        message.Options["mandatory"] = true;
        message.Options["priority"] = 7L;
        message.Headers["text"] = "héllo \"quoted\" \\ back";
        message.Headers["long"] = long.MaxValue;
        message.Headers["double"] = 2.5;
        message.Headers["bool"] = false;
        message.Headers["null"] = null;
        message.Headers["empty"] = string.Empty;

        using var source = new ActivitySource("Outboxer.LogMode.Tests");
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is "Outboxer.LogMode.Tests" or "Outboxer",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);
        long id;
        string traceId;
        using (var request = source.StartActivity("request"))
        {
            traceId = request!.TraceId.ToString();
            id = await world.Outbox.SendAsync(message, Ct);
        }

        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 1, "the message is published");
        var published = publisher.Published[0];
        Assert.Equal(id, published.Id);
        Assert.Equal(message.MessageId, published.MessageId);
        Assert.Equal(payload, published.Payload);
        Assert.Equal(message.CreatedAt.UtcTicks, published.CreatedAt.UtcTicks);
        Assert.Equal("customer-😀-42", published.OrderingKey);
        Assert.Equal("orders.exchange", published.Destination);
        Assert.Equal("orders", published.Options["exchange"]);
        Assert.Equal(true, published.Options["mandatory"]);
        Assert.Equal(7L, published.Options["priority"]);
        Assert.Equal("héllo \"quoted\" \\ back", published.Headers["text"]);
        Assert.Equal(long.MaxValue, published.Headers["long"]);
        Assert.Equal(2.5, published.Headers["double"]);
        Assert.Equal(false, published.Headers["bool"]);
        Assert.Null(published.Headers["null"]);
        Assert.Equal(string.Empty, published.Headers["empty"]);
        Assert.Contains(traceId, (string)published.Headers["traceparent"]!, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bad_input_is_refused_before_the_server_and_the_callers_transaction_stays_usable()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var publisher = new RecordingPublisher();
        await world.StartRelayAsync(publisher);

        await using var connection = await world.DataSource.OpenConnectionAsync(Ct);
        await using var transaction = await connection.BeginTransactionAsync(Ct);

        var nulInHeader = LogModeWorld.Message("nul-header");
        nulInHeader.Headers["bad"] = "a\0b";
        var nul = await Assert.ThrowsAsync<ArgumentException>(() => world.Outbox.EnqueueAsync(transaction, nulInHeader, Ct).AsTask());
        Assert.Contains("U+0000", nul.Message, StringComparison.Ordinal);

        var nulInKey = LogModeWorld.Message("nul-key");
        nulInKey.Options["a\0b"] = "value";
        await Assert.ThrowsAsync<ArgumentException>(() => world.Outbox.EnqueueAsync(transaction, nulInKey, Ct).AsTask());


        var unsupported = LogModeWorld.Message("unsupported");
        unsupported.Headers["bad"] = new object();
        await Assert.ThrowsAsync<ArgumentException>(() => world.Outbox.EnqueueManyAsync(transaction, [LogModeWorld.Message("fine"), unsupported], Ct).AsTask());

        Assert.Throws<ArgumentException>(() => new OutboxMessage("x") { OrderingKey = "a\0b" });
        Assert.Throws<ArgumentException>(() => new OutboxMessage("x") { OrderingKey = "\uD800" });
        Assert.Throws<ArgumentException>(() => new OutboxMessage("x") { Destination = "\uDC00" });

        // Nothing reached the server: the transaction still works and commits the one good message.
        await using (var command = new NpgsqlCommand("SELECT 1", connection, transaction))
        {
            Assert.Equal(1, await command.ExecuteScalarAsync(Ct));
        }

        await world.Outbox.EnqueueAsync(transaction, LogModeWorld.Message("good"), Ct);
        await transaction.CommitAsync(Ct);
        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 1, "the good message is published");
        Assert.Equal("good", publisher.Published[0].Headers["name"]);

        // A completed transaction is refused too.
        await Assert.ThrowsAsync<ArgumentException>(() => world.Outbox.EnqueueAsync(transaction, LogModeWorld.Message("late"), Ct).AsTask());
    }

    [Fact]
    public async Task A_transaction_on_another_database_is_refused()
    {
        var builder = new NpgsqlConnectionStringBuilder(Testing.Servers.PostgreSqlServer.ConnectionString) { Database = "postgres" };
        await using var other = NpgsqlDataSource.Create(builder.ConnectionString);
        await using var world = await LogModeWorld.CreateAsync(setup: false);
        await using var connection = await other.OpenConnectionAsync(Ct);
        await using var transaction = await connection.BeginTransactionAsync(Ct);
        var refused = await Assert.ThrowsAsync<ArgumentException>(() => world.Outbox.EnqueueAsync(transaction, LogModeWorld.Message("elsewhere"), Ct).AsTask());
        Assert.Contains("'postgres'", refused.Message, StringComparison.Ordinal);
    }
}
