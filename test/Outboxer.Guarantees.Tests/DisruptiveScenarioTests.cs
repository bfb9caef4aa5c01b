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
    public async Task Scenario1b_relay_processes_that_send_after_commit_killed_with_SIGKILL_lose_nothing_and_their_unpublished_commits_are_claimed_after_the_lease()
    {
        await using var run = await GuaranteeRun.CreateAsync("sigkill-send-after-commit");
        var report = await Scenarios.RelaysSendingAfterCommitKilledWithSigkillAsync(run);
        GuaranteeRun.AssertGuarantees(report);

        // The path was in use: most of the relays' messages were published by their sender without a claim (their rows kept the one
        // attempt they were written with), and some a killed sender had committed were claimed by another relay after the lease.
        var summary = $"relay_sent {report.RelaySent}, sent_after_commit {report.SentAfterCommit}, claimed_after_lease {report.ClaimedAfterLease}";
        Assert.True(report.RelaySent > 0, summary);
        Assert.True(report.SentAfterCommit >= report.RelaySent * 0.8, summary);
        Assert.True(report.ClaimedAfterLease > 0, summary);
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
