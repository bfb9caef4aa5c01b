using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// The fault scenarios against NATS JetStream, read back from the stream. With the stream's duplicate window on (2 min, far longer
/// than the 3 s lease), a message republished after a relay was killed is stored once: 0 duplicates is asserted even after SIGKILL.
/// The SIGKILL scenario runs once more with a 100 ms window (deduplication off for republishes): its duplicates are reported, not asserted.
/// </summary>
[Collection(nameof(DisruptiveCollection))]
[Trait("Category", "Disruptive")]
public sealed class NatsScenarioTests
{
    [Fact]
    public async Task Relay_processes_killed_with_SIGKILL_lose_nothing_and_leave_each_message_once_in_the_stream()
    {
        await using var run = await GuaranteeRun.CreateAsync("sigkill", new NatsGuaranteeBroker(deduplicates: true));
        GuaranteeRun.AssertGuarantees(await Scenarios.RelaysKilledWithSigkillAsync(run));
    }

    [Fact]
    public async Task Relay_processes_killed_with_SIGKILL_without_deduplication_lose_nothing_and_report_the_duplicates()
    {
        await using var run = await GuaranteeRun.CreateAsync("sigkill", new NatsGuaranteeBroker(deduplicates: false));
        var report = await Scenarios.RelaysKilledWithSigkillAsync(run);
        Scenarios.Log($"duplicates in the stream without deduplication: {report.Duplicates}");
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task NATS_stopped_and_restarted_mid_run_loses_nothing_and_stores_each_message_once()
    {
        var broker = new NatsGuaranteeBroker(deduplicates: true);
        await using var run = await GuaranteeRun.CreateAsync("nats-restart", broker);
        var report = await Scenarios.BrokerRestartedMidRunAsync(run);
        Scenarios.Log($"the stream reader started again {broker.ReaderRestarts} time(s)");
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Connections_to_NATS_and_PostgreSQL_cut_and_restored_lose_nothing_and_store_each_message_once() =>
        GuaranteeRun.AssertGuarantees(await Scenarios.ConnectionsCutAsync(new NatsGuaranteeBroker(deduplicates: true)));
}

/// <summary>
/// The fault scenarios against Redis Streams, read back from the stream. With the publisher's deduplication on (10 min window), a
/// message republished after a relay was killed is appended once: 0 duplicates is asserted even after SIGKILL. The SIGKILL scenario
/// runs once more with deduplication off: its duplicates are reported, not asserted.
/// </summary>
[Collection(nameof(DisruptiveCollection))]
[Trait("Category", "Disruptive")]
public sealed class RedisScenarioTests
{
    [Fact]
    public async Task Relay_processes_killed_with_SIGKILL_lose_nothing_and_leave_each_message_once_in_the_stream()
    {
        await using var run = await GuaranteeRun.CreateAsync("sigkill", new RedisGuaranteeBroker(deduplicates: true));
        GuaranteeRun.AssertGuarantees(await Scenarios.RelaysKilledWithSigkillAsync(run));
    }

    [Fact]
    public async Task Relay_processes_killed_with_SIGKILL_without_deduplication_lose_nothing_and_report_the_duplicates()
    {
        await using var run = await GuaranteeRun.CreateAsync("sigkill", new RedisGuaranteeBroker(deduplicates: false));
        var report = await Scenarios.RelaysKilledWithSigkillAsync(run);
        Scenarios.Log($"duplicates in the stream without deduplication: {report.Duplicates}");
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Redis_stopped_and_restarted_mid_run_loses_nothing_and_stores_each_message_once()
    {
        var broker = new RedisGuaranteeBroker(deduplicates: true);
        await using var run = await GuaranteeRun.CreateAsync("redis-restart", broker);
        var report = await Scenarios.BrokerRestartedMidRunAsync(run);
        Scenarios.Log($"{broker.ReadFailures} read(s) of the stream failed and were tried again");
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Connections_to_Redis_and_PostgreSQL_cut_and_restored_lose_nothing_and_store_each_message_once() =>
        GuaranteeRun.AssertGuarantees(await Scenarios.ConnectionsCutAsync(new RedisGuaranteeBroker(deduplicates: true)));
}
