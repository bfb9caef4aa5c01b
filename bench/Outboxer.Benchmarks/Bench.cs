using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;
using RabbitMQ.Client;

namespace Outboxer.Benchmarks;

/// <summary>The workloads. Each one starts from a fresh schema and an empty queue, and reports one <see cref="Result"/>.</summary>
internal sealed partial class Bench(BenchOptions options, Report report, Broker broker, NpgsqlDataSource admin)
{
    private readonly Dictionary<int, double> _backlogRates = [];
    private readonly Dictionary<string, Result> _relay = [];
    private double? _ceiling;

    private static double Seconds(long ticks) => ticks / (double)Stopwatch.Frequency;

    private static void Log(string text) => Console.Error.WriteLine($"[bench] {text}");

    public async Task RunAsync()
    {
        if (options.Warmup)
        {
            Log("warm-up (not reported): JIT, pools and connections");
            await CeilingCoreAsync("warmup", options.Quick ? 1_000 : 5_000);
            await DrainCoreAsync("warmup", 2_000, options.BatchSize, 1);
            await SaturationCoreAsync("warmup", 1_000);
        }

        if (options.Runs("ceiling"))
        {
            // The denominator of two targets, on a noisy machine: the median of three runs.
            var runs = new List<Result>();
            for (var i = 0; i < 3; i++)
            {
                runs.Add(await CeilingCoreAsync("ceiling", options.Messages));
            }

            var ceiling = runs.OrderBy(r => r.MsgsPerSec).ElementAt(1);
            ceiling.Extra["runs_msgs_per_sec"] = new JsonArray([.. runs.Select(r => (JsonNode?)JsonValue.Create(Math.Round(r.MsgsPerSec, 0)))]);
            ceiling.Extra["peak_rss_mb_of_runs"] = Math.Round(runs.Max(r => r.PeakRssMb), 1);
            _ceiling = ceiling.MsgsPerSec;
            Add(ceiling);
        }

        if (options.Runs("W5"))
        {
            Add(await BulkEnqueueAsync());
        }

        if (options.Runs("W2"))
        {
            if (options.Relay)
            {
                AddRelay(await Profiled("relay-W2", MinimalRelay.Schema, () => RelayDrainAsync("relay-W2", options.Messages, atMostOnce: false)));
            }

            foreach (var batch in new[] { options.BatchSize }.Concat(options.BatchSweep.Where(b => b != options.BatchSize)))
            {
                var name = batch == options.BatchSize ? "W2" : $"W2-b{batch}";
                var result = batch == options.BatchSize
                    ? await Profiled(name, Database.Schema, () => DrainCoreAsync(name, options.Messages, batch, 1))
                    : await DrainCoreAsync(name, options.Messages, batch, 1);
                result.Target = "ratio >= 0.75";
                result.TargetMet = result.RatioToCeiling is { } ratio ? ratio >= 0.75 : null;
                _backlogRates[batch] = result.MsgsPerSec;
                Add(result);
            }

            if (options.Relay)
            {
                AddRelay(await RelayDrainAsync("relay-amo-W2", options.Messages, atMostOnce: true));
            }
        }

        if (options.Runs("W1"))
        {
            if (options.Relay)
            {
                AddRelay(await Profiled("relay-W1", MinimalRelay.Schema, () => RelaySaturationAsync("relay-W1", options.Messages, atMostOnce: false)));
            }

            foreach (var (name, many) in new[] { ("W1", false), ("W1-many", true) })
            {
                var result = await Profiled(name, Database.Schema, () => SaturationCoreAsync(name, options.Messages, many: many));
                result.Target = "ratio >= 0.55";
                result.TargetMet = result.RatioToCeiling is { } ratio ? ratio >= 0.55 : null;
                Add(result);
            }

            if (options.Relay)
            {
                AddRelay(await RelaySaturationAsync("relay-amo-W1", options.Messages, atMostOnce: true));
            }
        }

        if (options.Runs("W3a"))
        {
            if (options.Relay)
            {
                AddRelay(await RelayLatencyAsync("relay-W3a", loaded: false));
            }

            foreach (var (name, send) in new[] { ("W3a", false), ("W3a-send", true) })
            {
                var result = await LatencyInProcessAsync(name, send: send);
                result.Target = "p50 <= 2, p99 <= 5";
                result.TargetMet = result.Latency is { P50: <= 2, P99: <= 5 } && result.Complete;
                Add(result);
            }

            if (options.Loaded)
            {
                if (options.Relay)
                {
                    AddRelay(await RelayLatencyAsync("relay-W3a-loaded", loaded: true));
                }

                var result = await LatencyInProcessAsync("W3a-loaded", loaded: true);
                result.Target = "p99 <= 50";
                result.TargetMet = result.Latency is { P99: <= 50 } && result.Complete;
                Add(result);
            }
        }

        if (options.Runs("W3b"))
        {
            var result = await LatencyCrossProcessAsync();
            result.Target = "p50 <= 5, p99 <= 20";
            result.TargetMet = result.Latency is { P50: <= 5, P99: <= 20 } && result.Complete;
            Add(result);
            if (options.Loaded)
            {
                var loaded = await LatencyCrossProcessAsync("W3b-loaded", loaded: true);
                loaded.Target = "p99 <= 50";
                loaded.TargetMet = loaded.Latency is { P99: <= 50 } && loaded.Complete;
                Add(loaded);
            }
        }

        foreach (var dispatchers in new[] { 2, 4 })
        {
            var name = $"W4-{dispatchers}d";
            if (options.Runs(name))
            {
                var result = await DrainCoreAsync(name, options.Messages, options.BatchSize, dispatchers);
                if (_backlogRates.TryGetValue(options.BatchSize, out var single))
                {
                    result.Target = $"msg/s >= W2 ({single:F0})";
                    result.TargetMet = result.MsgsPerSec >= single;
                    result.Extra["ratio_to_w2"] = Math.Round(result.MsgsPerSec / single, 3);
                }

                Add(result);
            }
        }

        if (options.Runs("W4-1M"))
        {
            var result = await DrainCoreAsync("W4-1M", options.LargeBacklog, options.BatchSize, 1);
            if (_backlogRates.TryGetValue(options.BatchSize, out var single))
            {
                result.Target = $"msg/s >= 0.8 x W2 ({0.8 * single:F0})";
                result.TargetMet = result.MsgsPerSec >= 0.8 * single;
                result.Extra["ratio_to_w2"] = Math.Round(result.MsgsPerSec / single, 3);
            }

            Add(result);
        }

        if (options.WhatIf)
        {
            var w2 = await DrainCoreAsync("W2-whatif", options.Messages, options.BatchSize, 1, whatIf: true);
            w2.Target = "ratio >= 0.75";
            w2.TargetMet = w2.RatioToCeiling is { } ratio2 ? ratio2 >= 0.75 : null;
            MarkWhatIf(w2);
            Add(w2);

            var w1 = await SaturationCoreAsync("W1-whatif", options.Messages, whatIf: true);
            w1.Target = "ratio >= 0.55";
            w1.TargetMet = w1.RatioToCeiling is { } ratio1 ? ratio1 >= 0.55 : null;
            MarkWhatIf(w1);
            Add(w1);

            var w3 = await LatencyInProcessAsync("W3a-whatif", whatIf: true);
            w3.Target = "p50 <= 2, p99 <= 5";
            w3.TargetMet = w3.Latency is { P50: <= 2, P99: <= 5 } && w3.Complete;
            MarkWhatIf(w3);
            Add(w3);
        }

        await RunLogModeAsync();

        if (options.Soak)
        {
            var soak = new Soak(options, broker, admin);
            var rate = options.SoakRate ?? (report.Results.FirstOrDefault(r => r.Workload == "W1") is { } w1 ? 0.8 * w1.MsgsPerSec : 2_000);
            Add(await soak.RunAsync(rate));
        }
    }

    /// <summary>
    /// With <c>--pg-profile</c>: resets pg_stat_statements before the workload and reads, after it, where PostgreSQL's time went in
    /// <paramref name="schema"/> (see <see cref="PgProfile"/>); otherwise just runs it.
    /// </summary>
    private async Task<Result> Profiled(string name, string schema, Func<Task<Result>> workload)
    {
        if (!options.PgProfile)
        {
            return await workload();
        }

        // The workload resets the statistics itself (ProfileStartAsync) once its table is set up, so the profile is its own work.
        var result = await workload();
        result.PgProfile = await PgProfile.CollectAsync(admin, schema, result.Messages);
        return result;
    }

    /// <summary>With <c>--pg-profile</c>, resets PostgreSQL's statistics: called by a workload once its table and backlog are ready.</summary>
    private async Task ProfileStartAsync()
    {
        if (options.PgProfile)
        {
            await PgProfile.ResetAsync(admin);
        }
    }

    private void AddRelay(Result result)
    {
        if (!result.Workload.StartsWith("relay-amo", StringComparison.Ordinal))
        {
            _relay[result.Workload["relay-".Length..]] = result;
        }

        Add(result);
    }

    private static string WhatIfText(bool whatIf) =>
        whatIf ? "; WHAT-IF: NOTIFY trigger disabled, dispatcher connections synchronous_commit=off" : string.Empty;

    private async Task ResetAsync(bool whatIf)
    {
        await Database.ResetAsync(admin);
        if (whatIf)
        {
            await Database.DisableNotifyTriggerAsync(admin);
        }
    }

    private static void MarkWhatIf(Result result)
    {
        result.Extra["what_if"] = "library changes simulated from outside: the table's NOTIFY trigger disabled (producer commits no longer "
            + "serialized; cross-process wake-ups would need another mechanism), the dispatcher's claim and mark committed with "
            + "synchronous_commit=off (a lost claim or mark only means a publish again); producers stay durable";
    }

    /// <summary>The at-least-once minimal relay's workload an Outboxer workload compares with, or null.</summary>
    private static string? RelayCounterpart(string workload) => workload switch
    {
        _ when workload.StartsWith("relay-", StringComparison.Ordinal) => null,
        _ when workload.StartsWith("W1", StringComparison.Ordinal) => "W1",
        _ when workload.StartsWith("W2", StringComparison.Ordinal) || workload.StartsWith("W4", StringComparison.Ordinal) => "W2",
        _ when workload.EndsWith("-loaded", StringComparison.Ordinal) => "W3a-loaded",
        _ when workload.StartsWith("W3", StringComparison.Ordinal) => "W3a",
        _ => null,
    };

    private void Add(Result result)
    {
        if (!result.Workload.Contains("W3", StringComparison.Ordinal) && result.Workload != "W5" && !result.Workload.StartsWith("W6", StringComparison.Ordinal))
        {
            result.Ceiling ??= _ceiling;
        }

        if (RelayCounterpart(result.Workload) is { } key && _relay.TryGetValue(key, out var relay))
        {
            result.Relay = relay;
        }

        report.Add(result);
    }

    /// <summary>Frees what the previous workload left, so that each workload's RSS peak is its own as far as the GC allows.</summary>
    private static void Collect()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    /// <summary>
    /// The ceiling: RabbitMQ.Client alone publishes the same messages (256 bytes, persistent, mandatory, message id, content type,
    /// timestamp) to the same exchange, with publisher confirms and up to <c>--ceiling-in-flight</c> (1,000) unconfirmed at a time, on
    /// <c>--ceiling-connections</c> (1) connections with one channel each; no database. Messages/s from the first publish to the last
    /// message consumed.
    /// </summary>
    private async Task<Result> CeilingCoreAsync(string name, int messages)
    {
        var inFlight = options.CeilingInFlight;
        var connections = options.CeilingConnections;
        Log($"{name}: RabbitMQ.Client alone, {messages:N0} messages, confirms, {inFlight:N0} in flight, {connections} connection(s)");
        var tag = Payloads.NewTag();
        var routingKey = Payloads.RoutingKey("ceiling");
        var channelOptions = new CreateChannelOptions(
            publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true, outstandingPublisherConfirmationsRateLimiter: null);
        var open = new List<(IConnection Connection, IChannel Channel)>();
        for (var c = 0; c < connections; c++)
        {
            var connection = await Broker.Factory(options.RabbitMQUrl, "Outboxer.Benchmarks ceiling").CreateConnectionAsync();
            open.Add((connection, await connection.CreateChannelAsync(channelOptions)));
        }

        var failures = 0;
        var next = -1;
        var run = await broker.StartRunAsync(messages, tag);
        Collect();
        var rss = RssSampler.Start();
        var started = Stopwatch.GetTimestamp();
        var publishers = new Task[connections];
        for (var c = 0; c < connections; c++)
        {
            publishers[c] = PublishAllAsync(open[c].Channel, Math.Max(1, inFlight / connections));
        }

        await Task.WhenAll(publishers);
        var confirmed = Stopwatch.GetTimestamp();
        var complete = await run.WaitAsync(options.Timeout);
        var ended = complete ? run.LastTimestamp : Stopwatch.GetTimestamp();
        var peak = await rss.StopAsync();
        broker.EndRun();
        foreach (var (connection, channel) in open)
        {
            await channel.CloseAsync();
            await connection.CloseAsync();
            connection.Dispose();
        }

        var result = new Result
        {
            Workload = name,
            Messages = complete ? messages : run.Distinct,
            Seconds = Seconds(ended - started),
            PeakRssMb = peak,
            Complete = complete,
        };
        result.Extra["in_flight"] = inFlight;
        result.Extra["connections"] = connections;
        result.Extra["confirmed_seconds"] = Math.Round(Seconds(confirmed - started), 3);
        result.Extra["publish_failures"] = failures;
        AddConsumerCounts(result, run);
        AddThreadPool(result, rss);
        return result;

        // One publisher per channel: up to `limit` unconfirmed publishes at a time, each completing on its confirm.
        async Task PublishAllAsync(IChannel channel, int limit)
        {
            using var slots = new SemaphoreSlim(limit);
            var pending = 1;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            int i;
            while ((i = Interlocked.Increment(ref next)) < messages)
            {
                await slots.WaitAsync();
                Interlocked.Increment(ref pending);
                _ = PublishAsync(channel, i);
            }

            if (Interlocked.Decrement(ref pending) == 0)
            {
                done.TrySetResult();
            }

            await done.Task;

            async Task PublishAsync(IChannel channel, int sequence)
            {
                try
                {
                    var properties = new BasicProperties
                    {
                        ContentType = "application/octet-stream",
                        DeliveryMode = DeliveryModes.Persistent,
                        MessageId = Guid.CreateVersion7().ToString(),
                        Timestamp = new AmqpTimestamp(TimeProvider.System.GetUtcNow().ToUnixTimeSeconds()),
                    };
                    await channel.BasicPublishAsync(Payloads.Exchange, routingKey, mandatory: true, properties, Payloads.Body(sequence, tag));
                }
                catch (Exception ex)
                {
                    if (Interlocked.Increment(ref failures) == 1)
                    {
                        Log($"ceiling: publish failed: {ex.Message}");
                    }
                }
                finally
                {
                    slots.Release();
                    if (Interlocked.Decrement(ref pending) == 0)
                    {
                        done.TrySetResult();
                    }
                }
            }
        }
    }

    /// <summary>
    /// W2 (and W4): <paramref name="messages"/> rows committed before any dispatcher starts (filled in SQL, untimed), then
    /// <paramref name="dispatcherCount"/> dispatchers start together; messages/s from their start to the last message consumed.
    /// </summary>
    private async Task<Result> DrainCoreAsync(string name, int messages, int batchSize, int dispatcherCount, bool whatIf = false)
    {
        Log($"{name}: backlog of {messages:N0}, {dispatcherCount} dispatcher(s), MessageBatchSize {batchSize}{WhatIfText(whatIf)}");
        await ResetAsync(whatIf);
        var tag = Payloads.NewTag();
        await Database.FillAsync(admin, messages, tag, Payloads.RoutingKey(name));
        await using var dispatchers = await Dispatchers.CreateAsync(options, dispatcherCount, batchSize, whatIf);
        await ProfileStartAsync();
        var run = await broker.StartRunAsync(messages, tag);
        Collect();
        var rss = RssSampler.Start();
        var started = Stopwatch.GetTimestamp();
        dispatchers.StartAll();
        var complete = await run.WaitAsync(options.Timeout);
        var ended = complete ? run.LastTimestamp : Stopwatch.GetTimestamp();
        var peak = await rss.StopAsync();
        broker.EndRun();

        var result = new Result
        {
            Workload = name,
            Messages = complete ? messages : run.Distinct,
            Seconds = Seconds(ended - started),
            PeakRssMb = peak,
            BatchSize = batchSize,
            Dispatchers = dispatcherCount,
            Complete = complete,
            Ceiling = _ceiling,
            Profile = dispatchers.Profile(Seconds(ended - started)),
        };
        result.Extra["dispatcher_errors"] = dispatchers.Errors();
        if (dispatcherCount > 1)
        {
            result.Extra["dispatcher_layout"] = "in this process: one Outbox, NpgsqlDataSource and RabbitMQPublisher (AMQP connection) each";
        }

        AddConsumerCounts(result, run);
        AddThreadPool(result, rss);
        return result;
    }

    /// <summary>
    /// W1: a dispatcher runs while 4 producer tasks commit transactions of 10 messages as fast as they can, until
    /// <paramref name="messages"/>; messages/s from the first commit to the last message consumed, and commit-to-consumer latency.
    /// </summary>
    private async Task<Result> SaturationCoreAsync(string name, int messages, bool whatIf = false, bool many = false)
    {
        var perTransaction = options.MessagesPerTransaction;
        Log($"{name}: {options.Producers} producers x transactions of {perTransaction} ({(many ? "EnqueueManyAsync of the 10" : "EnqueueAsync x 10")}), {messages:N0} messages, dispatcher running{WhatIfText(whatIf)}");
        await ResetAsync(whatIf);
        var tag = Payloads.NewTag();
        var routingKey = Payloads.RoutingKey(name);
        await using var dispatchers = await Dispatchers.CreateAsync(options, 1, options.BatchSize, whatIf);
        var outbox = dispatchers.First;
        var dataSource = dispatchers.ApplicationDataSource;
        var commits = new long[messages];
        var transactions = messages / perTransaction;
        var next = -1;
        await ProfileStartAsync();
        var run = await broker.StartRunAsync(messages, tag);
        Collect();
        var rss = RssSampler.Start();
        dispatchers.StartAll();
        var producing = Stopwatch.GetTimestamp();
        var producers = new Task[options.Producers];
        for (var p = 0; p < producers.Length; p++)
        {
            producers[p] = Task.Run(ProduceAsync);
        }

        await Task.WhenAll(producers);
        var produced = Stopwatch.GetTimestamp();
        var complete = await run.WaitAsync(options.Timeout);
        var ended = complete ? run.LastTimestamp : Stopwatch.GetTimestamp();
        var peak = await rss.StopAsync();
        broker.EndRun();

        var firstCommit = commits.Where(t => t != 0).DefaultIfEmpty(producing).Min();
        var result = new Result
        {
            Workload = name,
            Messages = complete ? messages : run.Distinct,
            Seconds = Seconds(ended - firstCommit),
            Latency = Latencies(commits, run.Received, 0, out var negative),
            PeakRssMb = peak,
            BatchSize = options.BatchSize,
            Complete = complete,
            Ceiling = _ceiling,
            Profile = dispatchers.Profile(Seconds(ended - producing)),
        };
        result.Extra["dispatcher_errors"] = dispatchers.Errors();
        result.Extra["producers"] = options.Producers;
        result.Extra["messages_per_transaction"] = perTransaction;
        result.Extra["producer_shape"] = many ? "EnqueueManyAsync of the transaction's 10 messages" : "EnqueueAsync x 10 per transaction";
        result.Extra["produce_seconds"] = Math.Round(Seconds(produced - producing), 3);
        result.Extra["commit_rate"] = Math.Round(messages / Seconds(produced - producing), 0);
        result.Extra["negative_latencies"] = negative;
        AddConsumerCounts(result, run);
        AddThreadPool(result, rss);
        return result;

        async Task ProduceAsync()
        {
            int k;
            while ((k = Interlocked.Increment(ref next)) < transactions)
            {
                await using var connection = await dataSource.OpenConnectionAsync();
                await using var transaction = await connection.BeginTransactionAsync();
                var first = k * perTransaction;
                if (many)
                {
                    var batch = new OutboxMessage[perTransaction];
                    for (var j = 0; j < perTransaction; j++)
                    {
                        batch[j] = Payloads.Message(first + j, tag, routingKey);
                    }

                    await outbox.EnqueueManyAsync(transaction, batch);
                }
                else
                {
                    for (var j = 0; j < perTransaction; j++)
                    {
                        await outbox.EnqueueAsync(transaction, Payloads.Message(first + j, tag, routingKey));
                    }
                }

                await transaction.CommitAsync();
                var committed = Stopwatch.GetTimestamp();
                for (var j = 0; j < perTransaction; j++)
                {
                    commits[first + j] = committed;
                }
            }
        }
    }

    private int LatencyTotal => (int)(options.LatencyRate * (options.LatencyWarmupSeconds + options.LatencySeconds));

    private int LatencyWarmup => (int)(options.LatencyRate * options.LatencyWarmupSeconds);

    /// <summary>W3a: one message per transaction at a steady rate, the producer in the dispatcher's process (local wake-up).</summary>
    private async Task<Result> LatencyInProcessAsync(string name = "W3a", bool whatIf = false, bool send = false, bool loaded = false)
    {
        Log($"{name}: {options.LatencyRate} msg/s for {options.LatencySeconds} s (+{options.LatencyWarmupSeconds} s warm-up), producer in this process"
            + (send ? " through SendWithinTransactionAsync (empty callback)" : " (EnqueueAsync in its own transaction)") + (loaded ? $", {Environment.ProcessorCount} CPU burners" : string.Empty) + WhatIfText(whatIf));
        await ResetAsync(whatIf);
        var tag = Payloads.NewTag();
        await using var dispatchers = await Dispatchers.CreateAsync(options, 1, options.BatchSize, whatIf);
        var commits = new long[LatencyTotal];
        var run = await broker.StartRunAsync(LatencyTotal, tag);
        dispatchers.StartAll();
        await Producer.WarmUpAsync(dispatchers.First, dispatchers.ApplicationDataSource, Payloads.RoutingKey(name));
        await Task.Delay(300); // the dispatcher's first (empty) claim and LISTEN
        Collect();
        await using var burners = loaded ? Burners.Start() : null;
        var rss = RssSampler.Start();
        var outbox = dispatchers.First;
        var routingKey = Payloads.RoutingKey(name);
        var stats = send
            ? await Producer.RunPacedAsync(
                async (sequence, ct) =>
                {
                    await outbox.SendWithinTransactionAsync(Payloads.Message(sequence, tag, routingKey), static (_, _) => Task.CompletedTask, ct);
                    return Stopwatch.GetTimestamp();
                },
                options.LatencyRate,
                commits,
                CancellationToken.None)
            : await Producer.RunPacedAsync(outbox, dispatchers.ApplicationDataSource, tag, routingKey, options.LatencyRate, commits, CancellationToken.None);
        var complete = await run.WaitAsync(TimeSpan.FromSeconds(60));
        var peak = await rss.StopAsync();
        broker.EndRun();
        var result = LatencyResult(name, stats, commits, run, complete, peak, dispatchers.Profile(options.LatencySeconds + options.LatencyWarmupSeconds));
        result.Extra["dispatcher_errors"] = dispatchers.Errors();
        result.Extra["producer_shape"] = send
            ? "SendWithinTransactionAsync with an empty callback (the outbox opens and commits the transaction)"
            : "EnqueueAsync in the producer's own transaction";
        if (burners is not null)
        {
            result.Extra["cpu_burners"] = burners.Count;
        }

        AddThreadPool(result, rss, LatencyTotal);
        return result;
    }

    /// <summary>
    /// W3b: as W3a, but the producer is this same program started again in <c>producer</c> mode: only PostgreSQL connects the two
    /// processes (the insert trigger's NOTIFY wakes the dispatcher).
    /// </summary>
    private async Task<Result> LatencyCrossProcessAsync(string name = "W3b", bool loaded = false)
    {
        Log($"{name}: {options.LatencyRate} msg/s for {options.LatencySeconds} s (+{options.LatencyWarmupSeconds} s warm-up), producer in a child process"
            + (loaded ? $", {Environment.ProcessorCount} CPU burners" : string.Empty));
        await Database.ResetAsync(admin);
        var tag = Payloads.NewTag();
        var routingKey = Payloads.RoutingKey(name);
        await using var dispatchers = await Dispatchers.CreateAsync(options, 1, options.BatchSize);
        var run = await broker.StartRunAsync(LatencyTotal, tag);
        dispatchers.StartAll();
        await Task.Delay(300);
        var commitsFile = Path.Combine(Path.GetTempPath(), $"outboxer-bench-{Environment.ProcessId}-{tag}.bin");

        var start = new ProcessStartInfo
        {
            FileName = Environment.ProcessPath ?? "dotnet",
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (string.Equals(Path.GetFileNameWithoutExtension(start.FileName), "dotnet", StringComparison.OrdinalIgnoreCase))
        {
            start.ArgumentList.Add(typeof(Program).Assembly.Location);
        }

        foreach (var arg in new[]
        {
            "producer", "--postgres", options.PostgresUrl, "--rate", options.LatencyRate.ToString(CultureInfo.InvariantCulture),
            "--total", LatencyTotal.ToString(CultureInfo.InvariantCulture), "--tag", tag.ToString(CultureInfo.InvariantCulture),
            "--routing-key", routingKey, "--out", commitsFile,
        })
        {
            start.ArgumentList.Add(arg);
        }

        Collect();
        await using var burners = loaded ? Burners.Start() : null;
        var rss = RssSampler.Start();
        var spawned = Stopwatch.GetTimestamp();
        using var child = Process.Start(start) ?? throw new InvalidOperationException("Could not start the producer process.");
        var output = await child.StandardOutput.ReadToEndAsync();
        await child.WaitForExitAsync();
        var complete = await run.WaitAsync(TimeSpan.FromSeconds(60));
        var peak = await rss.StopAsync();
        broker.EndRun();
        if (child.ExitCode != 0 || !File.Exists(commitsFile))
        {
            throw new InvalidOperationException($"The producer process failed (exit code {child.ExitCode}): {output}");
        }

        var commits = Producer.ReadCommits(commitsFile, out var frequency);
        File.Delete(commitsFile);
        if (frequency != Stopwatch.Frequency)
        {
            throw new InvalidOperationException($"The producer's Stopwatch frequency {frequency} differs from ours ({Stopwatch.Frequency}): timestamps are not comparable.");
        }

        var first = commits.Where(t => t != 0).DefaultIfEmpty(0).Min();
        if (first < spawned)
        {
            throw new InvalidOperationException("The producer's commit timestamps precede its start: the processes do not share Stopwatch's clock.");
        }

        var line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Last(l => l.StartsWith('{'));
        var stats = PacedStats.FromJson(JsonNode.Parse(line)!.AsObject(), first, commits.Max());
        var result = LatencyResult(name, stats, commits, run, complete, peak, dispatchers.Profile(options.LatencySeconds + options.LatencyWarmupSeconds));
        result.Extra["dispatcher_errors"] = dispatchers.Errors();
        if (burners is not null)
        {
            result.Extra["cpu_burners"] = burners.Count;
        }

        AddThreadPool(result, rss, LatencyTotal);
        result.Extra["producer_process"] = "this program in producer mode; Stopwatch (CLOCK_MONOTONIC) timestamps shared across processes";
        return result;
    }

    private Result LatencyResult(string name, PacedStats stats, long[] commits, ConsumerRun run, bool complete, double peak, JsonObject? profile)
    {
        var warmup = LatencyWarmup;
        var measured = commits.Length - warmup;
        if (options.DumpLatency)
        {
            // One line per message: sequence, commit time (ms since the first commit), commit-to-consumer latency (ms).
            var path = Path.Combine(options.ArtifactsDirectory ?? ".", $"latency-{name}.csv");
            var first = commits.Where(t => t != 0).DefaultIfEmpty(0).Min();
            using var writer = new StreamWriter(path);
            writer.WriteLine("sequence,commit_ms,latency_ms");
            for (var i = 0; i < commits.Length; i++)
            {
                if (commits[i] != 0 && run.Received[i] != 0)
                {
                    writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{i},{(commits[i] - first) * 1000.0 / Stopwatch.Frequency:F3},{(run.Received[i] - commits[i]) * 1000.0 / Stopwatch.Frequency:F3}"));
                }
            }

            Log($"{name}: per-message latencies written to {path}");
        }

        var result = new Result
        {
            Workload = name,
            Messages = measured,
            Seconds = Seconds(commits[^1] - commits[warmup]),
            Latency = Latencies(commits, run.Received, warmup, out var negative),
            PeakRssMb = peak,
            BatchSize = options.BatchSize,
            Complete = complete && stats.Failures == 0,
            Profile = profile,
        };
        result.Extra["offered_rate"] = options.LatencyRate;
        result.Extra["warmup_messages_excluded"] = warmup;
        result.Extra["negative_latencies"] = negative;
        foreach (var (key, value) in stats.ToJson())
        {
            result.Extra[key] = value?.DeepClone();
        }

        AddConsumerCounts(result, run);
        return result;
    }

    /// <summary>W5: one transaction of 10,000 messages through EnqueueManyAsync (3 runs, the median reported); no dispatcher.</summary>
    private async Task<Result> BulkEnqueueAsync()
    {
        const string name = "W5";
        const int runs = 3;
        var messages = options.BulkMessages;
        Log($"{name}: one transaction of {messages:N0} messages through EnqueueManyAsync, {runs} runs");
        await Database.ResetAsync(admin);
        await using var dataSource = NpgsqlDataSource.Create(options.PostgresUrl);
        var store = new PostgreSqlOutboxStore(dataSource, Database.StoreOptions);
        await using var outbox = new Outbox(store, new RabbitMQPublisher(new Uri(options.RabbitMQUrl)));
        var tag = Payloads.NewTag();
        var routingKey = Payloads.RoutingKey(name);
        var rates = new List<double>();
        var seconds = new List<double>();
        Collect();
        var rss = RssSampler.Start();
        for (var r = 0; r < runs; r++)
        {
            var batch = new OutboxMessage[messages];
            for (var i = 0; i < messages; i++)
            {
                batch[i] = Payloads.Message(((long)r * messages) + i, tag, routingKey);
            }

            await using var connection = await dataSource.OpenConnectionAsync();
            var started = Stopwatch.GetTimestamp();
            await using (var transaction = await connection.BeginTransactionAsync())
            {
                var added = await outbox.EnqueueManyAsync(transaction, batch);
                await transaction.CommitAsync();
                if (added != messages)
                {
                    throw new InvalidOperationException($"EnqueueManyAsync returned {added}, expected {messages}.");
                }
            }

            var elapsed = Seconds(Stopwatch.GetTimestamp() - started);
            seconds.Add(elapsed);
            rates.Add(messages / elapsed);
        }

        var peak = await rss.StopAsync();
        var stored = await Database.CountAsync(admin, pendingOnly: true);
        if (stored != (long)runs * messages)
        {
            throw new InvalidOperationException($"W5 stored {stored} rows, expected {runs * messages}.");
        }

        var median = seconds.Order().ElementAt(runs / 2);
        var result = new Result
        {
            Workload = name,
            Messages = messages,
            Seconds = median,
            PeakRssMb = peak,
            Target = "msg/s >= 50,000",
        };
        result.TargetMet = result.MsgsPerSec >= 50_000;
        result.Extra["runs_msgs_per_sec"] = new JsonArray([.. rates.Select(x => (JsonNode?)JsonValue.Create(Math.Round(x, 0)))]);
        result.Extra["timed"] = "BEGIN to COMMIT done, median of 3 runs";
        AddThreadPool(result, rss);
        return result;
    }

    private static Latency? Latencies(long[] commits, long[] received, int from, out int negative)
    {
        var milliseconds = new List<double>(commits.Length - from);
        negative = 0;
        for (var i = from; i < commits.Length; i++)
        {
            if (commits[i] != 0 && received[i] != 0)
            {
                var ms = (received[i] - commits[i]) * 1000.0 / Stopwatch.Frequency;
                if (ms < 0)
                {
                    negative++;
                }

                milliseconds.Add(ms);
            }
        }

        return Latency.Of(milliseconds);
    }

    private static void AddThreadPool(Result result, RssSampler rss, int? cpuMessages = null)
    {
        if (rss.CpuSeconds is { } cpu && (cpuMessages ?? result.Messages) is > 0 and var count)
        {
            result.CpuPer10k = cpu.ToDictionary(p => p.Key, p => p.Value * 10_000 / count, StringComparer.Ordinal);
        }

        result.Extra["threadpool_max_queue"] = rss.MaxThreadPoolQueue;
        result.Extra["threadpool_max_threads"] = rss.MaxThreadPoolThreads;
        result.Extra["managed_heap_mb_max"] = Math.Round(rss.MaxManagedMegabytes, 1);
        result.Extra["cpu_share"] = rss.CpuShare?.DeepClone();
    }

    private static void AddConsumerCounts(Result result, ConsumerRun run)
    {
        result.Extra["consumed"] = run.Distinct;
        result.Extra["duplicates"] = run.Duplicates;
        result.Extra["stray"] = run.Stray;
    }
}
