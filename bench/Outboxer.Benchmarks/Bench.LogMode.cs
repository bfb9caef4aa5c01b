using System.Diagnostics;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;

namespace Outboxer.Benchmarks;

/// <summary>
/// The PostgreSQL log mode's workloads: the same messages, producers and consumer as W1, W2 and W3, but written with
/// <c>pg_logical_emit_message</c> (<see cref="PostgreSqlLogWriter"/>) and relayed by <see cref="PostgreSqlLogRelay"/> from a replication
/// slot of their own, which is dropped at the end of each workload. No table, no claim, no mark.
/// </summary>
internal sealed partial class Bench
{
    private const int LogBatchSize = 500;

    private async Task RunLogModeAsync()
    {
        if (options.Runs("W2-log"))
        {
            var result = await LogDrainAsync("W2-log", options.Messages);
            result.Target = "ratio >= 0.9";
            result.TargetMet = result.RatioToCeiling is { } ratio ? ratio >= 0.9 : null;
            Add(result);
        }

        if (options.Runs("W1-log"))
        {
            var result = await LogSaturationAsync("W1-log", options.Messages);
            result.Target = "msg/s >= the at-most-once minimal relay's W1 (not in this run)";
            Add(result);
        }

        if (options.Runs("W3-log"))
        {
            var result = await LogLatencyAsync("W3-log");
            result.Target = "p50 <= 2, p99 <= 5";
            result.TargetMet = result.Latency is { P50: <= 2, P99: <= 5 } && result.Complete;
            Add(result);
        }
    }

    /// <summary>W2-log: a backlog of <paramref name="messages"/> committed into the log (untimed, 10,000 per transaction), then the relay starts.</summary>
    private async Task<Result> LogDrainAsync(string name, int messages)
    {
        Log($"{name}: backlog of {messages:N0} in the write-ahead log, relay batch {LogBatchSize}");
        await using var mode = await LogModeSetup.CreateAsync(options);
        var tag = Payloads.NewTag();
        var routingKey = Payloads.RoutingKey(name);
        for (var first = 0; first < messages; first += 10_000)
        {
            await using var connection = await mode.DataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            var chunk = Enumerable.Range(first, Math.Min(10_000, messages - first)).Select(i => Payloads.Message(i, tag, routingKey)).ToList();
            await mode.Outbox.EnqueueManyAsync(transaction, chunk);
            await transaction.CommitAsync();
        }

        var run = await broker.StartRunAsync(messages, tag);
        Collect();
        var rss = RssSampler.Start();
        var started = Stopwatch.GetTimestamp();
        await mode.StartRelayAsync();
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
            BatchSize = LogBatchSize,
            Complete = complete,
            Ceiling = _ceiling,
        };
        mode.Describe(result);
        AddConsumerCounts(result, run);
        AddThreadPool(result, rss);
        return result;
    }

    /// <summary>W1-log: the relay runs while the producers commit transactions of 10 messages into the log as fast as they can.</summary>
    private async Task<Result> LogSaturationAsync(string name, int messages)
    {
        var perTransaction = options.MessagesPerTransaction;
        Log($"{name}: {options.Producers} producers x transactions of {perTransaction} into the log, {messages:N0} messages, relay running");
        await using var mode = await LogModeSetup.CreateAsync(options);
        var tag = Payloads.NewTag();
        var routingKey = Payloads.RoutingKey(name);
        var commits = new long[messages];
        var transactions = messages / perTransaction;
        var next = -1;
        var run = await broker.StartRunAsync(messages, tag);
        await mode.StartRelayAsync();
        Collect();
        var rss = RssSampler.Start();
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
            BatchSize = LogBatchSize,
            Complete = complete,
            Ceiling = _ceiling,
        };
        result.Extra["producers"] = options.Producers;
        result.Extra["messages_per_transaction"] = perTransaction;
        result.Extra["produce_seconds"] = Math.Round(Seconds(produced - producing), 3);
        result.Extra["commit_rate"] = Math.Round(messages / Seconds(produced - producing), 0);
        result.Extra["negative_latencies"] = negative;
        mode.Describe(result);
        AddConsumerCounts(result, run);
        AddThreadPool(result, rss);
        return result;

        async Task ProduceAsync()
        {
            int k;
            while ((k = Interlocked.Increment(ref next)) < transactions)
            {
                await using var connection = await mode.DataSource.OpenConnectionAsync();
                await using var transaction = await connection.BeginTransactionAsync();
                var first = k * perTransaction;
                for (var j = 0; j < perTransaction; j++)
                {
                    await mode.Outbox.EnqueueAsync(transaction, Payloads.Message(first + j, tag, routingKey));
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

    /// <summary>
    /// W3-log: one message per transaction at a steady rate. The producer runs in this process, but nothing in the process connects it
    /// to the relay (no in-memory wake-up, no NOTIFY): the message reaches the relay only through the replication stream, exactly as
    /// from another process.
    /// </summary>
    private async Task<Result> LogLatencyAsync(string name)
    {
        Log($"{name}: {options.LatencyRate} msg/s for {options.LatencySeconds} s (+{options.LatencyWarmupSeconds} s warm-up), through the replication stream");
        await using var mode = await LogModeSetup.CreateAsync(options);
        var tag = Payloads.NewTag();
        var commits = new long[LatencyTotal];
        var run = await broker.StartRunAsync(LatencyTotal, tag);
        await mode.StartRelayAsync();
        await Producer.WarmUpAsync(mode.Outbox, mode.DataSource, Payloads.RoutingKey(name));
        await Task.Delay(300);
        Collect();
        var rss = RssSampler.Start();
        var stats = await Producer.RunPacedAsync(mode.Outbox, mode.DataSource, tag, Payloads.RoutingKey(name), options.LatencyRate, commits, CancellationToken.None);
        var complete = await run.WaitAsync(TimeSpan.FromSeconds(60));
        var peak = await rss.StopAsync();
        broker.EndRun();
        var result = LatencyResult(name, stats, commits, run, complete, peak, profile: null);
        result.Extra["relay_batch_size"] = LogBatchSize;
        mode.Describe(result);
        AddThreadPool(result, rss);
        return result;
    }

    /// <summary>One workload's log mode: its own slot, publication, prefix and dead-letter schema, writer outbox and relay; all dropped at the end.</summary>
    private sealed class LogModeSetup : IAsyncDisposable
    {
        private readonly BenchOptions _options;
        private readonly PostgreSqlLogOptions _names;
        private RabbitMQPublisher? _publisher;
        private PostgreSqlLogRelay? _relay;

        private LogModeSetup(BenchOptions options)
        {
            _options = options;
            var suffix = Guid.NewGuid().ToString("N")[..8];
            _names = new PostgreSqlLogOptions
            {
                Prefix = $"outboxer.bench.{suffix}",
                SlotName = $"outboxer_bench_{suffix}",
                PublicationName = $"outboxer_bench_{suffix}",
                SchemaName = $"outboxer_bench_log_{suffix}",
            };
            DataSource = NpgsqlDataSource.Create(options.PostgresUrl);
            Outbox = new Outbox(new PostgreSqlLogWriter(DataSource, _names));
        }

        public NpgsqlDataSource DataSource { get; }

        public Outbox Outbox { get; }

        public static async Task<LogModeSetup> CreateAsync(BenchOptions options)
        {
            var mode = new LogModeSetup(options);
            await new PostgreSqlLogSetup(mode.DataSource, mode._names).CheckSetupAsync();
            return mode;
        }

        public async Task StartRelayAsync()
        {
            _publisher = await RabbitMQPublisher.ConnectAsync(new Uri(_options.RabbitMQUrl));
            _relay = new PostgreSqlLogRelay(_options.PostgresUrl, _publisher, _names, new PostgreSqlLogRelayOptions { BatchSize = LogBatchSize });
            await _relay.StartAsync();
        }

        public void Describe(Result result)
        {
            result.Extra["mode"] = "log (pg_logical_emit_message + pgoutput slot; no table)";
            result.Extra["relay_published"] = _relay?.Published ?? 0;
            result.Extra["relay_dead_lettered"] = _relay?.DeadLettered ?? 0;
        }

        public async ValueTask DisposeAsync()
        {
            if (_relay is not null)
            {
                await _relay.DisposeAsync();
            }

            if (_publisher is not null)
            {
                await _publisher.DisposeAsync();
            }

            await Outbox.DisposeAsync();
            var setup = new PostgreSqlLogSetup(DataSource, _names);
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    await setup.DropAsync();
                    break;
                }
                catch (OutboxException) when (attempt < 50)
                {
                    await Task.Delay(200);
                }
            }

            await using (var drop = DataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{_names.SchemaName}\" CASCADE"))
            {
                await drop.ExecuteNonQueryAsync();
            }

            await DataSource.DisposeAsync();
        }
    }
}

/// <summary>Setup that fails loudly with the server's reason.</summary>
internal static class LogSetupExtensions
{
    public static async Task CheckSetupAsync(this PostgreSqlLogSetup setup)
    {
        var status = await setup.SetupAsync();
        if (status.Problems.Count > 0)
        {
            throw new InvalidOperationException($"The log mode cannot run: {string.Join(" ", status.Problems)}");
        }
    }
}
