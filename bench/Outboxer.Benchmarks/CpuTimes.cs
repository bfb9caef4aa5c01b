using System.Globalization;
using System.Text.Json.Nodes;

namespace Outboxer.Benchmarks;

/// <summary>
/// CPU time (user + system, from /proc/&lt;pid&gt;/stat) of every process on the machine, grouped into PostgreSQL, RabbitMQ (the Erlang VM),
/// this benchmark process and everything else. The difference of two snapshots shows where a workload's CPU went: on a 2-core machine
/// the database, the broker and the dispatcher share the same cores, so a rate is often bounded by their sum.
/// </summary>
/// <remarks>
/// "postgres" is the benchmark's own server only (its postmaster, found from a backend's parent, and that postmaster's children) once
/// <see cref="Postmaster"/> is set; any other PostgreSQL on the machine (the shared test server other people's tests use) is
/// "postgres_other". RabbitMQ is shared and cannot be split that way: its CPU includes whatever else uses the broker meanwhile.
/// </remarks>
internal sealed class CpuTimes
{
    private static readonly double TicksPerSecond = 100; // USER_HZ: 100 on Linux for every architecture .NET runs on.
    private static readonly int Self = Environment.ProcessId;

    /// <summary>Gets or sets the pid of the benchmark's PostgreSQL postmaster (0: every PostgreSQL process counts as "postgres").</summary>
    public static int Postmaster { get; set; }

    /// <summary>The parent of <paramref name="pid"/> (from /proc), or 0.</summary>
    public static int ParentOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return int.Parse(fields[1], CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or ArgumentOutOfRangeException)
        {
            return 0;
        }
    }

    private readonly Dictionary<string, double> _seconds;
    private readonly long _timestamp;

    private CpuTimes(Dictionary<string, double> seconds, long timestamp)
    {
        _seconds = seconds;
        _timestamp = timestamp;
    }

    public static CpuTimes Take()
    {
        var seconds = new Dictionary<string, double>(StringComparer.Ordinal) { ["postgres"] = 0, ["postgres_other"] = 0, ["rabbitmq"] = 0, ["bench"] = 0, ["other"] = 0 };
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
            var postmaster = Postmaster;
            var group = pid == Self ? "bench"
                : comm.StartsWith("postgres", StringComparison.Ordinal)
                    ? postmaster == 0 || pid == postmaster || fields[1] == postmaster.ToString(CultureInfo.InvariantCulture) ? "postgres" : "postgres_other"
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

    /// <summary>CPU seconds per group since <paramref name="start"/>.</summary>
    public Dictionary<string, double> SecondsSince(CpuTimes start) =>
        _seconds.ToDictionary(p => p.Key, p => Math.Max(0, p.Value - start._seconds.GetValueOrDefault(p.Key)), StringComparer.Ordinal);
}
