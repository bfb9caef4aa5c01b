using Npgsql;
using Outboxer.Testing;
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

    /// <summary>
    /// Three samples/Outboxer.Relay processes that dispatch and also send: each commits <paramref name="sends"/> transactions of one
    /// keyless message with <c>SendWithinTransactionAsync</c>, 20 ms apart, so that each row is written already leased to the sender's
    /// dispatcher and published from memory right after the commit, without a claim. Meanwhile the test's producer commits 300
    /// transactions (keys and all) that the relays claim. Eight times at random points one relay is killed with SIGKILL and replaced by
    /// a new sending relay: every other kill comes right after the victim printed a <c>committed</c> line (so that the message it just
    /// committed is likely still unpublished or unmarked, and must be claimed by another relay once its lease runs out), the others at
    /// once (possibly mid-transaction: such a message is decided by its row). The survivors finish their sends and drain.
    /// </summary>
    public static async Task<GuaranteeReport> RelaysSendingAfterCommitKilledWithSigkillAsync(GuaranteeRun run, int sends = 300)
    {
        var pause = TimeSpan.FromMilliseconds(20);
        var relays = new List<RelayProcess>();
        int kills = 0, killedAfterCommit = 0;
        var seed = Environment.TickCount;
        var random = new Random(seed);
        try
        {
            for (var i = 0; i < 3; i++)
            {
                relays.Add(await run.StartSendingRelayAsync(sends, pause));
            }

            var producing = run.ProduceAsync(300, TimeSpan.FromMilliseconds(20), cancellationToken: Ct);
            while (kills < 8)
            {
                await Task.Delay(random.Next(600, 1800), Ct);
                var victim = random.Next(relays.Count);
                var arrivedBefore = run.ArrivalCount;
                var afterCommit = kills % 2 == 0 && await relays[victim].KillOnNextLineAsync("committed ", TimeSpan.FromSeconds(2));
                if (!afterCommit)
                {
                    await relays[victim].KillAsync();
                }

                kills++;
                killedAfterCommit += afterCommit ? 1 : 0;
                Log($"SIGKILL {kills}{(afterCommit ? " right after a commit" : string.Empty)}: relay pid {relays[victim].Id} ({arrivedBefore} deliveries, {run.RelayCommittedCount} relay commits so far)");
                await relays[victim].DisposeAsync();
                relays[victim] = await run.StartSendingRelayAsync(sends, pause);
            }

            await producing;

            // Every message must have an outcome before the checks: the surviving relays finish their sends (killed ones ended theirs).
            await Task.WhenAll(relays.Select(relay => relay.SendsDone)).WaitAsync(TimeSpan.FromSeconds(120), Ct);
            var report = await run.VerifyAsync(
                crash: true,
                faults: $"{kills} SIGKILLs of relay processes that also send after commit ({killedAfterCommit} right after a commit; 3 alive at a time, {sends} SendWithinTransactionAsync transactions each, random seed {seed}){DedupNote(run.Broker)}");
            Log($"relays committed {report.RelaySent} messages: {report.SentAfterCommit} sent after commit by their sender, {report.ClaimedAfterLease} claimed after a lease; {report.RelayInDoubt} without an outcome line, {report.RelayInDoubtCommitted} of them committed");
            return report;
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

    /// <summary>
    /// Two relay processes (as <see cref="GuaranteeRun.RelayOptions"/> says) dispatch while <paramref name="transactions"/> transactions
    /// commit (or roll back), <paramref name="pause"/> apart; after <paramref name="faultAfter"/> of traffic <paramref name="fault"/> runs
    /// and returns what it did, which the report's <c>faults</c> field records. No relay is killed: the report is one without a crash,
    /// where the duplicates may not exceed the possible duplicates the relays counted.
    /// </summary>
    public static async Task<GuaranteeReport> RelaysUnderFaultAsync(GuaranteeRun run, int transactions, TimeSpan pause, TimeSpan faultAfter, Func<Task<string>> fault)
    {
        await using var first = await run.StartRelayAsync();
        await using var second = await run.StartRelayAsync();
        var producing = run.ProduceAsync(transactions, pause, cancellationToken: Ct);
        await Task.Delay(faultAfter, Ct);
        var faults = await fault();
        await producing;
        Log($"{run.FailedTransactions} producer transaction(s) failed; the relays counted {first.Uncertain} + {second.Uncertain} possible duplicates");
        var options = run.RelayOptions;
        return await run.VerifyAsync(
            crash: false,
            faults: $"{faults}; {run.FailedTransactions} producer transactions failed; 2 relays on {run.Store.DisplayName}, lease {options.Lease.TotalSeconds} s, publish timeout {options.PublishTimeout.TotalSeconds} s, MaxAttempts {options.MaxAttempts}");
    }

    /// <summary>
    /// Stalls <paramref name="pids"/> (a main process first, then its children; the list taken again once it is stopped) with SIGSTOP for <paramref name="stall"/>, then resumes them with
    /// SIGCONT, which a finally block sends in any case: a server must never stay stopped for the other tests.
    /// </summary>
    public static async Task StallAsync(GuaranteeRun run, string name, Func<IReadOnlyList<int>> pids, TimeSpan stall)
    {
        var stopped = new List<int>();
        try
        {
            Log($"SIGSTOP {name} for {stall.TotalSeconds} s ({run.ArrivalCount} deliveries so far)");

            // The first process (the postmaster) alone, so that it forks no new child while the others are stopped; its children
            // in one call; then any child the list missed.
            var all = pids();
            await ServerProcesses.SignalAsync("STOP", [all[0]]);
            stopped.Add(all[0]);
            var children = all.Skip(1).ToList();
            await ServerProcesses.SignalAsync("STOP", children, someMayHaveEnded: true);
            stopped.AddRange(children);
            var missed = pids().Except(stopped).ToList();
            await ServerProcesses.SignalAsync("STOP", missed, someMayHaveEnded: true);
            stopped.AddRange(missed);
            await Task.Delay(stall, Ct);
        }
        finally
        {
            // Children first, the parent (stopped first) last.
            if (stopped.Count > 1)
            {
                await ServerProcesses.SignalAsync("CONT", stopped.Skip(1).ToList(), someMayHaveEnded: true);
            }

            await ServerProcesses.SignalAsync("CONT", stopped.Take(1).ToList());
            Log($"SIGCONT {name} ({stopped.Count} processes; {run.ArrivalCount} deliveries so far)");
        }
    }

    /// <summary>The PostgreSQL postmaster, then its children (backends, checkpointer, WAL writer and the rest).</summary>
    public static IReadOnlyList<int> PostgresProcesses()
    {
        var postmaster = ServerProcesses.PostgresPostmaster();
        return [postmaster, .. ServerProcesses.ChildrenOf(postmaster)];
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
