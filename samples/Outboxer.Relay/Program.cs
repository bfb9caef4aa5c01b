// A relay: one outbox dispatcher (no enqueueing, no cleanup) over an outbox table in PostgreSQL, MySQL/MariaDB or SQLite, publishing to
// RabbitMQ, NATS JetStream or Redis Streams.
//
//   dotnet Outboxer.Relay.dll <connection string> <schema or table> <broker> <broker address> [--store postgres|mysql|sqlite]
//       [--lease-ms N] [--publish-timeout-ms N] [--max-attempts N] [--no-dedup]
//       [--send N [--send-pause-ms M] [--send-first F] [--send-option name=value]...]
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
//   --send            also produce, once the dispatcher runs: N transactions with Outbox.SendWithinTransactionAsync, M ms apart (0 by
//                     default), each of one message without an ordering key, so that it takes the send-after-commit path (written
//                     already leased to this relay's dispatcher and published from memory right after the commit, no claim). The
//                     messages are numbered from F (0 by default), with the guarantee tests' payload ({"n", "key": null, "seq": 0,
//                     "enqueued_ts"}) and header "n"; every --send-option is set on each message's Options (its destination). Every
//                     fifth transaction's work throws, so that it rolls back.
//
// Prints "ready" once the dispatcher runs, then dispatches until a line arrives on standard input (or standard input closes),
// stops gracefully and prints "dispatched <n>". On NATS and Redis it prints "duplicate <what>" for each republished message the
// broker dropped. For each addition to the counter outboxer.messages.possible_duplicates (a publish without an answer, event 1011; published
// messages another claim took before the mark, event 1010; published messages whose mark failed, event 1005) it prints "uncertain <count>". The guarantee tests start several relays and
// kill them with SIGKILL at random points (the short lease brings a killed relay's claims back quickly), and compare the duplicates that
// arrived with the sum of the "uncertain" lines.
//
// With --send it also prints, per transaction: "sending <message id> <n>" before it begins, then, once SendWithinTransactionAsync
// returned or threw, "committed <message id>", "rolled-back <message id>" (the work threw on purpose) or "send-failed <message id>
// <exception type>" (the outcome is unknown: the test looks for the row). "sent-after-commit <message id>" says that this relay's
// dispatcher marked one of the messages it committed itself (the Dispatched notification); "sends-done <committed>" ends the sending.
// A relay killed mid-transaction prints no outcome for it: the test resolves such a message by looking for its row.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text.Json;
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

const string Usage = "usage: Outboxer.Relay <connection string> <schema or table> <rabbitmq|nats|redis> <broker address> [--store postgres|mysql|sqlite] [--lease-ms N] [--publish-timeout-ms N] [--max-attempts N] [--no-dedup] [--send N [--send-pause-ms M] [--send-first F] [--send-option name=value]...]";
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
var sends = 0;
var sendPause = TimeSpan.Zero;
var firstNumber = 0;
var sendOptions = new List<KeyValuePair<string, string>>();
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
        case "--send" when i + 1 < args.Length:
            sends = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--send-pause-ms" when i + 1 < args.Length:
            sendPause = TimeSpan.FromMilliseconds(int.Parse(args[++i], CultureInfo.InvariantCulture));
            break;
        case "--send-first" when i + 1 < args.Length:
            firstNumber = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--send-option" when i + 1 < args.Length && args[i + 1].IndexOf('=', StringComparison.Ordinal) > 0:
            var option = args[++i];
            var equals = option.IndexOf('=', StringComparison.Ordinal);
            sendOptions.Add(new(option[..equals], option[(equals + 1)..]));
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

// The ids of the messages this relay sends itself, added before each transaction begins: its dispatcher may publish and mark a message
// before SendWithinTransactionAsync returns.
var ownMessages = new ConcurrentDictionary<Guid, byte>();
var dispatched = 0;
var counting = Task.Run(async () =>
{
    await foreach (var message in outbox.Dispatched.ReadAllAsync())
    {
        Interlocked.Increment(ref dispatched);
        if (ownMessages.ContainsKey(message.MessageId))
        {
            Console.WriteLine($"sent-after-commit {message.MessageId}");
        }
    }
});

outbox.StartDispatcher();
Console.WriteLine("ready");
using var stopSending = new CancellationTokenSource();
var sending = sends > 0 ? Task.Run(() => SendAsync(stopSending.Token)) : Task.CompletedTask;
await Console.In.ReadLineAsync();
await stopSending.CancelAsync();
await sending;
await outbox.DisposeAsync();
await counting;
Console.WriteLine($"dispatched {dispatched}");
return 0;

// Sends within a transaction of its own, one keyless message each (so the send-after-commit path), every fifth rolled back by its work.
async Task SendAsync(CancellationToken cancellationToken)
{
    var committed = 0;
    for (var t = 0; t < sends && !cancellationToken.IsCancellationRequested; t++)
    {
        var number = firstNumber + t;
        var message = new OutboxMessage(JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object?>
        {
            ["n"] = number,
            ["key"] = null,
            ["seq"] = 0,
            ["enqueued_ts"] = Stopwatch.GetTimestamp(),
        }))
        {
            MessageId = Guid.CreateVersion7(),
        };
        foreach (var (name, value) in sendOptions)
        {
            message.Options[name] = value;
        }

        message.Headers["n"] = number;
        ownMessages[message.MessageId] = 0;
        Console.WriteLine($"sending {message.MessageId} {number.ToString(CultureInfo.InvariantCulture)}");
        Exception? rollback = t % 5 == 4 ? new InvalidOperationException("Rolled back on purpose.") : null;
        try
        {
            await outbox.SendWithinTransactionAsync(message, (_, _) => rollback is null ? Task.CompletedTask : throw rollback, cancellationToken);
            committed++;
            Console.WriteLine($"committed {message.MessageId}");
        }
        catch (Exception ex) when (ReferenceEquals(ex, rollback))
        {
            Console.WriteLine($"rolled-back {message.MessageId}");
        }
#pragma warning disable CA1031 // Any other failure leaves the outcome to the test, which looks for the row; the relay sends on.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Console.WriteLine($"send-failed {message.MessageId} {ex.GetType().Name}");
        }

        try
        {
            await Task.Delay(sendPause, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            break;
        }
    }

    Console.WriteLine($"sends-done {committed.ToString(CultureInfo.InvariantCulture)}");
}

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
