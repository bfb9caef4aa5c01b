using Npgsql;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// The scenarios that kill dispatcher processes, stop and restart servers, or cut connections. They run one at a time, after the
/// other tests of this assembly; the <c>Category=Disruptive</c> trait keeps them out of eng/test.sh's parallel phase.
/// </summary>
[CollectionDefinition(nameof(DisruptiveCollection), DisableParallelization = true)]
public sealed class DisruptiveCollection;

[Collection(nameof(DisruptiveCollection))]
[Trait("Category", "Disruptive")]
public sealed class DisruptiveScenarioTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void Log(string line) => TestContext.Current.TestOutputHelper?.WriteLine($"{TimeProvider.System.GetUtcNow():HH:mm:ss.fff} {line}");

    [Fact]
    public async Task Scenario1_relay_processes_killed_with_SIGKILL_lose_nothing_and_keep_per_key_order()
    {
        await using var run = await GuaranteeRun.CreateAsync("sigkill");
        var relays = new List<RelayProcess>();
        var kills = 0;
        var seed = Environment.TickCount;
        var random = new Random(seed);
        try
        {
            relays.Add(await RelayProcess.StartAsync(PostgreSqlServer.ConnectionString, RabbitMQServer.Url, run.Schema, Ct));
            relays.Add(await RelayProcess.StartAsync(PostgreSqlServer.ConnectionString, RabbitMQServer.Url, run.Schema, Ct));
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
                relays[victim] = await RelayProcess.StartAsync(PostgreSqlServer.ConnectionString, RabbitMQServer.Url, run.Schema, Ct);
            }

            await producing;
            var report = await run.VerifyAsync(crash: true, faults: $"{kills} SIGKILLs of relay processes (2 alive at a time, random seed {seed})");
            GuaranteeRun.AssertGuarantees(report);
        }
        finally
        {
            foreach (var relay in relays)
            {
                await relay.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Scenario2_rabbitmq_stopped_and_restarted_mid_run_loses_nothing()
    {
        await using var run = await GuaranteeRun.CreateAsync("rabbitmq-restart");
        run.StartDispatcher(GuaranteeRun.FastRecoveryOptions());
        run.StartDispatcher(GuaranteeRun.FastRecoveryOptions());
        var producing = run.ProduceAsync(400, TimeSpan.FromMilliseconds(25), cancellationToken: Ct);

        await RestartMidRunAsync(run, "rabbitmq", "RabbitMQ");

        await producing;
        var report = await run.VerifyAsync(crash: true, faults: "RabbitMQ stopped and started (eng/servers.sh) while producing and dispatching");
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Scenario3_postgresql_restarted_mid_run_loses_nothing()
    {
        await using var run = await GuaranteeRun.CreateAsync("postgres-restart");
        run.StartDispatcher(GuaranteeRun.FastRecoveryOptions());
        run.StartDispatcher(GuaranteeRun.FastRecoveryOptions());
        var producing = run.ProduceAsync(400, TimeSpan.FromMilliseconds(25), cancellationToken: Ct);

        await RestartMidRunAsync(run, "postgres", "PostgreSQL");

        await producing;
        Log($"{run.FailedTransactions} producer transaction(s) failed during the outage");
        var report = await run.VerifyAsync(crash: true, faults: $"PostgreSQL stopped and started (eng/servers.sh) while producing and dispatching; {run.FailedTransactions} producer transactions failed");
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Scenario4_connections_to_broker_and_database_cut_and_restored_lose_nothing()
    {
        var postgres = new NpgsqlConnectionStringBuilder(PostgreSqlServer.ConnectionString);
        await using var databaseProxy = new TcpProxy(postgres.Port);
        await using var brokerProxy = new TcpProxy(RabbitMQServer.Url.Port);
        postgres.Host = "127.0.0.1";
        postgres.Port = databaseProxy.Port;
        var broker = new UriBuilder(RabbitMQServer.Url) { Host = "127.0.0.1", Port = brokerProxy.Port }.Uri;

        await using var run = await GuaranteeRun.CreateAsync("connection-cuts");
        run.StartDispatcher(GuaranteeRun.FastRecoveryOptions(), postgres.ConnectionString, broker);
        run.StartDispatcher(GuaranteeRun.FastRecoveryOptions(), postgres.ConnectionString, broker);
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
            faults: $"dispatcher connections cut through TCP proxies: database {databaseProxy.Cuts} cuts ({databaseProxy.ConnectionsCut} connections reset), broker {brokerProxy.Cuts} cuts ({brokerProxy.ConnectionsCut} connections reset), new connections refused for {refuse.TotalSeconds} s each");
        Assert.True(databaseProxy.ConnectionsCut > 0 && brokerProxy.ConnectionsCut > 0, "the dispatchers did not connect through the proxies");
        GuaranteeRun.AssertGuarantees(report);
    }

    /// <summary>After two seconds of traffic, stops a server, waits a second and starts it again (and starts it in any case).</summary>
    private static async Task RestartMidRunAsync(GuaranteeRun run, string server, string name)
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
            Log($"{name} started");
        }
        finally
        {
            if (!restarted)
            {
                await Repository.RunServersScriptAsync("start", server);
            }
        }
    }
}
