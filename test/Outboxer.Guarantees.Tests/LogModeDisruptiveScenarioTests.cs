using System.Diagnostics;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// Log mode scenarios that stop and start servers: they run one at a time with the other disruptive scenarios
/// (<c>Category=Disruptive</c>). The broker is the shared one (eng/servers.sh); the database that is restarted and crashed is a private
/// server of the scenario (<see cref="PrivatePostgres"/>), never the shared one.
/// </summary>
[Collection(nameof(DisruptiveCollection))]
[Trait("Category", "Disruptive")]
public sealed class LogModeDisruptiveScenarioTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task LogMode_rabbitmq_restarted_mid_run_loses_nothing_and_keeps_key_order()
    {
        await using var run = await LogModeRun.CreateAsync("logmode-rabbitmq-restart");
        var first = await run.StartRelayAsync();
        await first.WaitForActiveAsync();
        await run.StartRelayAsync();
        var producing = run.ProduceAsync(400, TimeSpan.FromMilliseconds(25), Ct);

        await RestartAsync(run, "rabbitmq");

        await producing;
        var report = await run.VerifyAsync("2 relay processes; RabbitMQ stopped and started (eng/servers.sh) while producing and relaying");
        GuaranteeRun.AssertGuarantees(report);
    }

    /// <summary>
    /// One relay process: it reconnects after each crash and resumes from the slot. The server keeps a slot's position as of its last
    /// checkpoint, so after a crash it streams again transactions the relay had acknowledged since; the relay counts each such message
    /// (and those it had confirmed but not yet acknowledged, or had in flight, when the connection broke) as a possible duplicate, which
    /// the report's <c>uncertain</c> shows. The report counts as one with a crash (the database's): in 2 of 6 runs 1 or 2 more
    /// duplicates arrived than the relay counted, not explained yet, so the duplicates are reported, not asserted.
    /// </summary>
    [Fact]
    public async Task LogMode_postgresql_crashed_twice_mid_run_loses_nothing_and_keeps_key_order()
    {
        await using var postgres = await PrivatePostgres.StartAsync();
        await using var run = await LogModeRun.CreateAsync("logmode-postgres-crash", postgres.ConnectionString);
        var relay = await run.StartRelayAsync();
        await relay.WaitForActiveAsync();
        var producing = run.ProduceAsync(500, TimeSpan.FromMilliseconds(10), Ct);
        var faults = new List<string> { $"1 relay process; a private PostgreSQL 15 (127.0.0.1:{postgres.Port}, fsync=off)" };

        // A crash, twice: the postmaster and every backend killed with SIGKILL, then crash recovery. (A graceful `pg_ctl restart -m fast`
        // is not used: in 2 of 7 runs it waited for the streaming relay's walsender past pg_ctl's 60 s; see the README's log mode section.)
        for (var crash = 0; crash < 2; crash++)
        {
            await run.WaitForArrivalsAsync(run.ArrivalCount + 60);
            var restart = Stopwatch.StartNew();
            var before = run.ArrivalCount;
            var pid = await postgres.CrashAndStartAsync();
            faults.Add($"SIGKILL of the postmaster (pid {pid}) and all its processes after {before} arrivals, then start with crash recovery ({restart.ElapsedMilliseconds} ms)");
        }

        await producing;
        faults.Add($"{run.FailedTransactions} producer transactions failed (their outcome counted as rolled back before COMMIT, unknown during it)");
        var report = await run.VerifyAsync(string.Join("; ", faults), crash: true);
        GuaranteeRun.AssertGuarantees(report);
    }

    /// <summary>After two seconds of traffic, stops a server, waits a second and starts it again (and starts it in any case).</summary>
    private static async Task RestartAsync(LogModeRun run, string server)
    {
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        var restarted = false;
        try
        {
            TestContext.Current.TestOutputHelper?.WriteLine($"stopping {server} ({run.ArrivalCount} deliveries so far)");
            await Repository.RunServersScriptAsync("stop", server);
            await Task.Delay(TimeSpan.FromSeconds(1), Ct);
            await Repository.RunServersScriptAsync("start", server);
            restarted = true;
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
