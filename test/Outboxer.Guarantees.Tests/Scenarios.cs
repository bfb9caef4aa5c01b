using Npgsql;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// The fault scenarios, written once for every broker: each takes a run (or a broker), injects its fault while messages flow, and
/// returns the report that <see cref="GuaranteeRun.VerifyAsync"/> appended to artifacts/guarantees.jsonl.
/// </summary>
internal static class Scenarios
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static void Log(string line) => TestContext.Current.TestOutputHelper?.WriteLine($"{TimeProvider.System.GetUtcNow():HH:mm:ss.fff} {line}");

    /// <summary>
    /// Two samples/Outboxer.Relay processes dispatch while 500 transactions commit (or roll back); eight times at random points one of
    /// them is killed with SIGKILL (no graceful stop, its claims come back after the 3 s lease) and replaced.
    /// </summary>
    public static async Task<GuaranteeReport> RelaysKilledWithSigkillAsync(GuaranteeRun run)
    {
        var relays = new List<RelayProcess>();
        var kills = 0;
        var seed = Environment.TickCount;
        var random = new Random(seed);
        try
        {
            relays.Add(await run.StartRelayAsync());
            relays.Add(await run.StartRelayAsync());
            var producing = run.ProduceAsync(500, TimeSpan.FromMilliseconds(20), cancellationToken: Ct);

            // Eight kills at random points while the messages flow; two relays stay alive, a killed one is replaced.
            while (kills < 8)
            {
                await Task.Delay(random.Next(600, 1800), Ct);
                var victim = random.Next(relays.Count);
                var arrivedBefore = run.ArrivalCount;
                await relays[victim].KillAsync();
                kills++;
                Log($"SIGKILL {kills}: relay pid {relays[victim].Id} ({arrivedBefore} deliveries so far)");
                await relays[victim].DisposeAsync();
                relays[victim] = await run.StartRelayAsync();
            }

            await producing;
            return await run.VerifyAsync(crash: true, faults: $"{kills} SIGKILLs of relay processes (2 alive at a time, random seed {seed}){DedupNote(run.Broker)}");
        }
        finally
        {
            foreach (var relay in relays)
            {
                await relay.DisposeAsync();
            }
        }
    }

    /// <summary>Two in-process dispatchers while 400 transactions commit; after two seconds the broker is stopped and started again.</summary>
    public static async Task<GuaranteeReport> BrokerRestartedMidRunAsync(GuaranteeRun run)
    {
        await run.StartDispatcherAsync(GuaranteeRun.FastRecoveryOptions());
        await run.StartDispatcherAsync(GuaranteeRun.FastRecoveryOptions());
        var producing = run.ProduceAsync(400, TimeSpan.FromMilliseconds(25), cancellationToken: Ct);

        await RestartMidRunAsync(run, run.Broker.Name, run.Broker.DisplayName);

        await producing;
        return await run.VerifyAsync(crash: true, faults: $"{run.Broker.DisplayName} stopped and started (eng/servers.sh) while producing and dispatching{DedupNote(run.Broker)}");
    }

    /// <summary>
    /// Two in-process dispatchers connected through TCP proxies to the broker and to PostgreSQL while 500 transactions commit; their
    /// connections are cut and new ones refused for 2 s, three times for each server.
    /// </summary>
    public static async Task<GuaranteeReport> ConnectionsCutAsync(IGuaranteeBroker broker)
    {
        var postgres = new NpgsqlConnectionStringBuilder(PostgreSqlServer.ConnectionString);
        await using var databaseProxy = new TcpProxy(postgres.Port);
        await using var brokerProxy = new TcpProxy(broker.Port);
        postgres.Host = "127.0.0.1";
        postgres.Port = databaseProxy.Port;

        await using var run = await GuaranteeRun.CreateAsync("connection-cuts", broker);
        await run.StartDispatcherAsync(GuaranteeRun.FastRecoveryOptions(), postgres.ConnectionString, brokerProxy.Port);
        await run.StartDispatcherAsync(GuaranteeRun.FastRecoveryOptions(), postgres.ConnectionString, brokerProxy.Port);
        var producing = run.ProduceAsync(500, TimeSpan.FromMilliseconds(20), cancellationToken: Ct);

        var refuse = TimeSpan.FromSeconds(2);
        await Task.Delay(TimeSpan.FromSeconds(1.5), Ct);
        Log($"cutting both ({run.ArrivalCount} deliveries so far)");
        await Task.WhenAll(databaseProxy.CutAsync(refuse, Ct), brokerProxy.CutAsync(refuse, Ct));
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        Log($"cutting the broker ({run.ArrivalCount} deliveries so far)");
        await brokerProxy.CutAsync(refuse, Ct);
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        Log($"cutting the database ({run.ArrivalCount} deliveries so far)");
        await databaseProxy.CutAsync(refuse, Ct);
        await Task.Delay(TimeSpan.FromSeconds(1), Ct);
        Log($"cutting both again ({run.ArrivalCount} deliveries so far)");
        await Task.WhenAll(databaseProxy.CutAsync(refuse, Ct), brokerProxy.CutAsync(refuse, Ct));

        await producing;
        var report = await run.VerifyAsync(
            crash: true,
            faults: $"dispatcher connections cut through TCP proxies: database {databaseProxy.Cuts} cuts ({databaseProxy.ConnectionsCut} connections reset), {broker.DisplayName} {brokerProxy.Cuts} cuts ({brokerProxy.ConnectionsCut} connections reset), new connections refused for {refuse.TotalSeconds} s each{DedupNote(broker)}");
        Assert.True(databaseProxy.ConnectionsCut > 0 && brokerProxy.ConnectionsCut > 0, "the dispatchers did not connect through the proxies");
        return report;
    }

    /// <summary>After two seconds of traffic, stops a server, waits a second and starts it again (and starts it in any case).</summary>
    public static async Task RestartMidRunAsync(GuaranteeRun run, string server, string name)
    {
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        var restarted = false;
        try
        {
            Log($"stopping {name} ({run.ArrivalCount} deliveries so far)");
            await Repository.RunServersScriptAsync("stop", server);
            await Task.Delay(TimeSpan.FromSeconds(1), Ct);
            Log($"starting {name}");
            await Repository.RunServersScriptAsync("start", server);
            restarted = true;
            Log($"{name} started ({run.ArrivalCount} deliveries so far)");
        }
        finally
        {
            if (!restarted)
            {
                await Repository.RunServersScriptAsync("start", server);
            }
        }
    }

    private static string DedupNote(IGuaranteeBroker broker) => broker switch
    {
        NatsGuaranteeBroker { Deduplicates: true } => "; JetStream duplicate window 2 min",
        NatsGuaranteeBroker => $"; JetStream duplicate window {NatsGuaranteeBroker.NoDeduplicationWindow.TotalMilliseconds} ms (deduplication off for republishes)",
        RedisGuaranteeBroker { Deduplicates: true } => "; Redis deduplication window 10 min",
        RedisGuaranteeBroker => "; Redis deduplication off",
        _ => string.Empty,
    };
}
