// A relay: one outbox dispatcher (no enqueueing, no cleanup) over a PostgreSQL outbox table, publishing to RabbitMQ, NATS JetStream or
// Redis Streams.
//
//   dotnet Outboxer.Relay.dll <postgres connection string> <schema> <broker> <broker address> [--lease-ms N] [--publish-timeout-ms N] [--no-dedup]
//
//   broker            rabbitmq (address: an amqp URI), nats (a nats:// URL; the stream must exist) or redis (a StackExchange.Redis
//                     configuration string)
//   --lease-ms        the outbox lease (3000 by default); --publish-timeout-ms the publish timeout (2000 by default)
//   --no-dedup        redis only: append without the deduplication script's check (RedisPublisherOptions.DeduplicationWindow = null).
//                     NATS deduplicates in the stream, so its window is the stream's setting, not the relay's.
//
// Prints "ready" once the dispatcher runs, then dispatches until a line arrives on standard input (or standard input closes),
// stops gracefully and prints "dispatched <n>". On NATS and Redis it prints "duplicate <what>" for each republished message the
// broker dropped. The guarantee tests start several relays and kill them with SIGKILL at random
// points: the short lease brings a killed relay's claims back quickly.
using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using Outboxer;
using Outboxer.Nats;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Outboxer.RabbitMQ;
using Outboxer.Redis;

const string Usage = "usage: Outboxer.Relay <postgres connection string> <schema> <rabbitmq|nats|redis> <broker address> [--lease-ms N] [--publish-timeout-ms N] [--no-dedup]";
if (args.Length < 4)
{
    Console.Error.WriteLine(Usage);
    return 2;
}

var lease = TimeSpan.FromMilliseconds(3000);
var publishTimeout = TimeSpan.FromMilliseconds(2000);
var dedup = true;
for (var i = 4; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--lease-ms" when i + 1 < args.Length:
            lease = TimeSpan.FromMilliseconds(int.Parse(args[++i], CultureInfo.InvariantCulture));
            break;
        case "--publish-timeout-ms" when i + 1 < args.Length:
            publishTimeout = TimeSpan.FromMilliseconds(int.Parse(args[++i], CultureInfo.InvariantCulture));
            break;
        case "--no-dedup":
            dedup = false;
            break;
        default:
            Console.Error.WriteLine($"unknown argument '{args[i]}'; {Usage}");
            return 2;
    }
}

if (!dedup && args[2] != "redis")
{
    Console.Error.WriteLine($"--no-dedup applies to redis only, not to {args[2]}");
    return 2;
}

await using IAsyncDisposable publisher = args[2] switch
{
    "rabbitmq" => new RabbitMQPublisher(new Uri(args[3])),
    "nats" => NatsPublisher.Create(args[3], loggerFactory: new DuplicateReporter()),
    "redis" => await RedisPublisher.ConnectAsync(args[3], new RedisPublisherOptions { DeduplicationWindow = dedup ? TimeSpan.FromMinutes(10) : null }, new DuplicateReporter()),
    _ => throw new ArgumentException($"Unknown broker '{args[2]}': rabbitmq, nats or redis.", nameof(args)),
};

await using var dataSource = NpgsqlDataSource.Create(args[0]);
await using var outbox = new Outbox(
    new PostgreSqlOutboxStore(dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = args[1], CreateTableIfMissing = false }),
    (IOutboxPublisher)publisher,
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

/// <summary>
/// Writes <c>duplicate &lt;event&gt;</c> to standard output each time the broker dropped a republished message: the NATS publisher's
/// event 4403 (JetStream acknowledged a duplicate) and the Redis publisher's event 4501 (already appended within the window). The
/// guarantee tests count these lines, from killed relays too, to show that messages were republished and the broker dropped them.
/// </summary>
internal sealed class DuplicateReporter : ILoggerFactory, ILogger
{
    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (eventId.Id is 4403 or 4501)
        {
            Console.WriteLine($"duplicate {formatter(state, exception)}");
        }
    }

    public void Dispose()
    {
    }
}
