using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.PostgreSql.LogMode.Tests;

/// <summary>
/// One test's log mode: its own prefix, slot, publication and dead-letter schema (so tests running together never see each other's
/// messages), a writer outbox, and relays it starts. Disposing stops the relays and DROPS the slot: a leftover slot would retain the
/// shared server's write-ahead log forever.
/// </summary>
internal sealed class LogModeWorld : IAsyncDisposable
{
    private readonly List<PostgreSqlLogRelay> _relays = [];

    private LogModeWorld()
    {
        var suffix = Guid.NewGuid().ToString("N")[..10];
        Options = new PostgreSqlLogOptions
        {
            Prefix = $"outboxer.test.{suffix}",
            SlotName = $"outboxer_test_{suffix}",
            PublicationName = $"outboxer_test_{suffix}",
            SchemaName = $"logmode_{suffix}",
        };
        DataSource = PostgreSqlServer.CreateDataSource();
        Setup = new PostgreSqlLogSetup(DataSource, Options);
        Writer = new PostgreSqlLogWriter(DataSource, Options);
        Outbox = new Outbox(Writer);
    }

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public PostgreSqlLogOptions Options { get; }

    public NpgsqlDataSource DataSource { get; }

    public PostgreSqlLogSetup Setup { get; }

    public PostgreSqlLogWriter Writer { get; }

    /// <summary>An outbox that only enqueues, through the log writer.</summary>
    public Outbox Outbox { get; }

    /// <summary>Fast retries and takeovers, so that failure tests take milliseconds, not seconds.</summary>
    public static PostgreSqlLogRelayOptions FastRelayOptions(int batchSize = 100) => new()
    {
        BatchSize = batchSize,
        RetryDelay = TimeSpan.FromMilliseconds(20),
        MaxRetryDelay = TimeSpan.FromMilliseconds(200),
        TakeoverInterval = TimeSpan.FromMilliseconds(200),
        HeartbeatInterval = TimeSpan.FromMilliseconds(500),
        PublishTimeout = TimeSpan.FromSeconds(10),
    };

    /// <summary>Creates the world and its slot, publication and dead-letter table.</summary>
    public static async Task<LogModeWorld> CreateAsync(bool setup = true)
    {
        var world = new LogModeWorld();
        await using (await PostgreSqlServer.OpenAsync(world.DataSource))
        {
        }

        if (setup)
        {
            var status = await world.Setup.SetupAsync(Ct);
            Assert.Empty(status.Problems);
        }

        return world;
    }

    /// <summary>Starts a relay on this world's slot; stopped and disposed with the world.</summary>
    public async Task<PostgreSqlLogRelay> StartRelayAsync(IOutboxPublisher publisher, PostgreSqlLogRelayOptions? options = null)
    {
        var relay = new PostgreSqlLogRelay(PostgreSqlServer.ConnectionString, publisher, Options, options ?? FastRelayOptions());
        _relays.Add(relay);
        await relay.StartAsync(Ct);
        return relay;
    }

    /// <summary>A message with a payload naming it, a key and a sequence number in a header.</summary>
    public static OutboxMessage Message(string name, string? key = null, int sequence = 0)
    {
        var message = new OutboxMessage(name) { OrderingKey = key };
        message.Headers["name"] = name;
        message.Headers["seq"] = sequence;
        return message;
    }

    /// <summary>Waits until <paramref name="condition"/> holds, failing the test with <paramref name="what"/> after <paramref name="timeout"/> (30 s by default).</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"Timed out waiting until {what}.");
            }

            await Task.Delay(20, Ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var relay in _relays)
        {
            await relay.DisposeAsync();
        }

        await Outbox.DisposeAsync();

        // The slot goes even when a test failed: retry while its walsender is still ending.
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await Setup.DropAsync(CancellationToken.None);
                break;
            }
            catch (OutboxException) when (attempt < 50)
            {
                await Task.Delay(200, CancellationToken.None);
            }
        }

        await using (var drop = DataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{Options.SchemaName}\" CASCADE"))
        {
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }

        await DataSource.DisposeAsync();
    }
}
