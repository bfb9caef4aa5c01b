using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Outboxer.Dashboard.Internal;

/// <summary>One reading of an outbox for the charts.</summary>
/// <param name="TakenAt">When it was taken.</param>
/// <param name="Pending">Pending messages (the backlog).</param>
/// <param name="InFlight">Messages a dispatcher holds.</param>
/// <param name="Retrying">Pending messages that failed at least once, or <see langword="null"/> when the store cannot count them.</param>
/// <param name="DeadLettered">Dead letters.</param>
/// <param name="Lag">Age of the oldest pending message.</param>
/// <param name="DispatchedPerSecond">Messages dispatched per second since the previous sample, or <see langword="null"/> when the store cannot count them.</param>
internal sealed record Sample(DateTimeOffset TakenAt, long Pending, long InFlight, long? Retrying, long DeadLettered, TimeSpan Lag, double? DispatchedPerSecond);

/// <summary>A fixed number of the latest samples, oldest first; safe for one writer and many readers.</summary>
internal sealed class SampleRing(int capacity)
{
    private readonly Sample[] _items = new Sample[capacity];
    private readonly Lock _lock = new();
    private int _next;
    private int _count;

    public int Capacity => _items.Length;

    public void Add(Sample sample)
    {
        lock (_lock)
        {
            _items[_next] = sample;
            _next = (_next + 1) % _items.Length;
            _count = Math.Min(_count + 1, _items.Length);
        }
    }

    public IReadOnlyList<Sample> Snapshot()
    {
        lock (_lock)
        {
            var result = new Sample[_count];
            var start = (_next - _count + _items.Length) % _items.Length;
            for (var i = 0; i < _count; i++)
            {
                result[i] = _items[(start + i) % _items.Length];
            }

            return result;
        }
    }
}

/// <summary>
/// Samples every outbox the dashboard shows, every <see cref="OutboxerDashboardOptions.SampleInterval"/>, for the charts of the last
/// <see cref="OutboxerDashboardOptions.History"/>: statistics, retrying messages, and the messages dispatched since the previous sample
/// (counted in the store, so every dispatcher on the table counts, in any process). Runs while the application runs; a failed read is
/// logged and shown, and the next one is tried on time.
/// </summary>
internal sealed class Sampler(DashboardOutboxes outboxes, IOptions<OutboxerDashboardOptions> options, TimeProvider time, ILogger<Sampler> logger) : BackgroundService
{
    private readonly Dictionary<string, SampleRing> _rings = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _errors = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTimeOffset> _previous = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>Gets the samples of an outbox, oldest first.</summary>
    public IReadOnlyList<Sample> SamplesOf(string name)
    {
        lock (_lock)
        {
            return _rings.TryGetValue(name, out var ring) ? ring.Snapshot() : [];
        }
    }

    /// <summary>Gets why the latest sample of an outbox failed, or <see langword="null"/>.</summary>
    public string? ErrorOf(string name)
    {
        lock (_lock)
        {
            return _errors.GetValueOrDefault(name);
        }
    }

    /// <summary>Samples every outbox once (the loop does this every interval; tests call it directly).</summary>
    public async Task SampleOnceAsync(CancellationToken cancellationToken)
    {
        var interval = options.Value.SampleInterval;
        var capacity = (int)Math.Max(1, options.Value.History.Ticks / interval.Ticks);
        foreach (var outbox in outboxes.All)
        {
            if (outbox.Administration is not { } administration)
            {
                continue;
            }

            var now = time.GetUtcNow();
            try
            {
                var statistics = await administration.GetStatisticsAsync(now, cancellationToken).ConfigureAwait(false);
                var retrying = await Optional(() => administration.CountRetryingAsync(cancellationToken)).ConfigureAwait(false);
                DateTimeOffset since;
                lock (_lock)
                {
                    since = _previous.TryGetValue(outbox.Name, out var previous) ? previous : now - interval;
                }

                var dispatched = await Optional(() => administration.CountDispatchedSinceAsync(since, cancellationToken)).ConfigureAwait(false);
                var seconds = Math.Max((now - since).TotalSeconds, 0.001);
                var sample = new Sample(now, statistics.Pending, statistics.InFlight, retrying, statistics.DeadLettered, statistics.Lag, dispatched / seconds);
                lock (_lock)
                {
                    if (!_rings.TryGetValue(outbox.Name, out var ring))
                    {
                        _rings[outbox.Name] = ring = new SampleRing(capacity);
                    }

                    ring.Add(sample);
                    _previous[outbox.Name] = now;
                    _errors.Remove(outbox.Name);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                Log.SampleFailed(logger, ex, outbox.DisplayName);
                lock (_lock)
                {
                    _errors[outbox.Name] = ex.Message;
                }
            }
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.SampleInterval, time);
        do
        {
            await SampleOnceAsync(stoppingToken).ConfigureAwait(false);
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    /// <summary>Runs a count that a store may not support; <see langword="null"/> when it does not.</summary>
    private static async Task<long?> Optional(Func<Task<long>> count)
    {
        try
        {
            return await count().ConfigureAwait(false);
        }
        catch (NotSupportedException)
        {
            return null;
        }
    }
}
