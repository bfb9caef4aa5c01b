// A relay in log mode: consumes a PostgreSQL logical replication slot and publishes the outbox's messages to RabbitMQ.
//
//   dotnet Outboxer.LogRelay.dll <postgres connection string> <amqp uri> <slot> <publication> <prefix> <dead-letter schema>
//
// Prints "ready" once the relay runs (active or standing by), "active" when it holds the slot, then relays until a line arrives on
// standard input (or standard input closes), stops gracefully and prints "published <n>". The guarantee tests start two and kill
// the active one with SIGKILL: the standby takes the slot over and resumes from its acknowledged position.
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
