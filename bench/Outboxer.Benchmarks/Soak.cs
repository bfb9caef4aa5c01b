using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;

namespace Outboxer.Benchmarks;

/// <summary>
/// W6, the soak (<c>--soak</c>, not in the default run): <c>--soak-messages</c> (3,000,000) messages at a sustained rate near W1's
/// (0.8 x this run's W1, or <c>--soak-rate</c>), W1's producer shape (4 producers, transactions of 10 through EnqueueAsync, on an
/// open-loop schedule), one dispatcher, and the cleanup running with a short retention (<see cref="Retention"/>, every
/// <see cref="CleanupInterval"/>). Reports, for each tenth of the messages (by sequence number), the commit rate, the delivery
/// rate, commit-to-consumer p50/p99, and the table's and its indexes' size over time (pg_total_relation_size).
/// </summary>
internal sealed class Soak(BenchOptions options, Broker broker, NpgsqlDataSource admin)
{
    public static readonly TimeSpan Retention = TimeSpan.FromSeconds(10);
    public static readonly TimeSpan CleanupInterval = TimeSpan.FromSeconds(2);

    private static void Log(string text) => Console.Error.WriteLine($"[bench] {text}");

    public async Task<Result> RunAsync(double rate)
    {
        const string name = "W6";
        var messages = options.SoakMessages;
        var perTransaction = options.MessagesPerTransaction;
        rate = Math.Max(perTransaction, rate);
        Log($"{name}: soak, {messages:N0} messages at {rate:F0} msg/s ({options.Producers} producers x transactions of {perTransaction}), cleanup every {CleanupInterval.TotalSeconds} s with {Retention.TotalSeconds} s retention (about {messages / rate:F0} s)");
        await Database.ResetAsync(admin);
        var tag = Payloads.NewTag();
        var routingKey = Payloads.RoutingKey(name);
        await using var dataSource = NpgsqlDataSource.Create(options.PostgresUrl);
        await using var publisher = await RabbitMQPublisher.ConnectAsync(new Uri(options.RabbitMQUrl));
        var outboxOptions = new OutboxOptions { MessageBatchSize = options.BatchSize, CleanupOlderThan = Retention, CleanupInterval = CleanupInterval };
        await using var outbox = new Outbox(new PostgreSqlOutboxStore(dataSource, Database.StoreOptions), publisher, outboxOptions);
        var errors = new Dictionary<string, int>();
        var errorReader = Task.Run(async () =>
        {
            await foreach (var error in outbox.Errors.ReadAllAsync())
            {
                var key = $"{error.Operation}: {error.Exception.GetType().Name}";
                lock (errors)
                {
                    errors[key] = errors.GetValueOrDefault(key) + 1;
                }
            }
        });

        var commits = new long[messages];
        var transactions = messages / perTransaction;
        var interval = Stopwatch.Frequency * perTransaction / rate;
        var next = -1;
        var late = 0;
        var run = await broker.StartRunAsync(messages, tag);
        GC.Collect();
        var rss = RssSampler.Start();
        await outbox.StartAsync();
        var start = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 10);
        var samples = new List<(double Seconds, long Total, long Heap, long Indexes, int Consumed)>();
        using var stopSampling = new CancellationTokenSource();
        var sampler = SampleAsync(stopSampling.Token);
        var producers = new Task[options.Producers];
        for (var p = 0; p < producers.Length; p++)
        {
            producers[p] = Task.Run(ProduceAsync);
        }

        await Task.WhenAll(producers);
        var complete = await run.WaitAsync(options.Timeout);
        await stopSampling.CancelAsync();
        await sampler;
        var peak = await rss.StopAsync();
        broker.EndRun();
        await outbox.StopAsync();
        await outbox.DisposeAsync();
        await errorReader;

        var first = commits.Where(t => t != 0).DefaultIfEmpty(start).Min();
        var ended = complete ? run.LastTimestamp : Stopwatch.GetTimestamp();
        var result = new Result
        {
            Workload = name,
            Messages = complete ? messages : run.Distinct,
            Seconds = (ended - first) / (double)Stopwatch.Frequency,
            Latency = Latency.Of(Milliseconds(0, messages)),
            PeakRssMb = peak,
            BatchSize = options.BatchSize,
            Complete = complete,
            Target = "last tenth within 10 % of the first (rate, p99); size bounded",
        };

        // Tenths by sequence number: the producers commit them in order, one tenth after another.
        var tenths = new JsonArray();
        var text = new StringBuilder();
        double? firstRate = null, lastRate = null, firstP99 = null, lastP99 = null;
        for (var t = 0; t < 10; t++)
        {
            var from = (int)((long)messages * t / 10);
            var to = (int)((long)messages * (t + 1) / 10);
            long c0 = long.MaxValue, c1 = 0, r0 = long.MaxValue, r1 = 0;
            for (var i = from; i < to; i++)
            {
                if (commits[i] != 0)
                {
                    c0 = Math.Min(c0, commits[i]);
                    c1 = Math.Max(c1, commits[i]);
                }

                if (run.Received[i] != 0)
                {
                    r0 = Math.Min(r0, run.Received[i]);
                    r1 = Math.Max(r1, run.Received[i]);
                }
            }

            var commitRate = c1 > c0 ? (to - from) / ((c1 - c0) / (double)Stopwatch.Frequency) : 0;
            var deliveryRate = r1 > r0 ? (to - from) / ((r1 - r0) / (double)Stopwatch.Frequency) : 0;
            var latency = Latency.Of(Milliseconds(from, to));
            var endSeconds = (r1 - first) / (double)Stopwatch.Frequency;
            var size = samples.LastOrDefault(s => s.Seconds <= endSeconds);
            tenths.Add(new JsonObject
            {
                ["tenth"] = t + 1,
                ["commit_rate"] = Math.Round(commitRate, 0),
                ["delivery_rate"] = Math.Round(deliveryRate, 0),
                ["p50_ms"] = latency is null ? null : Math.Round(latency.P50, 2),
                ["p99_ms"] = latency is null ? null : Math.Round(latency.P99, 2),
                ["max_ms"] = latency is null ? null : Math.Round(latency.Max, 2),
                ["ended_s"] = Math.Round(endSeconds, 1),
                ["total_mb"] = Math.Round(size.Total / 1048576.0, 1),
                ["heap_mb"] = Math.Round(size.Heap / 1048576.0, 1),
                ["indexes_mb"] = Math.Round(size.Indexes / 1048576.0, 1),
            });
            if (t == 0)
            {
                firstRate = deliveryRate;
                firstP99 = latency?.P99;
            }

            lastRate = deliveryRate;
            lastP99 = latency?.P99;
        }

        result.TargetMet = firstRate > 0 && lastRate >= 0.9 * firstRate && lastP99 <= 1.1 * firstP99;
        result.Extra["tenths"] = tenths;
        result.Extra["offered_rate"] = Math.Round(rate, 0);
        result.Extra["producer_late_transactions"] = late;
        result.Extra["retention_s"] = Retention.TotalSeconds;
        result.Extra["cleanup_interval_s"] = CleanupInterval.TotalSeconds;
        result.Extra["cleanup_batch_size"] = outboxOptions.CleanupBatchSize;
        result.Extra["size_samples"] = new JsonArray([.. samples.Select(s => (JsonNode?)new JsonArray(
            Math.Round(s.Seconds, 1), Math.Round(s.Total / 1048576.0, 2), Math.Round(s.Heap / 1048576.0, 2), Math.Round(s.Indexes / 1048576.0, 2), s.Consumed))]);
        result.Extra["size_samples_columns"] = "seconds, total MB (pg_total_relation_size), heap MB, indexes MB, consumed";
        result.Extra["max_total_mb"] = Math.Round(samples.DefaultIfEmpty().Max(s => s.Total) / 1048576.0, 1);
        lock (errors)
        {
            result.Extra["dispatcher_errors"] = new JsonObject([.. errors.Select(e => KeyValuePair.Create(e.Key, (JsonNode?)e.Value))]);
        }

        result.Extra["consumed"] = run.Distinct;
        result.Extra["duplicates"] = run.Duplicates;
        result.Extra["cpu_share"] = rss.CpuShare?.DeepClone();
        if (rss.CpuSeconds is { } cpu)
        {
            result.CpuPer10k = cpu.ToDictionary(p => p.Key, p => p.Value * 10_000 / messages, StringComparer.Ordinal);
        }

        return result;

        List<double> Milliseconds(int from, int to)
        {
            var list = new List<double>(to - from);
            for (var i = from; i < to; i++)
            {
                if (commits[i] != 0 && run.Received[i] != 0)
                {
                    list.Add((run.Received[i] - commits[i]) * 1000.0 / Stopwatch.Frequency);
                }
            }

            return list;
        }

        async Task ProduceAsync()
        {
            int k;
            var oneMs = Stopwatch.Frequency / 1000;
            while ((k = Interlocked.Increment(ref next)) < transactions)
            {
                var due = start + (long)(k * interval);
                long now;
                while ((now = Stopwatch.GetTimestamp()) < due - oneMs)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Max(1, (due - now) / oneMs)));
                }

                if (now - due > Stopwatch.Frequency / 10)
                {
                    Interlocked.Increment(ref late);
                }

                await using var connection = await dataSource.OpenConnectionAsync();
                await using var transaction = await connection.BeginTransactionAsync();
                var firstSequence = k * perTransaction;
                for (var j = 0; j < perTransaction; j++)
                {
                    await outbox.EnqueueAsync(transaction, Payloads.Message(firstSequence + j, tag, routingKey));
                }

                await transaction.CommitAsync();
                var committed = Stopwatch.GetTimestamp();
                for (var j = 0; j < perTransaction; j++)
                {
                    commits[firstSequence + j] = committed;
                }
            }
        }

        async Task SampleAsync(CancellationToken cancellationToken)
        {
            var every = TimeSpan.FromSeconds(Math.Clamp(messages / rate / 50, 1, 30));
            var table = $"\"{Database.Schema}\".\"{Database.Table}\"";
            using var timer = new PeriodicTimer(every);
            do
            {
                try
                {
                    await using var command = admin.CreateCommand(
                        $"SELECT pg_total_relation_size('{table}'), pg_relation_size('{table}'), pg_indexes_size('{table}')");
                    await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                    await reader.ReadAsync(cancellationToken);
                    samples.Add(((Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency, reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), run.Distinct));
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            while (await WaitAsync(timer, cancellationToken));
        }

        static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken cancellationToken)
        {
            try
            {
                return await timer.WaitForNextTickAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
    }

    /// <summary>The soak's tenths as a markdown table (empty when the soak did not run).</summary>
    public static string Table(IEnumerable<Result> results)
    {
        var soak = results.FirstOrDefault(r => r.Workload == "W6");
        if (soak?.Extra["tenths"] is not JsonArray tenths)
        {
            return string.Empty;
        }

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"W6 soak, {soak.Messages:N0} messages offered at {soak.Extra["offered_rate"]} msg/s, cleanup every {soak.Extra["cleanup_interval_s"]} s with {soak.Extra["retention_s"]} s retention; by tenth of the messages:");
        text.AppendLine();
        text.AppendLine("| tenth | commit msg/s | delivery msg/s | p50 ms | p99 ms | max ms | ended at s | table + indexes MB | heap MB | indexes MB |");
        text.AppendLine("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        foreach (var t in tenths)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {t!["tenth"]} | {t["commit_rate"]} | {t["delivery_rate"]} | {t["p50_ms"]} | {t["p99_ms"]} | {t["max_ms"]} | {t["ended_s"]} | {t["total_mb"]} | {t["heap_mb"]} | {t["indexes_mb"]} |");
        }

        return text.ToString();
    }
}
