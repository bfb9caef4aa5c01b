// The main job, end to end: business rows and outbox messages written in the same transactions (some rolled back on purpose),
// relayed by the dispatcher, and checked on the receiving side: exit code 0 only when every committed message, and no
// rolled-back one, went out.
//
//   dotnet run --project samples/Outboxer.Sample                       SQLite file + JSON lines file: needs no server
//   dotnet run --project samples/Outboxer.Sample -- \
//       --postgres "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer" \
//       --rabbitmq "amqp://outboxer:outboxer@127.0.0.1:5673/"          either or both
//
// Against servers it touches only what it creates for this run, named after a run id: the PostgreSQL schema
// outboxer_sample_<run id> (dropped at the end) and the RabbitMQ queue outboxer.sample.<run id> (deleted at the end), bound to the
// exchange outboxer.sample with the routing keys orders.<run id>.#. Nothing of another run, or of anyone else, is dropped or purged.
using System.Data.Common;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Npgsql;
using Outboxer;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Outboxer.RabbitMQ;
using Outboxer.Sqlite;
using RabbitMQ.Client;

const int Orders = 20;
const string Exchange = "outboxer.sample";

var runId = Guid.NewGuid().ToString("N")[..10];
var schema = $"outboxer_sample_{runId}";
var queue = $"outboxer.sample.{runId}";
var routingKey = $"orders.{runId}.placed";
Console.WriteLine($"run:       {runId}");

var postgres = Argument("--postgres");
var rabbitUri = Argument("--rabbitmq");
var workDir = Directory.CreateTempSubdirectory("outboxer-sample-").FullName;
using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
var ct = timeout.Token;

// 1. The store: where the application's data and its outbox live.
IOutboxStore store;
Func<Task<DbConnection>> openConnection;
NpgsqlDataSource? dataSource = null;
string ordersTable;
if (postgres is null)
{
    var connectionString = $"Data Source={Path.Combine(workDir, "shop.db")}";
    store = new SqliteOutboxStore(connectionString);
    openConnection = async () =>
    {
        var connection = new SqliteConnection(connectionString);
        await connection.OpenAsync(ct);
        return connection;
    };
    ordersTable = "orders";
    Console.WriteLine($"store:     SQLite {connectionString}");
}
else
{
    dataSource = NpgsqlDataSource.Create(postgres);
    await using (var create = dataSource.CreateCommand($"CREATE SCHEMA {schema}"))
    {
        await create.ExecuteNonQueryAsync(ct);
    }

    store = new PostgreSqlOutboxStore(dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = schema });
    openConnection = async () => await dataSource.OpenConnectionAsync(ct);
    ordersTable = $"{schema}.orders";
    Console.WriteLine($"store:     PostgreSQL (schema {schema}, created for this run and dropped at the end)");
}

await using (var connection = await openConnection())
await using (var command = connection.CreateCommand())
{
    command.CommandText = $"CREATE TABLE {ordersTable} (id INTEGER PRIMARY KEY, customer VARCHAR(100) NOT NULL, total DECIMAL(10, 2) NOT NULL)";
    await command.ExecuteNonQueryAsync(ct);
}

// 2. The event stream: where messages go.
IOutboxPublisher publisher;
IConnection? rabbit = null;
IChannel? probe = null;
var jsonLines = Path.Combine(workDir, "published.jsonl");
if (rabbitUri is null)
{
    publisher = JsonLinesPublisher.ToFile(jsonLines);
    Console.WriteLine($"publisher: JSON lines to {jsonLines}");
}
else
{
    rabbit = await new ConnectionFactory { Uri = new Uri(rabbitUri), ClientProvidedName = "outboxer-sample" }.CreateConnectionAsync(ct);
    publisher = new RabbitMQPublisher(rabbit);

    // The consumer side of this sample: a queue bound to the exchange the messages are routed to.
    probe = await rabbit.CreateChannelAsync(cancellationToken: ct);
    await probe.ExchangeDeclareAsync(Exchange, ExchangeType.Topic, durable: true, cancellationToken: ct);
    await probe.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, cancellationToken: ct);
    await probe.QueueBindAsync(queue, Exchange, $"orders.{runId}.#", cancellationToken: ct);
    Console.WriteLine($"publisher: RabbitMQ exchange '{Exchange}', read back from queue '{queue}' (created for this run and deleted at the end)");
}

await using var outbox = new Outbox(store, publisher, new OutboxOptions { CheckInterval = TimeSpan.FromMilliseconds(200) });
var dispatched = outbox.Dispatched;
var errors = outbox.Errors;
await outbox.StartAsync(ct);

// 3. The application: each order and its OrderPlaced message in one transaction; every fifth one fails and rolls back.
var committed = new HashSet<Guid>();
var rolledBack = new HashSet<Guid>();
for (var id = 1; id <= Orders; id++)
{
    await using var connection = await openConnection();
    await using var transaction = await connection.BeginTransactionAsync(ct);
    await using (var insert = connection.CreateCommand())
    {
        insert.Transaction = transaction;
        insert.CommandText = $"INSERT INTO {ordersTable} (id, customer, total) VALUES ({id}, 'customer {id}', {id * 10}.50)";
        await insert.ExecuteNonQueryAsync(ct);
    }

    var message = OrderPlaced(id);
    await outbox.EnqueueAsync(transaction, message, ct);
    if (id % 5 == 0)
    {
        await transaction.RollbackAsync(ct);
        rolledBack.Add(message.MessageId);
    }
    else
    {
        await transaction.CommitAsync(ct);
        committed.Add(message.MessageId);
    }
}

// The Go outboxer's SendWithinTx: the outbox opens the transaction around the caller's statements.
var withWork = OrderPlaced(101);
await outbox.SendWithinTransactionAsync(withWork, (tx, token) => InsertOrderAsync(tx, 101, token), ct);
committed.Add(withWork.MessageId);
var failing = OrderPlaced(102);
try
{
    await outbox.SendWithinTransactionAsync(failing, async (tx, token) =>
    {
        await InsertOrderAsync(tx, 102, token);
        throw new InvalidOperationException("payment declined");
    }, ct);
}
catch (InvalidOperationException ex)
{
    rolledBack.Add(failing.MessageId);
    Console.WriteLine($"order 102 rolled back: {ex.Message}");
}

// The Go outboxer's Send: a message on its own.
var alone = new OutboxMessage("""{"event":"InventoryRecounted"}""");
Route(alone);
await outbox.SendAsync(alone, ct);
committed.Add(alone.MessageId);

// 4. Wait until the dispatcher confirmed every committed message.
var confirmed = new HashSet<Guid>();
while (!committed.IsSubsetOf(confirmed))
{
    var read = dispatched.ReadAsync(ct).AsTask();
    var error = errors.ReadAsync(ct).AsTask();
    if (await Task.WhenAny(read, error) == error)
    {
        Console.WriteLine($"error: {error.Result.Operation} {error.Result.Exception.Message}");
        continue;
    }

    confirmed.Add(read.Result.MessageId);
}

await outbox.StopAsync(ct);
await outbox.DisposeAsync();

// 5. What reached the other side?
var received = new List<Guid>();
if (probe is null)
{
    await ((JsonLinesPublisher)publisher).DisposeAsync();
    foreach (var line in await File.ReadAllLinesAsync(jsonLines, ct))
    {
        using var json = JsonDocument.Parse(line);
        received.Add(json.RootElement.GetProperty("message_id").GetGuid());
        if (received.Count <= 3)
        {
            Console.WriteLine($"  {line}");
        }
    }
}
else
{
    while (await probe.BasicGetAsync(queue, autoAck: true, ct) is { } delivery)
    {
        received.Add(Guid.Parse(delivery.BasicProperties.MessageId!));
    }
}

var missing = committed.Except(received).Count();
var leaked = rolledBack.Intersect(received).Count();
var duplicates = received.Count - received.Distinct().Count();
Console.WriteLine($"committed {committed.Count}, rolled back {rolledBack.Count}, published {received.Count} " +
                  $"(missing {missing}, rolled-back published {leaked}, duplicates {duplicates})");

if (probe is not null)
{
    await probe.QueueDeleteAsync(queue, cancellationToken: ct);
    await probe.CloseAsync(ct);
    await ((RabbitMQPublisher)publisher).DisposeAsync();
    await rabbit!.CloseAsync(ct);
}

if (dataSource is not null)
{
    await using (var drop = dataSource.CreateCommand($"DROP SCHEMA {schema} CASCADE"))
    {
        await drop.ExecuteNonQueryAsync(ct);
    }

    await dataSource.DisposeAsync();
}

var ok = missing == 0 && leaked == 0 && received.ToHashSet().SetEquals(committed);
Console.WriteLine(ok ? "OK: every committed message and no rolled-back one went out." : "FAILED");
return ok ? 0 : 1;

OutboxMessage OrderPlaced(int id)
{
    var message = new OutboxMessage(JsonSerializer.SerializeToUtf8Bytes(new { @event = "OrderPlaced", order_id = id }));
    message.Headers["event-type"] = "OrderPlaced";
    message.Headers["order-id"] = id;
    Route(message);
    return message;
}

void Route(OutboxMessage message)
{
    message.Options[RabbitMQOptionKeys.ExchangeName] = Exchange;
    message.Options[RabbitMQOptionKeys.RoutingKey] = routingKey;
}

async Task InsertOrderAsync(DbTransaction transaction, int id, CancellationToken token)
{
    await using var insert = transaction.Connection!.CreateCommand();
    insert.Transaction = transaction;
    insert.CommandText = $"INSERT INTO {ordersTable} (id, customer, total) VALUES ({id}, 'customer {id}', 1.00)";
    await insert.ExecuteNonQueryAsync(token);
}

string? Argument(string name)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
}
