// A relay: one outbox dispatcher (no enqueueing, no cleanup) over a PostgreSQL outbox table, publishing to RabbitMQ.
//
//   dotnet Outboxer.Relay.dll <postgres connection string> <amqp uri> <schema> [lease ms] [publish timeout ms]
//
// Prints "ready" once the dispatcher runs, then dispatches until a line arrives on standard input (or standard input closes),
// stops gracefully and prints "dispatched <n>". The guarantee tests start several relays and kill them with SIGKILL at random
// points: the short lease (3 s by default) brings a killed relay's claims back quickly.
using System.Globalization;
using Npgsql;
using Outboxer;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;

if (args.Length < 3)
{
    Console.Error.WriteLine("usage: Outboxer.Relay <postgres connection string> <amqp uri> <schema> [lease ms] [publish timeout ms]");
    return 2;
}

var lease = TimeSpan.FromMilliseconds(args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 3000);
var publishTimeout = TimeSpan.FromMilliseconds(args.Length > 4 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 2000);

await using var dataSource = NpgsqlDataSource.Create(args[0]);
await using var publisher = new RabbitMQPublisher(new Uri(args[1]));
await using var outbox = new Outbox(
    new PostgreSqlOutboxStore(dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = args[2], CreateTableIfMissing = false }),
    publisher,
    new OutboxOptions
    {
        MessageBatchSize = 20,
        CheckInterval = TimeSpan.FromMilliseconds(100),
        LeaseDuration = lease,
        PublishTimeout = publishTimeout,
        RetryDelay = TimeSpan.FromMilliseconds(100),
        MaxRetryDelay = TimeSpan.FromSeconds(1),

        // Every failed publish counts as an attempt, "connection closed" included: with these fast retries the default 10 attempts
        // last about 6.5 s, so a longer broker outage would dead-letter healthy messages.
        MaxAttempts = 1000,
    });

var dispatched = 0;
var counting = Task.Run(async () =>
{
    await foreach (var _ in outbox.Dispatched.ReadAllAsync())
    {
        Interlocked.Increment(ref dispatched);
    }
});

outbox.StartDispatcher();
Console.WriteLine("ready");
await Console.In.ReadLineAsync();
await outbox.DisposeAsync();
await counting;
Console.WriteLine($"dispatched {dispatched}");
return 0;
