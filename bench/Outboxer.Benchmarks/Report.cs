using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Outboxer.Benchmarks;

/// <summary>One workload's outcome: a JSON line, and a row of the closing table.</summary>
internal sealed class Result
{
    public required string Workload { get; init; }

    public required int Messages { get; init; }

    public required double Seconds { get; init; }

    public double MsgsPerSec => Seconds > 0 ? Messages / Seconds : 0;

    public Latency? Latency { get; init; }

    public double? Ceiling { get; set; }

    public double? RatioToCeiling => Ceiling is > 0 && Workload != "ceiling" ? MsgsPerSec / Ceiling : null;

    public double PeakRssMb { get; init; }

    public int? BatchSize { get; set; }

    public int Dispatchers { get; init; } = 1;

    /// <summary>The target as text (for example "ratio >= 0.75"), or null when the workload has none.</summary>
    public string? Target { get; set; }

    public bool? TargetMet { get; set; }

    public bool Complete { get; init; } = true;

    public JsonObject Extra { get; } = [];

    public JsonObject? Profile { get; set; }

    /// <summary>Gets or sets the at-least-once minimal relay's result of the same workload (null for the relay's own rows).</summary>
    public Result? Relay { get; set; }

    /// <summary>Throughput relative to <see cref="Relay"/> (W1, W2, W4; W3 compares latencies instead), or null.</summary>
    public double? RatioToRelay => Relay is { MsgsPerSec: > 0 } r && !Workload.Contains("W3", StringComparison.Ordinal) ? MsgsPerSec / r.MsgsPerSec : null;

    /// <summary>CPU seconds per 10,000 messages for each process group (bench, postgres, rabbitmq, ...), or null.</summary>
    public Dictionary<string, double>? CpuPer10k { get; set; }

    /// <summary>With --pg-profile: where PostgreSQL's time went (see <see cref="PgProfile"/>).</summary>
    public JsonObject? PgProfile { get; set; }

    public bool IsRelay => Workload.StartsWith("relay-", StringComparison.Ordinal);
}

/// <summary>Commit-to-consumer latency percentiles, in milliseconds.</summary>
internal sealed record Latency(int Count, double P50, double P90, double P99, double Max, double Min)
{
    /// <summary>Nearest-rank percentiles of the given latencies (sorted in place).</summary>
    public static Latency? Of(List<double> milliseconds)
    {
        if (milliseconds.Count == 0)
        {
            return null;
        }

        milliseconds.Sort();
        double Rank(double p) => milliseconds[Math.Clamp((int)Math.Ceiling(p * milliseconds.Count) - 1, 0, milliseconds.Count - 1)];
        return new Latency(milliseconds.Count, Rank(0.50), Rank(0.90), Rank(0.99), milliseconds[^1], milliseconds[0]);
    }
}

/// <summary>Writes results as JSON lines (stdout and artifacts/bench.jsonl) and the closing markdown table.</summary>
internal sealed class Report(string jsonlPath, JsonObject common)
{
    public const double RssTargetMb = 200;

    // Readable lines: ">=" and "+" stay as they are instead of \u003E and \u002B (the lines are never embedded in HTML).
    private static readonly JsonSerializerOptions s_compact = new() { WriteIndented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public List<Result> Results { get; } = [];

    public void Add(Result result)
    {
        Results.Add(result);
        var line = ToJson(result).ToJsonString(s_compact);
        Console.Out.WriteLine(line);
        Console.Out.Flush();
        File.AppendAllText(jsonlPath, line + "\n");
    }

    private JsonObject ToJson(Result r)
    {
        static JsonNode? Round(double? value, int digits) => value is { } v && double.IsFinite(v) ? JsonValue.Create(Math.Round(v, digits)) : null;
        var json = new JsonObject
        {
            ["workload"] = r.Workload,
            ["messages"] = r.Messages,
            ["seconds"] = Round(r.Seconds, 3),
            ["msgs_per_sec"] = Round(r.MsgsPerSec, 0),
            ["p50_ms"] = Round(r.Latency?.P50, 3),
            ["p90_ms"] = Round(r.Latency?.P90, 3),
            ["p99_ms"] = Round(r.Latency?.P99, 3),
            ["max_ms"] = Round(r.Latency?.Max, 3),
            ["ceiling_msgs_per_sec"] = Round(r.Ceiling, 0),
            ["ratio_to_ceiling"] = Round(r.RatioToCeiling, 3),
            ["peak_rss_mb"] = Round(r.PeakRssMb, 1),
            ["batch_size"] = r.BatchSize,
            ["dispatchers"] = r.Dispatchers,
            ["complete"] = r.Complete,
            ["target"] = r.Target,
            ["target_met"] = r.TargetMet,
            ["rss_target_met"] = r.PeakRssMb <= RssTargetMb,
        };
        if (r.CpuPer10k is { } cpu)
        {
            var per10k = new JsonObject();
            foreach (var (group, seconds) in cpu)
            {
                per10k[group] = Math.Round(seconds, 3);
            }

            json["cpu_seconds_per_10k_messages"] = per10k;
        }

        if (r.Relay is { } relay)
        {
            json["relay_workload"] = relay.Workload;
            json["relay_msgs_per_sec"] = Round(relay.MsgsPerSec, 0);
            json["ratio_to_relay"] = Round(r.RatioToRelay, 3);
            if (r.Latency is { } latency && relay.Latency is { } relayLatency && r.Workload.StartsWith("W3", StringComparison.Ordinal))
            {
                json["p50_ratio_to_relay"] = Round(latency.P50 / relayLatency.P50, 2);
                json["p99_ratio_to_relay"] = Round(latency.P99 / relayLatency.P99, 2);
            }

            if (r.CpuPer10k?.GetValueOrDefault("postgres") is > 0 and var pg && relay.CpuPer10k?.GetValueOrDefault("postgres") is > 0 and var relayPg)
            {
                json["postgres_cpu_ratio_to_relay"] = Round(pg / relayPg, 2);
            }
        }

        if (r.PgProfile is not null)
        {
            json["pg_profile"] = r.PgProfile.DeepClone();
        }
        foreach (var (key, value) in r.Extra)
        {
            json[key] = value?.DeepClone();
        }

        if (r.Profile is not null)
        {
            json["profile"] = r.Profile.DeepClone();
        }

        foreach (var (key, value) in common)
        {
            json[key] = value?.DeepClone();
        }

        return json;
    }

    public string Table()
    {
        static string F(double? value, string format) => value is { } v && double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "";
        var text = new StringBuilder();
        text.AppendLine("| workload | batch | disp. | messages | seconds | msg/s | x ceiling | x relay | p50 ms | p90 ms | p99 ms | max ms | CPU s / 10k msgs: process / PG / MQ | PG CPU x relay | peak RSS MB | target | met |");
        text.AppendLine("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|");
        foreach (var r in Results)
        {
            var met = r.TargetMet switch { true => "yes", false => "**NO**", null => "" };
            var rss = F(r.PeakRssMb, "F0") + (r.PeakRssMb > RssTargetMb ? " **(> 200)**" : "");
            var name = r.Workload.StartsWith("relay-amo", StringComparison.Ordinal) ? $"({r.Workload}: at most once, upper bound only)" : r.Workload;
            var relayRatio = r.RatioToRelay is { } ratio ? F(ratio, "F2")
                : r.Relay?.Latency is { } rl && r.Latency is { } l ? $"p50 {F(l.P50 / rl.P50, "F1")} / p99 {F(l.P99 / rl.P99, "F1")}" : "";
            var cpu = r.CpuPer10k is { } c
                ? $"{F(c.GetValueOrDefault("bench"), "F2")} / {F(c.GetValueOrDefault("postgres"), "F2")} / {F(c.GetValueOrDefault("rabbitmq"), "F2")}"
                : "";
            var pgRatio = r.Relay?.CpuPer10k?.GetValueOrDefault("postgres") is > 0 and var relayPg && r.CpuPer10k?.GetValueOrDefault("postgres") is { } pg
                ? F(pg / relayPg, "F2") : "";
            text.Append(CultureInfo.InvariantCulture, $"| {name}{(r.Complete ? "" : " (incomplete)")} | {r.BatchSize?.ToString(CultureInfo.InvariantCulture) ?? ""} | {r.Dispatchers} | {r.Messages:N0} | {F(r.Seconds, "F2")} | {F(r.MsgsPerSec, "N0")} ")
                .Append(CultureInfo.InvariantCulture, $"| {F(r.RatioToCeiling, "F2")} | {relayRatio} | {F(r.Latency?.P50, "F2")} | {F(r.Latency?.P90, "F2")} | {F(r.Latency?.P99, "F2")} | {F(r.Latency?.Max, "F2")} | {cpu} | {pgRatio} ")
                .AppendLine(CultureInfo.InvariantCulture, $"| {rss} | {r.Target ?? ""} | {met} |");
        }

        return text.ToString();
    }

    public string ProfileTable()
    {
        var rows = Results.Where(r => r.Profile is not null).ToList();
        if (rows.Count == 0)
        {
            return string.Empty;
        }

        var text = new StringBuilder();
        text.AppendLine("Dispatcher profile (averages per batch, ms; shares are of the workload's wall time per dispatcher):");
        text.AppendLine();
        text.AppendLine("| workload | batches | avg batch | claim avg / max | publish+confirm avg / max | mark avg / max | gap | per-message confirm avg / max | empty claims | share claim / publish / mark |");
        text.AppendLine("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|");
        foreach (var r in rows)
        {
            var p = r.Profile!;
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Workload} | {p["batches"]} | {p["avg_batch_size"]} | {p["claim_ms_avg"]} / {p["claim_ms_max"]} | {p["publish_phase_ms_avg"]} / {p["publish_phase_ms_max"]} | {p["mark_ms_avg"]} / {p["mark_ms_max"]} | {p["gap_ms_avg"]} | {p["publish_confirm_ms_avg_per_message"]} / {p["publish_confirm_ms_max"]} | {p["empty_claims"]} | {p["share_claim"]} / {p["share_publish"]} / {p["share_mark"]} |");
        }

        return text.ToString();
    }
}
