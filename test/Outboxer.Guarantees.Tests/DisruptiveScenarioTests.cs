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

    [Fact]
    public async Task Scenario1_relay_processes_killed_with_SIGKILL_lose_nothing_and_keep_per_key_order()
    {
        await using var run = await GuaranteeRun.CreateAsync("sigkill");
        GuaranteeRun.AssertGuarantees(await Scenarios.RelaysKilledWithSigkillAsync(run));
    }

    [Fact]
    public async Task Scenario2_rabbitmq_stopped_and_restarted_mid_run_loses_nothing()
    {
        await using var run = await GuaranteeRun.CreateAsync("rabbitmq-restart");
        GuaranteeRun.AssertGuarantees(await Scenarios.BrokerRestartedMidRunAsync(run));
    }

    [Fact]
    public async Task Scenario3_postgresql_restarted_mid_run_loses_nothing()
    {
        await using var run = await GuaranteeRun.CreateAsync("postgres-restart");
        await run.StartDispatcherAsync(GuaranteeRun.FastRecoveryOptions());
        await run.StartDispatcherAsync(GuaranteeRun.FastRecoveryOptions());
        var producing = run.ProduceAsync(400, TimeSpan.FromMilliseconds(25), cancellationToken: Ct);

        await Scenarios.RestartMidRunAsync(run, "postgres", "PostgreSQL");

        await producing;
        Scenarios.Log($"{run.FailedTransactions} producer transaction(s) failed during the outage");
        var report = await run.VerifyAsync(crash: true, faults: $"PostgreSQL stopped and started (eng/servers.sh) while producing and dispatching; {run.FailedTransactions} producer transactions failed");
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Scenario4_connections_to_broker_and_database_cut_and_restored_lose_nothing() =>
        GuaranteeRun.AssertGuarantees(await Scenarios.ConnectionsCutAsync(new RabbitMQGuaranteeBroker()));
}
