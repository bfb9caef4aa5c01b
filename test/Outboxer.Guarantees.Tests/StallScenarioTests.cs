using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// The scenarios that stall or crash a shared server instead of stopping it cleanly (issue 15): a RabbitMQ memory alarm longer than the
/// publish timeout, RabbitMQ and PostgreSQL stopped with SIGSTOP for longer than the lease, MariaDB killed with SIGKILL. No relay is
/// killed, so each asserts no more duplicates than the relays counted as possible duplicates, and no dead letter that arrived. Each
/// restores its server in a finally block (the alarm cleared, SIGCONT, MariaDB started again).
/// </summary>
[Collection(nameof(DisruptiveCollection))]
[Trait("Category", "Disruptive")]
public sealed class StallScenarioTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Scenario7_a_rabbitmq_memory_alarm_longer_than_the_publish_timeout_retries_the_unanswered_publishes_and_dead_letters_none_that_arrived()
    {
        await using var run = await GuaranteeRun.CreateAsync("rabbitmq-alarm");
        run.RelayOptions = new RelayOptions { PublishTimeout = TimeSpan.FromSeconds(2), MaxAttempts = 5 };
        var alarm = TimeSpan.FromSeconds(15);
        var report = await Scenarios.RelaysUnderFaultAsync(run, 300, TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(2), async () =>
        {
            try
            {
                Scenarios.Log($"memory alarm on for {alarm.TotalSeconds} s ({run.ArrivalCount} deliveries so far)");
                await ServerProcesses.RabbitMQCtlAsync("set_vm_memory_high_watermark", "0.0000001");
                await Task.Delay(alarm, Ct);
            }
            finally
            {
                // eng/servers.sh configures no watermark: 0.4 is RabbitMQ's default.
                await ServerProcesses.RabbitMQCtlAsync("set_vm_memory_high_watermark", "0.4");
                Scenarios.Log($"memory alarm cleared ({run.ArrivalCount} deliveries so far)");
            }

            return $"RabbitMQ memory alarm (vm_memory_high_watermark 0.0000001) for {alarm.TotalSeconds} s: publishes blocked without an answer";
        });
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Scenario8_rabbitmq_stopped_with_SIGSTOP_longer_than_the_lease_loses_nothing_and_counts_every_duplicate()
    {
        await using var run = await GuaranteeRun.CreateAsync("rabbitmq-sigstop");
        run.RelayOptions = new RelayOptions { Lease = TimeSpan.FromSeconds(6), PublishTimeout = TimeSpan.FromSeconds(2) };
        var stall = TimeSpan.FromSeconds(12);
        var report = await Scenarios.RelaysUnderFaultAsync(run, 300, TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(2), async () =>
        {
            await Scenarios.StallAsync(run, "RabbitMQ", () => [ServerProcesses.RabbitMQ()], stall);
            return $"RabbitMQ (beam.smp) stopped with SIGSTOP for {stall.TotalSeconds} s, then SIGCONT";
        });
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Scenario9_postgresql_stopped_with_SIGSTOP_longer_than_the_lease_while_relays_claim_and_producers_enqueue_loses_nothing_and_counts_every_duplicate()
    {
        await using var run = await GuaranteeRun.CreateAsync("postgres-sigstop");
        run.RelayOptions = new RelayOptions { Lease = TimeSpan.FromSeconds(6), PublishTimeout = TimeSpan.FromSeconds(2) };
        var stall = TimeSpan.FromSeconds(9);
        var report = await Scenarios.RelaysUnderFaultAsync(run, 400, TimeSpan.FromMilliseconds(10), TimeSpan.FromSeconds(2), async () =>
        {
            await Scenarios.StallAsync(run, "PostgreSQL", Scenarios.PostgresProcesses, stall);
            await Task.Delay(TimeSpan.FromSeconds(3), Ct);
            await Scenarios.StallAsync(run, "PostgreSQL", Scenarios.PostgresProcesses, stall);
            return $"every PostgreSQL process (postmaster and children) stopped with SIGSTOP for {stall.TotalSeconds} s, twice, 3 s apart, while relays claimed and marked and the producer enqueued";
        });
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Scenario11_mariadb_killed_with_SIGKILL_and_restarted_under_relays_on_the_MySQL_store_loses_nothing()
    {
        await using var run = await GuaranteeRun.CreateAsync("mariadb-crash", store: new MySqlGuaranteeStore());
        var report = await Scenarios.RelaysUnderFaultAsync(run, 300, TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(3), async () =>
        {
            var restarted = false;
            try
            {
                Scenarios.Log($"SIGKILL mariadbd ({run.ArrivalCount} deliveries so far)");
                await ServerProcesses.SignalAsync("KILL", [ServerProcesses.MariaDb()]);
                await Task.Delay(TimeSpan.FromSeconds(1), Ct);
                await Repository.RunServersScriptAsync("start", "mariadb");
                restarted = true;
                Scenarios.Log($"MariaDB started ({run.ArrivalCount} deliveries so far)");
            }
            finally
            {
                if (!restarted)
                {
                    await Repository.RunServersScriptAsync("start", "mariadb");
                }
            }

            return "mariadbd killed with SIGKILL (a crash: InnoDB recovers from its log) and started again (eng/servers.sh)";
        });
        GuaranteeRun.AssertGuarantees(report);
    }
}

/// <summary>
/// Scenarios of issue 15 that disturb nothing shared: the dispatchers' own database sessions terminated, and two relay processes on one
/// SQLite file. They run beside the other tests.
/// </summary>
public sealed class SessionScenarioTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Scenario10_the_relays_database_sessions_terminated_repeatedly_lose_nothing_and_count_every_duplicate()
    {
        var store = new PostgreSqlGuaranteeStore();
        await using var run = await GuaranteeRun.CreateAsync("sessions-terminated", store: store);
        var report = await Scenarios.RelaysUnderFaultAsync(run, 400, TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(1), async () =>
        {
            var rounds = 0;
            var terminated = 0;
            for (; rounds < 10; rounds++)
            {
                var count = await store.TerminateDispatcherSessionsAsync(Ct);
                terminated += count;
                Scenarios.Log($"pg_terminate_backend: {count} relay session(s) ({run.ArrivalCount} deliveries so far)");
                await Task.Delay(TimeSpan.FromMilliseconds(800), Ct);
            }

            Assert.True(terminated > 0, "no relay session was found to terminate: the relays' application name did not reach pg_stat_activity");
            return $"the relays' PostgreSQL sessions (by application name) terminated with pg_terminate_backend {rounds} times, 0.8 s apart ({terminated} sessions)";
        });
        GuaranteeRun.AssertGuarantees(report);
    }

    [Fact]
    public async Task Scenario12_two_relay_processes_dispatching_from_one_SQLite_file_deliver_every_message_once_in_key_order()
    {
        await using var run = await GuaranteeRun.CreateAsync("sqlite-two-relays", store: new SqliteGuaranteeStore());
        var report = await Scenarios.RelaysUnderFaultAsync(run, 300, TimeSpan.FromMilliseconds(10), TimeSpan.Zero, () => Task.FromResult("none"));
        GuaranteeRun.AssertGuarantees(report);
        Assert.True(report.Duplicates == 0, $"duplicates from two processes on one SQLite file without any fault: {report.Duplicates}");
    }
}
