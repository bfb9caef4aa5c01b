// A relay: one outbox dispatcher (no enqueueing, no cleanup) over an outbox table in PostgreSQL, MySQL/MariaDB or SQLite, publishing to
// RabbitMQ, NATS JetStream or Redis Streams.
//
//   dotnet Outboxer.Relay.dll <connection string> <schema or table> <broker> <broker address> [--store postgres|mysql|sqlite]
//       [--lease-ms N] [--publish-timeout-ms N] [--max-attempts N] [--no-dedup]
//
//   connection string the store's (PostgreSQL: Npgsql; mysql: MySqlConnector; sqlite: Microsoft.Data.Sqlite, a file)
//   schema or table   postgres: the schema of the outbox_messages table; mysql and sqlite: the outbox table's name
//   broker            rabbitmq (address: an amqp URI), nats (a nats:// URL; the stream must exist) or redis (a StackExchange.Redis
//                     configuration string)
//   --store           the outbox store (postgres by default); the table must exist (the relay never creates it)
//   --lease-ms        the outbox lease (3000 by default); --publish-timeout-ms the publish timeout (2000 by default)
//   --max-attempts    OutboxOptions.MaxAttempts (1000 by default)
//   --no-dedup        redis only: append without the deduplication script's check (RedisPublisherOptions.DeduplicationWindow = null).
//                     NATS deduplicates in the stream, so its window is the stream's setting, not the relay's.
//
// Prints "ready" once the dispatcher runs, then dispatches until a line arrives on standard input (or standard input closes),
// stops gracefully and prints "dispatched <n>". On NATS and Redis it prints "duplicate <what>" for each republished message the
// broker dropped. For each addition to the counter outboxer.messages.possible_duplicates (a publish without an answer, event 1011; published
// messages another claim took before the mark, event 1010; published messages whose mark failed, event 1005) it prints "uncertain <count>". The guarantee tests start several relays and
// kill them with SIGKILL at random points (the short lease brings a killed relay's claims back quickly), and compare the duplicates that
// arrived with the sum of the "uncertain" lines.
using System.Diagnostics.Metrics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using MySqlConnector;
using Npgsql;
using Outboxer;
using Outboxer.MySql;
using Outboxer.Nats;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Outboxer.RabbitMQ;
using Outboxer.Redis;
using Outboxer.Sqlite;

const string Usage = "usage: Outboxer.Relay <connection string> <schema or table> <rabbitmq|nats|redis> <broker address> [--store postgres|mysql|sqlite] [--lease-ms N] [--publish-timeout-ms N] [--max-attempts N] [--no-dedup]";
if (args.Length < 4)
{
    Console.Error.WriteLine(Usage);
    return 2;
}

var lease = TimeSpan.FromMilliseconds(3000);
var publishTimeout = TimeSpan.FromMilliseconds(2000);
var maxAttempts = 1000;
var storeName = "postgres";
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
        case "--max-attempts" when i + 1 < args.Length:
            maxAttempts = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--store" when i + 1 < args.Length && args[i + 1] is "postgres" or "mysql" or "sqlite":
            storeName = args[++i];
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

// The library's meter is named "Outboxer"; this process runs one outbox, so every measurement of the counter is this relay's.
using var possibleDuplicates = new MeterListener
{
    InstrumentPublished = (instrument, listener) =>
    {
        if (instrument.Meter.Name == "Outboxer" && instrument.Name == "outboxer.messages.possible_duplicates")
        {
            listener.EnableMeasurementEvents(instrument);
        }
    },
};
possibleDuplicates.SetMeasurementEventCallback<long>((_, count, _, _) => Console.WriteLine($"uncertain {count.ToString(CultureInfo.InvariantCulture)}"));
possibleDuplicates.Start();

await using IAsyncDisposable? dataSource = storeName switch
{
    "postgres" => NpgsqlDataSource.Create(args[0]),
    "mysql" => new MySqlDataSource(args[0]),
    _ => null,
};
IOutboxStore store = storeName switch
{
    "postgres" => new PostgreSqlOutboxStore((NpgsqlDataSource)dataSource!, new PostgreSqlOutboxStoreOptions { SchemaName = args[1], CreateTableIfMissing = false }),
    "mysql" => new MySqlOutboxStore((MySqlDataSource)dataSource!, new MySqlOutboxStoreOptions { TableName = args[1], CreateTableIfMissing = false }),
    _ => new SqliteOutboxStore(args[0], new SqliteOutboxStoreOptions { TableName = args[1], CreateTableIfMissing = false }),
};
await using var outbox = new Outbox(
    store,
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
        MaxAttempts = maxAttempts,
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
