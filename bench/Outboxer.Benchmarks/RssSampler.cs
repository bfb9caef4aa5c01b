using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace Outboxer.Benchmarks;

/// <summary>
/// Samples this process's resident set size (VmRSS in /proc/self/status) and the thread pool every 100 ms while a workload runs, and keeps the largest
/// sample: the workload's own peak. (VmHWM would be the peak of the whole process lifetime, so of every earlier workload too.)
/// </summary>
internal sealed class RssSampler : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _peakBytes;
    private long _maxQueue;
    private int _maxThreads;
    private long _maxManaged;

    private readonly CpuTimes _cpuAtStart = CpuTimes.Take();
    private JsonObject? _cpu;
    private Dictionary<string, double>? _cpuSeconds;

    private RssSampler()
    {
        _peakBytes = CurrentBytes();
        _loop = SampleAsync();
    }

    public static RssSampler Start() => new();

    public double PeakMegabytes => Volatile.Read(ref _peakBytes) / (1024.0 * 1024.0);

    /// <summary>The longest thread-pool queue seen in a sample (a sign of CPU starvation or blocked threads).</summary>
    public long MaxThreadPoolQueue => Volatile.Read(ref _maxQueue);

    /// <summary>The largest managed heap seen in a sample (GC.GetTotalMemory), in MB: how much of the RSS is .NET objects.</summary>
    public double MaxManagedMegabytes => Volatile.Read(ref _maxManaged) / (1024.0 * 1024.0);

    /// <summary>Each process group's share of the machine's CPU capacity from start to stop (see <see cref="CpuTimes"/>).</summary>
    public JsonObject? CpuShare => _cpu;

    /// <summary>CPU seconds per process group from start to stop (see <see cref="CpuTimes"/>).</summary>
    public IReadOnlyDictionary<string, double>? CpuSeconds => _cpuSeconds;

    /// <summary>The most thread-pool threads seen in a sample.</summary>
    public int MaxThreadPoolThreads => Volatile.Read(ref _maxThreads);

    /// <summary>The peak of the whole process so far (VmHWM), for the closing summary.</summary>
    public static double LifetimePeakMegabytes() => ReadStatus("VmHWM:") is { } kb ? kb / 1024.0 : Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024.0);

    public async Task<double> StopAsync()
    {
        await _stop.CancelAsync();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_cpu is null)
        {
            var end = CpuTimes.Take();
            _cpu = end.Since(_cpuAtStart);
            _cpuSeconds = end.SecondsSince(_cpuAtStart);
        }

        Sample();
        return PeakMegabytes;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop.Dispose();
    }

    private async Task SampleAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        while (await timer.WaitForNextTickAsync(_stop.Token))
        {
            Sample();
        }
    }

    private void Sample()
    {
        _maxQueue = Math.Max(_maxQueue, ThreadPool.PendingWorkItemCount);
        _maxThreads = Math.Max(_maxThreads, ThreadPool.ThreadCount);
        _maxManaged = Math.Max(_maxManaged, GC.GetTotalMemory(forceFullCollection: false));
        var bytes = CurrentBytes();
        if (bytes > _peakBytes)
        {
            Volatile.Write(ref _peakBytes, bytes);
        }
    }

    private static long CurrentBytes()
    {
        if (ReadStatus("VmRSS:") is { } kb)
        {
            return kb * 1024;
        }

        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64;
    }

    private static long? ReadStatus(string field)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith(field, StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(field.Length).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return null;
    }
}
