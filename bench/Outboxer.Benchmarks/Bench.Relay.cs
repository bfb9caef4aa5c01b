using System.Diagnostics;
using Npgsql;

namespace Outboxer.Benchmarks;

/// <summary>The minimal relay's workloads (see <see cref="MinimalRelay"/>): W2, W1 and W3a as Outboxer's, on its own table.</summary>
internal sealed partial class Bench
{
    private static void MarkRelay(Result result, MinimalRelay relay)
    {
        result.Extra["relay"] = $"hand-written minimal relay on Npgsql + RabbitMQ.Client, {relay.Guarantee}; claims up to {MinimalRelay.BatchSize} rows "
            + $"(FOR UPDATE SKIP LOCKED), up to {MinimalRelay.InFlight:N0} confirms in flight, {(relay.Guarantee.StartsWith("at least", StringComparison.Ordinal) ? MinimalRelay.Workers : 1)} worker(s)";
        result.Extra["guarantee"] = relay.Guarantee;
        result.Extra["relay_batches"] = relay.Batches;
        result.Extra["relay_empty_claims"] = relay.EmptyClaims;
        result.Extra["publish_failures"] = relay.PublishFailures;
    }

    /// <summary>relay-W2: a backlog of <paramref name="messages"/> rows in the relay's table, then the relay starts.</summary>
    private async Task<Result> RelayDrainAsync(string name, int messages, bool atMostOnce)
    {
        Log($"{name}: minimal relay ({(atMostOnce ? "at most once, upper bound" : "at least once")}), backlog of {messages:N0}");
        await MinimalRelay.ResetAsync(admin);
        var tag = Payloads.NewTag();
        await MinimalRelay.FillAsync(admin, messages, tag);
        ConsumerRun run;
        long started, ended;
        bool complete;
        double peak;
        RssSampler rss;
        await using (var relay = await MinimalRelay.CreateAsync(options.PostgresUrl, options.RabbitMQUrl, Payloads.RoutingKey(name), atMostOnce))
        {
            await ProfileStartAsync();
            run = await broker.StartRunAsync(messages, tag);
            Collect();
            rss = RssSampler.Start();
            started = Stopwatch.GetTimestamp();
            relay.Start();
            complete = await run.WaitAsync(options.Timeout);
            ended = complete ? run.LastTimestamp : Stopwatch.GetTimestamp();
            peak = await rss.StopAsync();
            broker.EndRun();
            var result = new Result
            {
                Workload = name,
                Messages = complete ? messages : run.Distinct,
                Seconds = Seconds(ended - started),
                PeakRssMb = peak,
                BatchSize = MinimalRelay.BatchSize,
                Complete = complete,
                Ceiling = _ceiling,
            };
            MarkRelay(result, relay);
            AddConsumerCounts(result, run);
            AddThreadPool(result, rss);
            return result;
        }
    }

    /// <summary>
    /// relay-W1: 4 producers commit transactions of 10 messages, each transaction's messages in ONE statement (unnest of a bytea[]),
    /// and wake the relay in memory after the commit; messages/s from the first commit to the last message consumed.
    /// </summary>
    private async Task<Result> RelaySaturationAsync(string name, int messages, bool atMostOnce)
    {
        var perTransaction = options.MessagesPerTransaction;
        Log($"{name}: minimal relay ({(atMostOnce ? "at most once, upper bound" : "at least once")}), {options.Producers} producers x transactions of {perTransaction} in one INSERT, {messages:N0} messages");
        await MinimalRelay.ResetAsync(admin);
        var tag = Payloads.NewTag();
        await using var producerSource = MinimalRelay.ProducerDataSource(options.PostgresUrl);
        await using var relay = await MinimalRelay.CreateAsync(options.PostgresUrl, options.RabbitMQUrl, Payloads.RoutingKey(name), atMostOnce);
        var commits = new long[messages];
        var transactions = messages / perTransaction;
        var next = -1;
        await ProfileStartAsync();
        var run = await broker.StartRunAsync(messages, tag);
        Collect();
        var rss = RssSampler.Start();
        relay.Start();
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
            BatchSize = MinimalRelay.BatchSize,
            Complete = complete,
            Ceiling = _ceiling,
        };
        MarkRelay(result, relay);
        result.Extra["producers"] = options.Producers;
        result.Extra["messages_per_transaction"] = perTransaction;
        result.Extra["producer_shape"] = "one INSERT ... SELECT unnest($1::bytea[]) per transaction";
        result.Extra["produce_seconds"] = Math.Round(Seconds(produced - producing), 3);
        result.Extra["commit_rate"] = Math.Round(messages / Seconds(produced - producing), 0);
        result.Extra["negative_latencies"] = negative;
        AddConsumerCounts(result, run);
        AddThreadPool(result, rss);
        return result;

        async Task ProduceAsync()
        {
            int k;
            var payloads = new byte[perTransaction][];
            while ((k = Interlocked.Increment(ref next)) < transactions)
            {
                var first = k * perTransaction;
                for (var j = 0; j < perTransaction; j++)
                {
                    payloads[j] = Payloads.Body(first + j, tag);
                }

                await using (var connection = await producerSource.OpenConnectionAsync())
                await using (var transaction = await connection.BeginTransactionAsync())
                {
                    await MinimalRelay.InsertManyAsync(connection, transaction, payloads);
                    await transaction.CommitAsync();
                }

                var committed = Stopwatch.GetTimestamp();
                relay.Wake();
                for (var j = 0; j < perTransaction; j++)
                {
                    commits[first + j] = committed;
                }
            }
        }
    }

    /// <summary>relay-W3a: one message per transaction at W3a's steady rate, the producer in the relay's process (in-memory wake-up).</summary>
    private async Task<Result> RelayLatencyAsync(string name, bool loaded)
    {
        Log($"{name}: minimal relay (at least once), {options.LatencyRate} msg/s for {options.LatencySeconds} s (+{options.LatencyWarmupSeconds} s warm-up), producer in this process"
            + (loaded ? $", {Environment.ProcessorCount} CPU burners" : string.Empty));
        await MinimalRelay.ResetAsync(admin);
        var tag = Payloads.NewTag();
        await using var producerSource = MinimalRelay.ProducerDataSource(options.PostgresUrl);
        await using var relay = await MinimalRelay.CreateAsync(options.PostgresUrl, options.RabbitMQUrl, Payloads.RoutingKey(name), atMostOnce: false);
        var commits = new long[LatencyTotal];
        var run = await broker.StartRunAsync(LatencyTotal, tag);
        relay.Start();

        // The same preparation as Outboxer's W3a producer: 16 pooled connections, the insert run (and rolled back) 20 times.
        var open = new Task<NpgsqlConnection>[16];
        for (var i = 0; i < open.Length; i++)
        {
            open[i] = producerSource.OpenConnectionAsync().AsTask();
        }

        foreach (var connection in await Task.WhenAll(open))
        {
            await connection.DisposeAsync();
        }

        for (var i = 0; i < 20; i++)
        {
            await using var connection = await producerSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            await MinimalRelay.InsertOneAsync(connection, transaction, Payloads.Body(-1, 0));
            await transaction.RollbackAsync();
        }

        await Task.Delay(300);
        Collect();
        await using var burners = loaded ? Burners.Start() : null;
        var rss = RssSampler.Start();
        var stats = await Producer.RunPacedAsync(
            async (sequence, ct) =>
            {
                await using (var connection = await producerSource.OpenConnectionAsync(ct))
                await using (var transaction = await connection.BeginTransactionAsync(ct))
                {
                    await MinimalRelay.InsertOneAsync(connection, transaction, Payloads.Body(sequence, tag), ct);
                    await transaction.CommitAsync(ct);
                }

                var committed = Stopwatch.GetTimestamp();
                relay.Wake();
                return committed;
            },
            options.LatencyRate,
            commits,
            CancellationToken.None);
        var complete = await run.WaitAsync(TimeSpan.FromSeconds(60));
        var peak = await rss.StopAsync();
        broker.EndRun();
        var result = LatencyResult(name, stats, commits, run, complete, peak, profile: null);
        result.BatchSize = MinimalRelay.BatchSize;
        MarkRelay(result, relay);
        result.Extra["producer_shape"] = "one INSERT per transaction, then an in-memory wake-up of the relay";
        if (burners is not null)
        {
            result.Extra["cpu_burners"] = burners.Count;
        }

        AddThreadPool(result, rss, LatencyTotal);
        return result;
    }
}
