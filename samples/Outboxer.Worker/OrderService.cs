using System.Text.Json;
using Npgsql;
using Outboxer.RabbitMQ;

namespace Outboxer.Worker;

/// <summary>The README's enqueue snippets: an order and its message in one transaction, and the two Go-style ways.</summary>
public sealed class OrderService(NpgsqlDataSource dataSource, Outbox outbox)
{
    public async Task PlaceOrderAsync(int orderId, decimal total, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(ct);

        await using (var insert = new NpgsqlCommand("INSERT INTO orders (id, total) VALUES ($1, $2)", connection, transaction))
        {
            insert.Parameters.AddWithValue(orderId);
            insert.Parameters.AddWithValue(total);
            await insert.ExecuteNonQueryAsync(ct);
        }

        var message = new OutboxMessage(JsonSerializer.SerializeToUtf8Bytes(new OrderPlaced(orderId, total)));
        message.Options[RabbitMQOptionKeys.ExchangeName] = "shop";            // "exchange.name"
        message.Options[RabbitMQOptionKeys.RoutingKey] = "orders.placed";     // "routing_key"
        message.Headers["event-type"] = "OrderPlaced";
        await outbox.EnqueueAsync(transaction, message, ct);                  // same transaction

        await transaction.CommitAsync(ct);                                    // the message exists only if this commits
    }

    public async Task OtherWaysAsync(OutboxMessage message, CancellationToken ct)
    {
        // Send: the outbox's own connection and transaction.
        await outbox.SendAsync(new OutboxMessage("hello"), ct);

        // Send within a transaction: the outbox opens the transaction, runs your statements, inserts the message, commits.
        // If your callback throws, everything is rolled back and your exception is rethrown unchanged.
        await outbox.SendWithinTransactionAsync(message, async (transaction, ct) =>
        {
            await using var command = transaction.Connection!.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = "UPDATE stock SET count = count - 1 WHERE sku = 'A1'";
            await command.ExecuteNonQueryAsync(ct);
        }, ct);
    }

    public async Task ObserveAsync(CancellationToken ct)
    {
        await foreach (var sent in outbox.Dispatched.ReadAllAsync(ct))
        {
            Console.WriteLine($"{sent.Id} {sent.MessageId} at {sent.DispatchedAt}");
        }
    }
}

public sealed record OrderPlaced(int OrderId, decimal Total);
