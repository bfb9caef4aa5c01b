// Two dispatcher processes on one PostgreSQL outbox table, relaying to RabbitMQ, written only against the public API.
//
//   dotnet Outboxer.TwoDispatchers.dll <postgres connection string> <amqp uri> [messages]
//
// The program enqueues messages inside its own Npgsql transactions (rolling every fourth back), starts two copies of itself
// as relay processes (`relay` mode: a dispatcher only), consumes the RabbitMQ queue the messages are routed to with the Go
// seed's option keys, and exits 0 only when the queue received exactly the committed messages, each once.
using System.Diagnostics;
using System.Text;
using Npgsql;
using Outboxer;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;
using RabbitMQ.Client;

const string Schema = "outboxer_two_dispatchers";
const string Exchange = "outboxer.two-dispatchers";
const string Queue = "outboxer.two-dispatchers.invoices";

if (args is ["relay", var relayPostgres, var relayRabbit])
{
    return await RelayAsync(relayPostgres, relayRabbit);
}

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Outboxer.TwoDispatchers <postgres connection string> <amqp uri> [messages]");
    return 2;
}

var (postgres, rabbitUri) = (args[0], args[1]);
var count = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 1000;
using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
var ct = timeout.Token;

await using var dataSource = NpgsqlDataSource.Create(postgres);
await using (var reset = dataSource.CreateCommand($"DROP SCHEMA IF EXISTS {Schema} CASCADE; CREATE SCHEMA {Schema}; CREATE TABLE {Schema}.invoices (id int PRIMARY KEY, amount numeric NOT NULL)"))
{
    await reset.ExecuteNonQueryAsync(ct);
}

var store = new PostgreSqlOutboxStore(dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = Schema });
await store.MigrateAsync(ct);

var factory = new ConnectionFactory { Uri = new Uri(rabbitUri), ClientProvidedName = "two-dispatchers-consumer" };
await using var rabbit = await factory.CreateConnectionAsync(ct);
await using var channel = await rabbit.CreateChannelAsync(cancellationToken: ct);
await channel.ExchangeDeclareAsync(Exchange, ExchangeType.Topic, durable: true, cancellationToken: ct);
await channel.QueueDeclareAsync(Queue, durable: true, exclusive: false, autoDelete: false, cancellationToken: ct);
await channel.QueueBindAsync(Queue, Exchange, "invoices.*", cancellationToken: ct);
await channel.QueuePurgeAsync(Queue, ct);

// Two dispatchers in two processes, started before the messages so that both take part.
var self = Environment.ProcessPath!;
var entry = typeof(Program).Assembly.Location;
var relays = Enumerable.Range(0, 2).Select(_ => StartRelay(self, entry, postgres, rabbitUri)).ToArray();

// Enqueue, as the application would: its own transaction, its own rows, the outbox message in the same transaction.
// This process never starts its dispatcher: only the two relay processes publish.
await using var publisher = new RabbitMQPublisher(rabbit);
await using var enqueuer = new Outbox(store, publisher);
var committed = new HashSet<string>();
var rolledBack = new HashSet<string>();
for (var i = 0; i < count; i++)
{
    await using var connection = await dataSource.OpenConnectionAsync(ct);
    await using var transaction = await connection.BeginTransactionAsync(ct);
    await using (var insert = new NpgsqlCommand($"INSERT INTO {Schema}.invoices (id, amount) VALUES ($1, $2)", connection, transaction))
    {
        insert.Parameters.AddWithValue(i);
        insert.Parameters.AddWithValue(i * 1.5m);
        await insert.ExecuteNonQueryAsync(ct);
    }

    var message = new OutboxMessage($"invoice {i}");
    message.Options[RabbitMQOptionKeys.ExchangeName] = Exchange;      // "exchange.name"
    message.Options[RabbitMQOptionKeys.ExchangeType] = "topic";       // "exchange.type"
    message.Options[RabbitMQOptionKeys.RoutingKey] = "invoices.issued"; // "routing_key"
    message.Headers["invoice"] = i;
    await enqueuer.EnqueueAsync(transaction, message, ct);
    if (i % 4 == 3)
    {
        await transaction.RollbackAsync(ct);
        rolledBack.Add(message.MessageId.ToString());
    }
    else
    {
        await transaction.CommitAsync(ct);
        committed.Add(message.MessageId.ToString());
    }
}

// Consume until every committed message arrived, then until the table has nothing pending and the queue is empty.
var received = new List<string>();
while (true)
{
    var delivery = await channel.BasicGetAsync(Queue, autoAck: true, ct);
    if (delivery is not null)
    {
        received.Add(delivery.BasicProperties.MessageId!);
        continue;
    }

    if (committed.IsSubsetOf(received) && await PendingAsync() == 0)
    {
        break;
    }

    await Task.Delay(50, ct);
}

var perRelay = new List<string>();
foreach (var relay in relays)
{
    await relay.StandardInput.WriteLineAsync("stop");
    relay.StandardInput.Close();
    perRelay.Add((await relay.StandardOutput.ReadToEndAsync(ct)).Trim());
    await relay.WaitForExitAsync(ct);
}

var duplicates = received.Count - received.Distinct().Count();
var missing = committed.Except(received).Count();
var leaked = rolledBack.Intersect(received).Count();
Console.WriteLine($"committed {committed.Count}, rolled back {rolledBack.Count}, received {received.Count}: missing {missing}, duplicates {duplicates}, rolled-back received {leaked}");
Console.WriteLine($"relays: {string.Join("; ", perRelay)}");
var ok = missing == 0 && duplicates == 0 && leaked == 0 && received.Count == committed.Count;
Console.WriteLine(ok ? "OK" : "FAILED");
return ok ? 0 : 1;

async Task<long> PendingAsync()
{
    await using var command = dataSource.CreateCommand($"SELECT count(*) FROM {Schema}.outbox_messages WHERE NOT dispatched");
    return (long)(await command.ExecuteScalarAsync(ct))!;
}

static Process StartRelay(string self, string entry, string postgres, string rabbitUri)
{
    var start = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
    if (Path.GetFileNameWithoutExtension(self) == "dotnet")
    {
        start.ArgumentList.Add(entry);
    }

    foreach (var arg in new[] { "relay", postgres, rabbitUri })
    {
        start.ArgumentList.Add(arg);
    }

    return Process.Start(start)!;
}

static async Task<int> RelayAsync(string postgres, string rabbitUri)
{
    await using var dataSource = NpgsqlDataSource.Create(postgres);
    await using var publisher = await RabbitMQPublisher.ConnectAsync(new Uri(rabbitUri));
    await using var outbox = new Outbox(
        new PostgreSqlOutboxStore(dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = Schema }),
        publisher,
        new OutboxOptions { MessageBatchSize = 20, CheckInterval = TimeSpan.FromMilliseconds(20) });
    var dispatched = 0;
    var counting = Task.Run(async () =>
    {
        await foreach (var _ in outbox.Dispatched.ReadAllAsync())
        {
            dispatched++;
        }
    });
    outbox.StartDispatcher();
    await Console.In.ReadLineAsync();
    await outbox.DisposeAsync();
    await counting;
    Console.WriteLine($"pid {Environment.ProcessId} dispatched {dispatched}");
    return 0;
}

