using System.Diagnostics;
using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Text.Json.Nodes;
using Outboxer.Providers;

namespace Outboxer.Benchmarks;

/// <summary>
/// Timings of one dispatcher's batches (with <c>--profile</c>): claim SQL, the publish phase (from the claim's end to the mark's
/// start: every publish of the batch and the wait for their confirms), mark SQL, and the gap between a mark and the next claim.
/// </summary>
/// <remarks>
/// The dispatcher loop runs claim, publish, mark one after another, so one profile per dispatcher needs no locks for those; the
/// per-message publish timings come from concurrent publishes and use interlocked adds.
/// </remarks>
internal sealed class DispatchProfile
{
    private long _lastClaimEnd;
    private long _lastMarkEnd;
    private long _publishes;
    private long _publishTicks;
    private long _publishMaxTicks;

    public long Batches { get; private set; }

    public long Claimed { get; private set; }

    public long ClaimTicks { get; private set; }

    public long EmptyClaims { get; private set; }

    public long EmptyClaimTicks { get; private set; }

    public long Marks { get; private set; }

    public long MarkTicks { get; private set; }

    public long PublishPhaseTicks { get; private set; }

    public long GapTicks { get; private set; }

    public long ClaimMaxTicks { get; private set; }

    public long MarkMaxTicks { get; private set; }

    public long PublishPhaseMaxTicks { get; private set; }

    public long Gaps { get; private set; }

    public void OnClaim(long started, long ended, int count)
    {
        if (_lastMarkEnd != 0)
        {
            GapTicks += started - _lastMarkEnd;
            Gaps++;
            _lastMarkEnd = 0;
        }

        if (count == 0)
        {
            EmptyClaims++;
            EmptyClaimTicks += ended - started;
            return;
        }

        Batches++;
        Claimed += count;
        ClaimTicks += ended - started;
        ClaimMaxTicks = Math.Max(ClaimMaxTicks, ended - started);
        _lastClaimEnd = ended;
    }

    public void OnMark(long started, long ended)
    {
        Marks++;
        MarkTicks += ended - started;
        MarkMaxTicks = Math.Max(MarkMaxTicks, ended - started);
        if (_lastClaimEnd != 0)
        {
            PublishPhaseTicks += started - _lastClaimEnd;
            PublishPhaseMaxTicks = Math.Max(PublishPhaseMaxTicks, started - _lastClaimEnd);
            _lastClaimEnd = 0;
        }

        _lastMarkEnd = ended;
    }

    public void OnPublish(long ticks)
    {
        Interlocked.Increment(ref _publishes);
        Interlocked.Add(ref _publishTicks, ticks);
        long max;
        while (ticks > (max = Volatile.Read(ref _publishMaxTicks)) && Interlocked.CompareExchange(ref _publishMaxTicks, ticks, max) != max)
        {
        }
    }

    /// <summary>Sums several dispatchers' profiles into one JSON object of counts and average milliseconds.</summary>
    public static JsonObject Summarize(IReadOnlyList<DispatchProfile> profiles, double wallSeconds)
    {
        long batches = 0, claimed = 0, claimTicks = 0, empty = 0, emptyTicks = 0, marks = 0, markTicks = 0, publishPhase = 0, gaps = 0, gapTicks = 0;
        long publishes = 0, publishTicks = 0, publishMax = 0, claimMax = 0, markMax = 0, phaseMax = 0;
        foreach (var p in profiles)
        {
            batches += p.Batches;
            claimed += p.Claimed;
            claimTicks += p.ClaimTicks;
            empty += p.EmptyClaims;
            emptyTicks += p.EmptyClaimTicks;
            marks += p.Marks;
            markTicks += p.MarkTicks;
            publishPhase += p.PublishPhaseTicks;
            gaps += p.Gaps;
            gapTicks += p.GapTicks;
            publishes += Volatile.Read(ref p._publishes);
            publishTicks += Volatile.Read(ref p._publishTicks);
            publishMax = Math.Max(publishMax, Volatile.Read(ref p._publishMaxTicks));
            claimMax = Math.Max(claimMax, p.ClaimMaxTicks);
            markMax = Math.Max(markMax, p.MarkMaxTicks);
            phaseMax = Math.Max(phaseMax, p.PublishPhaseMaxTicks);
        }

        static double Ms(long ticks, long count) => count == 0 ? 0 : Math.Round(ticks * 1000.0 / Stopwatch.Frequency / count, 3);
        static double Share(long ticks, double wall, int dispatchers) => wall <= 0 ? 0 : Math.Round(ticks / (double)Stopwatch.Frequency / (wall * dispatchers), 3);
        var n = Math.Max(1, profiles.Count);
        return new JsonObject
        {
            ["batches"] = batches,
            ["avg_batch_size"] = batches == 0 ? 0 : Math.Round(claimed / (double)batches, 1),
            ["claim_ms_avg"] = Ms(claimTicks, batches),
            ["publish_phase_ms_avg"] = Ms(publishPhase, marks),
            ["mark_ms_avg"] = Ms(markTicks, marks),
            ["claim_ms_max"] = Ms(claimMax, 1),
            ["publish_phase_ms_max"] = Ms(phaseMax, 1),
            ["mark_ms_max"] = Ms(markMax, 1),
            ["gap_ms_avg"] = Ms(gapTicks, gaps),
            ["empty_claims"] = empty,
            ["empty_claim_ms_avg"] = Ms(emptyTicks, empty),
            ["publish_confirm_ms_avg_per_message"] = Ms(publishTicks, publishes),
            ["publish_confirm_ms_max"] = Ms(publishMax, 1),
            ["share_claim"] = Share(claimTicks + emptyTicks, wallSeconds, n),
            ["share_publish"] = Share(publishPhase, wallSeconds, n),
            ["share_mark"] = Share(markTicks, wallSeconds, n),
        };
    }
}

/// <summary>The store interfaces the profiling proxy implements: every member of both is forwarded to the real store.</summary>
public interface IProfiledOutboxStore : IOutboxStore, IOutboxWakeUpSource
{
}

/// <summary>
/// Times the dispatcher's claim and mark calls and forwards every call, including LISTEN/NOTIFY wake-ups, to the real store. A
/// <see cref="DispatchProxy"/> rather than a hand-written decorator, so that members the library adds to
/// <see cref="IOutboxStore"/> later are forwarded too without changing the benchmark.
/// </summary>
public class ProfilingStoreProxy : DispatchProxy
{
    private IOutboxStore _inner = null!;
    private DispatchProfile _profile = null!;

    internal static IOutboxStore Create(IOutboxStore inner, DispatchProfile profile)
    {
        var proxy = Create<IProfiledOutboxStore, ProfilingStoreProxy>();
        var self = (ProfilingStoreProxy)(object)proxy;
        self._inner = inner;
        self._profile = profile;
        return proxy;
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(targetMethod);
        if (targetMethod.DeclaringType == typeof(IOutboxWakeUpSource))
        {
            return _inner is IOutboxWakeUpSource source
                ? source.ListenAsync((Action)args![0]!, (CancellationToken)args[1]!)
                : Task.Delay(Timeout.Infinite, (CancellationToken)args![1]!);
        }

        var started = Stopwatch.GetTimestamp();
        object? result;
        try
        {
            result = targetMethod.Invoke(_inner, args);
        }
        catch (TargetInvocationException ex) when (ex.InnerException is not null)
        {
            ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
            throw;
        }

        return targetMethod.Name switch
        {
            nameof(IOutboxStore.ClaimAsync) => TimeClaimAsync((Task<IReadOnlyList<OutboxMessage>>)result!, started),
            nameof(IOutboxStore.MarkDispatchedAsync) => TimeMarkAsync((Task<int>)result!, started),
            _ => result,
        };
    }

    private async Task<IReadOnlyList<OutboxMessage>> TimeClaimAsync(Task<IReadOnlyList<OutboxMessage>> claim, long started)
    {
        var batch = await claim;
        _profile.OnClaim(started, Stopwatch.GetTimestamp(), batch.Count);
        return batch;
    }

    private async Task<int> TimeMarkAsync(Task<int> mark, long started)
    {
        var marked = await mark;
        _profile.OnMark(started, Stopwatch.GetTimestamp());
        return marked;
    }
}

/// <summary>Times each publish (from the call to the broker's confirm).</summary>
internal sealed class ProfilingPublisher(IOutboxPublisher inner, DispatchProfile profile) : IOutboxPublisher
{
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        var started = Stopwatch.GetTimestamp();
        await inner.PublishAsync(message, cancellationToken);
        profile.OnPublish(Stopwatch.GetTimestamp() - started);
    }

    public string? GetDestinationName(OutboxMessage message) => inner.GetDestinationName(message);
}
