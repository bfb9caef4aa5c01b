using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.Providers;

namespace Outboxer.Benchmarks;

/// <summary>What a paced producer did: how far it fell behind its schedule and when its commits happened.</summary>
internal sealed record PacedStats(
    int Messages, int Failures, int LateStarts, double MaxLagMs, int MaxInFlight, long FirstCommit, long LastCommit, Latency? Transaction)
{
    public double AchievedRate => LastCommit > FirstCommit ? (Messages - 1) / ((LastCommit - FirstCommit) / (double)Stopwatch.Frequency) : 0;

    public JsonObject ToJson() => new()
    {
        ["producer_messages"] = Messages,
        ["producer_failures"] = Failures,
        ["producer_achieved_rate"] = Math.Round(AchievedRate, 1),
        ["producer_late_starts"] = LateStarts,
        ["producer_max_lag_ms"] = Math.Round(MaxLagMs, 2),
        ["producer_max_in_flight"] = MaxInFlight,
        ["producer_tx_ms_p50"] = Transaction is null ? null : Math.Round(Transaction.P50, 3),
        ["producer_tx_ms_p99"] = Transaction is null ? null : Math.Round(Transaction.P99, 3),
        ["producer_tx_ms_max"] = Transaction is null ? null : Math.Round(Transaction.Max, 3),
    };

    public static PacedStats FromJson(JsonObject json, long firstCommit, long lastCommit) => new(
        (int)json["producer_messages"]!,
        (int)json["producer_failures"]!,
        (int)json["producer_late_starts"]!,
        (double)json["producer_max_lag_ms"]!,
        (int)json["producer_max_in_flight"]!,
        firstCommit,
        lastCommit,
        json["producer_tx_ms_p50"] is null ? null : new Latency(0, (double)json["producer_tx_ms_p50"]!, 0, (double)json["producer_tx_ms_p99"]!, (double)json["producer_tx_ms_max"]!, 0));
}

/// <summary>
/// The W3 producer: one message per transaction (open a pooled connection, BEGIN, EnqueueAsync, COMMIT) at a steady rate, and the
/// Stopwatch timestamp of each commit's completion. Used in the dispatcher's process (W3a) and, through the <c>producer</c>
/// mode, in a child process (W3b).
/// </summary>
/// <remarks>
/// Open loop: transaction i starts at start + i / rate whether or not earlier ones finished (up to 64 at once), so a slow commit
/// does not lower the offered rate or hide latency. Stopwatch.GetTimestamp() is CLOCK_MONOTONIC on Linux (nanoseconds), one clock
/// for every process of the machine, so the parent can subtract a child's commit timestamps from its own receive timestamps.
/// </remarks>
internal static class Producer
{
    private const int MaxInFlight = 64;

    /// <summary>
    /// Gets the producer ready before its schedule starts: opens 16 pooled connections at once (a new PostgreSQL backend costs a fork)
    /// and runs the enqueue path 20 times in transactions that roll back, so that nothing is published but the code is compiled.
    /// </summary>
    public static async Task WarmUpAsync(Outbox outbox, NpgsqlDataSource dataSource, string routingKey)
    {
        var connections = new Task<NpgsqlConnection>[16];
        for (var i = 0; i < connections.Length; i++)
        {
            connections[i] = dataSource.OpenConnectionAsync().AsTask();
        }

        foreach (var connection in await Task.WhenAll(connections))
        {
            await connection.DisposeAsync();
        }

        for (var i = 0; i < 20; i++)
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            await outbox.EnqueueAsync(transaction, Payloads.Message(-1, 0, routingKey));
            await transaction.RollbackAsync();
        }
    }

    /// <summary>The W3 producer through <see cref="Outbox.EnqueueAsync(System.Data.Common.DbTransaction, OutboxMessage, CancellationToken)"/> in its own transaction.</summary>
    public static Task<PacedStats> RunPacedAsync(
        Outbox outbox, NpgsqlDataSource dataSource, long tag, string routingKey, int rate, long[] commitTimestamps, CancellationToken cancellationToken) =>
        RunPacedAsync(
            async (sequence, ct) =>
            {
                await using var connection = await dataSource.OpenConnectionAsync(ct);
                await using var transaction = await connection.BeginTransactionAsync(ct);
                await outbox.EnqueueAsync(transaction, Payloads.Message(sequence, tag, routingKey), ct);
                await transaction.CommitAsync(ct);
                return Stopwatch.GetTimestamp();
            },
            rate,
            commitTimestamps,
            cancellationToken);

    /// <summary>
    /// Runs <paramref name="transact"/> for every sequence number on the open-loop schedule; it commits one message's transaction and
    /// returns the Stopwatch timestamp right after its commit returned.
    /// </summary>
    public static async Task<PacedStats> RunPacedAsync(
        Func<int, CancellationToken, Task<long>> transact, int rate, long[] commitTimestamps, CancellationToken cancellationToken)
    {
        var total = commitTimestamps.Length;
        var interval = Stopwatch.Frequency / (double)rate;
        var lateThreshold = Stopwatch.Frequency / 200; // 5 ms behind schedule
        var oneMs = Stopwatch.Frequency / 1000;
        using var slots = new SemaphoreSlim(MaxInFlight);
        var tasks = new Task[total];
        var transactionMs = new double[total];
        int failures = 0, late = 0, inFlight = 0, maxInFlight = 0;
        long maxLag = 0;
        var start = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 20);
        for (var i = 0; i < total; i++)
        {
            var due = start + (long)(i * interval);
            long now;
            while ((now = Stopwatch.GetTimestamp()) < due - oneMs)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Max(1, (due - now) / oneMs)), cancellationToken);
            }

            var lag = now - due;
            if (lag > lateThreshold)
            {
                late++;
            }

            maxLag = Math.Max(maxLag, lag);
            await slots.WaitAsync(cancellationToken);
            maxInFlight = Math.Max(maxInFlight, Interlocked.Increment(ref inFlight));
            tasks[i] = OneAsync(i);
        }

        await Task.WhenAll(tasks);
        long first = long.MaxValue, last = 0;
        foreach (var t in commitTimestamps)
        {
            if (t != 0)
            {
                first = Math.Min(first, t);
                last = Math.Max(last, t);
            }
        }

        var durations = new List<double>(total);
        for (var i = 0; i < total; i++)
        {
            if (commitTimestamps[i] != 0)
            {
                durations.Add(transactionMs[i]);
            }
        }

        return new PacedStats(
            total, failures, late, maxLag * 1000.0 / Stopwatch.Frequency, maxInFlight, first == long.MaxValue ? 0 : first, last, Latency.Of(durations));

        async Task OneAsync(int sequence)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                var committed = await transact(sequence, cancellationToken);
                commitTimestamps[sequence] = committed;
                transactionMs[sequence] = (committed - started) * 1000.0 / Stopwatch.Frequency;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                if (Interlocked.Increment(ref failures) == 1)
                {
                    Console.Error.WriteLine($"producer: message {sequence} failed: {ex.Message}");
                }
            }
            finally
            {
                Interlocked.Decrement(ref inFlight);
                slots.Release();
            }
        }
    }

    /// <summary>
    /// The <c>producer</c> mode (W3b's other process): enqueues through an <see cref="Outbox"/> whose dispatcher never starts, writes
    /// the commit timestamps to <c>--out</c> (Stopwatch frequency, count, then one 64-bit timestamp per message) and its stats as
    /// one JSON line on stdout.
    /// </summary>
    public static async Task<int> RunChildAsync(string[] args)
    {
        string? postgres = null, routingKey = null, output = null;
        int rate = 500, total = 0;
        long tag = 0;
        for (var i = 1; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i++])
            {
                case "--postgres": postgres = value; break;
                case "--rate": rate = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--total": total = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--tag": tag = long.Parse(value, CultureInfo.InvariantCulture); break;
                case "--routing-key": routingKey = value; break;
                case "--out": output = value; break;
                default: throw new ArgumentException($"Unknown producer argument '{args[i - 1]}'.");
            }
        }

        ArgumentNullException.ThrowIfNull(postgres);
        ArgumentNullException.ThrowIfNull(routingKey);
        ArgumentNullException.ThrowIfNull(output);
        await using var dataSource = NpgsqlDataSource.Create(postgres);
        var store = new PostgreSqlOutboxStore(dataSource, Database.StoreOptions);
        await using var outbox = new Outbox(store, new NoPublisher());
        var commits = new long[total];
        await WarmUpAsync(outbox, dataSource, routingKey);
        var stats = await RunPacedAsync(outbox, dataSource, tag, routingKey, rate, commits, CancellationToken.None);

        await using (var file = File.Create(output))
        await using (var writer = new BinaryWriter(file))
        {
            writer.Write(Stopwatch.Frequency);
            writer.Write(commits.LongLength);
            foreach (var t in commits)
            {
                writer.Write(t);
            }
        }

        Console.Out.WriteLine(stats.ToJson().ToJsonString());
        return stats.Failures == 0 ? 0 : 1;
    }

    public static long[] ReadCommits(string path, out long frequency)
    {
        using var reader = new BinaryReader(File.OpenRead(path));
        frequency = reader.ReadInt64();
        var commits = new long[reader.ReadInt64()];
        for (var i = 0; i < commits.Length; i++)
        {
            commits[i] = reader.ReadInt64();
        }

        return commits;
    }

    /// <summary>The child only enqueues; its outbox's dispatcher never runs, so nothing is ever published through this.</summary>
    private sealed class NoPublisher : IOutboxPublisher
    {
        public ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default) =>
            throw new InvalidOperationException("The producer process does not publish; the benchmark's dispatcher does.");
    }
}
