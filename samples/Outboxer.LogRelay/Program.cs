// A relay in log mode: consumes a PostgreSQL logical replication slot and publishes the outbox's messages to RabbitMQ.
//
//   dotnet Outboxer.LogRelay.dll <postgres connection string> <amqp uri> <slot> <publication> <prefix> <dead-letter schema>
//
// Prints "ready" once the relay runs (active or standing by), "active" when it holds the slot, "uncertain <n>" for each addition to
// outboxer.messages.possible_duplicates, then relays until a line arrives on
// standard input (or standard input closes), stops gracefully and prints "published <n>". The guarantee tests start two and kill
// the active one with SIGKILL: the standby takes the slot over and resumes from its acknowledged position.
using System.Diagnostics.Metrics;
using System.Globalization;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;

if (args.Length < 6)
{
    Console.Error.WriteLine("usage: Outboxer.LogRelay <postgres connection string> <amqp uri> <slot> <publication> <prefix> <dead-letter schema>");
    return 2;
}

await using var publisher = new RabbitMQPublisher(new Uri(args[1]));
await using var relay = new PostgreSqlLogRelay(
    args[0],
    publisher,
    new PostgreSqlLogOptions { SlotName = args[2], PublicationName = args[3], Prefix = args[4], SchemaName = args[5] },
    new PostgreSqlLogRelayOptions
    {
        BatchSize = 50,
        PublishTimeout = TimeSpan.FromSeconds(2),
        RetryDelay = TimeSpan.FromMilliseconds(100),
        MaxRetryDelay = TimeSpan.FromSeconds(1),
        TakeoverInterval = TimeSpan.FromMilliseconds(200),
        HeartbeatInterval = TimeSpan.FromSeconds(1),
    });

// Each addition to the counter outboxer.messages.possible_duplicates (this process runs one relay) as a line "uncertain <n>": the
// guarantee scenarios add them up and compare them with the duplicates that arrived.
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

await relay.StartAsync();
Console.WriteLine("ready");
using var stop = new CancellationTokenSource();
var announce = Task.Run(async () =>
{
    while (!relay.IsActive && !stop.IsCancellationRequested)
    {
        await Task.Delay(20);
    }

    if (relay.IsActive)
    {
        Console.WriteLine("active");
    }
});

await Console.In.ReadLineAsync();
await stop.CancelAsync();
await announce;
await relay.StopAsync();
Console.WriteLine($"published {relay.Published}");
return 0;
