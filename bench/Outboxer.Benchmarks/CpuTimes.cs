using System.Globalization;
using System.Text.Json.Nodes;

namespace Outboxer.Benchmarks;

/// <summary>
/// CPU time (user + system, from /proc/&lt;pid&gt;/stat) of every process on the machine, grouped into PostgreSQL, RabbitMQ (the Erlang VM),
/// this benchmark process and everything else. The difference of two snapshots shows where a workload's CPU went: on a 2-core machine
/// the database, the broker and the dispatcher share the same cores, so a rate is often bounded by their sum.
/// </summary>
internal sealed class CpuTimes
{
    private static readonly double TicksPerSecond = 100; // USER_HZ: 100 on Linux for every architecture .NET runs on.
    private static readonly int Self = Environment.ProcessId;

    private readonly Dictionary<string, double> _seconds;
    private readonly long _timestamp;

    private CpuTimes(Dictionary<string, double> seconds, long timestamp)
    {
        _seconds = seconds;
        _timestamp = timestamp;
    }

    public static CpuTimes Take()
    {
        var seconds = new Dictionary<string, double>(StringComparer.Ordinal) { ["postgres"] = 0, ["rabbitmq"] = 0, ["bench"] = 0, ["other"] = 0 };
        if (!Directory.Exists("/proc"))
        {
            return new CpuTimes(seconds, System.Diagnostics.Stopwatch.GetTimestamp());
        }

        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue;
            }
            catch (UnauthorizedAccessException)
            {
                continue;
            }

            // pid (comm) state ppid ... utime(14) stime(15): comm may hold spaces, so split after its closing parenthesis.
            var open = stat.IndexOf('(', StringComparison.Ordinal);
            var close = stat.LastIndexOf(')');
            if (open < 0 || close < open)
            {
                continue;
            }

            var comm = stat[(open + 1)..close];
            var fields = stat[(close + 2)..].Split(' ');
            if (fields.Length < 13)
            {
                continue;
            }

            var ticks = double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture);
            var group = pid == Self ? "bench"
                : comm.StartsWith("postgres", StringComparison.Ordinal) ? "postgres"
                : comm is "beam.smp" or "erl_child_setup" or "epmd" or "inet_gethost" ? "rabbitmq"
                : "other";
            seconds[group] += ticks / TicksPerSecond;
        }

        return new CpuTimes(seconds, System.Diagnostics.Stopwatch.GetTimestamp());
    }

    /// <summary>
    /// CPU seconds per group since <paramref name="start"/>, and each group's share of the machine's capacity over the interval
    /// (wall time x processors). Processes that ended in between are not counted; the share of "idle" is what was left.
    /// </summary>
    public JsonObject Since(CpuTimes start)
    {
        var wall = System.Diagnostics.Stopwatch.GetElapsedTime(start._timestamp, _timestamp).TotalSeconds;
        var capacity = wall * Environment.ProcessorCount;
        var result = new JsonObject();
        var used = 0.0;
        foreach (var (group, seconds) in _seconds)
        {
            var delta = Math.Max(0, seconds - start._seconds.GetValueOrDefault(group));
            used += delta;
            result[group] = capacity > 0 ? Math.Round(delta / capacity, 3) : null;
        }

        result["idle"] = capacity > 0 ? Math.Round(Math.Max(0, 1 - (used / capacity)), 3) : null;
        return result;
    }
}
