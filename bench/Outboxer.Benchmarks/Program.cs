using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using Npgsql;

namespace Outboxer.Benchmarks;

/// <summary>
/// The Outboxer benchmark: PostgreSQL with its durable defaults, the Outboxer dispatcher, RabbitMQ with publisher confirms.
/// A plain console program: each workload prints one JSON line, then a markdown table closes the run. See bench/README.md.
/// </summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "producer")
        {
            return await Producer.RunChildAsync(args);
        }

        BenchOptions options;
        try
        {
            options = BenchOptions.Parse(args);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException)
        {
            Console.Error.WriteLine(ex.Message);
            Console.Error.WriteLine(BenchOptions.Usage);
            return 2;
        }

        if (options.Help)
        {
            Console.Out.WriteLine(BenchOptions.Usage);
            return 0;
        }

        if (options.PostgresUrl.Length == 0 || options.RabbitMQUrl.Length == 0)
        {
            Console.Error.WriteLine("Set OUTBOXER_POSTGRES_URL and OUTBOXER_RABBITMQ_URL (eval \"$(bash eng/servers.sh env)\"), or pass --postgres and --rabbitmq; or run bash bench/run.sh.");
            return 2;
        }

        var artifacts = options.ArtifactsDirectory ?? Path.Combine(FindRepositoryRoot(), "artifacts");
        Directory.CreateDirectory(artifacts);
        var jsonl = Path.Combine(artifacts, "bench.jsonl");

        await using var admin = NpgsqlDataSource.Create(options.PostgresUrl);
        var fsync = await Database.ShowAsync(admin, "fsync");
        var synchronousCommit = await Database.ShowAsync(admin, "synchronous_commit");
        var fullPageWrites = await Database.ShowAsync(admin, "full_page_writes");
        var serverVersion = await Database.ShowAsync(admin, "server_version");
        var durable = fsync == "on" && synchronousCommit != "off";
        await using (var backend = admin.CreateCommand("SELECT pg_backend_pid()"))
        {
            // The CPU of this server only (its postmaster and the postmaster's children), not of other PostgreSQL servers on the machine.
            var postmaster = CpuTimes.ParentOf((int)(await backend.ExecuteScalarAsync())!);
            CpuTimes.Postmaster = postmaster > 1 && File.Exists($"/proc/{postmaster}/stat") ? postmaster : 0;
        }

        var loadBefore = LoadAverage();
        var warning = durable ? null : $"PostgreSQL is NOT durable (fsync={fsync}, synchronous_commit={synchronousCommit}): commits skip the disk flush, results are not comparable with the targets.";
        if (warning is not null)
        {
            Loud(warning);
        }

        await using var broker = await Broker.ConnectAsync(options.RabbitMQUrl);
        var now = TimeProvider.System.GetUtcNow();
        var common = new JsonObject
        {
            ["fsync"] = fsync,
            ["synchronous_commit"] = synchronousCommit,
            ["full_page_writes"] = fullPageWrites,
            ["postgres"] = $"{options.PostgresLabel} (PostgreSQL {serverVersion})",
            ["commit"] = Environment.GetEnvironmentVariable("OUTBOXER_BENCH_COMMIT") ?? "unknown",
            ["quick"] = options.Quick,
            ["run_id"] = now.ToString("yyyyMMdd'T'HHmmss'Z'", System.Globalization.CultureInfo.InvariantCulture),
            ["cpus"] = Environment.ProcessorCount,
            ["runtime"] = RuntimeInformation.FrameworkDescription,
            ["loadavg_before"] = loadBefore,
            ["claims"] = Database.ClaimByRowLock ? "row-lock" : "lease",
        };
        if (warning is not null)
        {
            common["warning"] = warning;
        }

        var report = new Report(jsonl, common);
        var bench = new Bench(options, report, broker, admin);
        Console.Error.WriteLine($"[bench] PostgreSQL {serverVersion} ({options.PostgresLabel}), fsync={fsync}, synchronous_commit={synchronousCommit}; {Environment.ProcessorCount} CPUs; results appended to {jsonl}");
        var started = Stopwatch.GetTimestamp();
        var failed = false;
        try
        {
            await bench.RunAsync();
        }
        catch (Exception ex)
        {
            failed = true;
            Console.Error.WriteLine($"[bench] FAILED: {ex}");
        }
        finally
        {
            await Database.DropAsync(admin);
            await MinimalRelay.DropAsync(admin);
        }

        var loadAfter = LoadAverage();

        var summary = new StringBuilder();
        summary.AppendLine();
        summary.AppendLine($"## Outboxer benchmark{(options.Quick ? " (quick smoke run: 10x smaller counts, short W3)" : string.Empty)}");
        summary.AppendLine();
        summary.AppendLine($"PostgreSQL {serverVersion} ({options.PostgresLabel}): fsync={fsync}, synchronous_commit={synchronousCommit}, full_page_writes={fullPageWrites}; "
            + $"{Environment.ProcessorCount} CPUs; {RuntimeInformation.FrameworkDescription}; MessageBatchSize {options.BatchSize} unless the batch column says otherwise; "
            + $"total {Stopwatch.GetElapsedTime(started).TotalSeconds:F0} s; process peak RSS (VmHWM) {RssSampler.LifetimePeakMegabytes():F0} MB. "
            + $"Load average (1/5/15 min) before: {loadBefore}; after: {loadAfter}.");
        if (warning is not null)
        {
            summary.AppendLine();
            summary.AppendLine($"**WARNING: {warning}**");
        }

        summary.AppendLine();
        summary.Append(report.Table());
        summary.AppendLine();
        summary.AppendLine("Targets (reported, never enforced): W2 >= 0.75 x ceiling; W1 >= 0.55 x ceiling; W3a p50 <= 2 ms, p99 <= 5 ms; "
            + "W3b p50 <= 5 ms, p99 <= 20 ms; W4-1M >= 0.8 x W2; W4-2d and W4-4d >= W2; peak RSS of the dispatcher's process <= 200 MB "
            + "(this process: it also hosts the consumer and the producers of W1/W3a); W5 >= 50,000 msg/s; loaded variants p99 <= 50 ms. "
            + "\"x relay\": msg/s over the at-least-once minimal relay's same workload (relay-W1, relay-W2; W4 against relay-W2), or for W3 the "
            + "p50 and p99 over relay-W3a's; \"PG CPU x relay\": PostgreSQL CPU-seconds per message over the relay's (issue 16's targets: "
            + "W1 and W2 >= 1.0 x relay, PostgreSQL CPU <= 1.3 x relay). CPU s / 10k msgs: this process (dispatcher or relay, consumer, "
            + "in-process producers), the benchmark's PostgreSQL, RabbitMQ (shared: includes anything else using it meanwhile).");
        var pgProfile = PgProfile.Table(report.Results);
        if (pgProfile.Length > 0)
        {
            summary.AppendLine();
            summary.Append(pgProfile);
        }

        var soak = Soak.Table(report.Results);
        if (soak.Length > 0)
        {
            summary.AppendLine();
            summary.Append(soak);
        }

        var profile = report.ProfileTable();
        if (profile.Length > 0)
        {
            summary.AppendLine();
            summary.Append(profile);
        }

        Console.Out.Write(summary.ToString());
        if (warning is not null)
        {
            Loud(warning);
        }

        return failed ? 1 : 0;
    }

    /// <summary>The machine's load averages over 1, 5 and 15 minutes (/proc/loadavg), as text.</summary>
    private static string LoadAverage()
    {
        try
        {
            var fields = File.ReadAllText("/proc/loadavg").Split(' ');
            return $"{fields[0]} / {fields[1]} / {fields[2]}";
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private static void Loud(string warning)
    {
        var bar = new string('!', 100);
        Console.Error.WriteLine(bar);
        Console.Error.WriteLine($"!!! WARNING: {warning}");
        Console.Error.WriteLine("!!! Restart PostgreSQL without OUTBOXER_PG_FAST=1, or let bench/run.sh start its own durable instance.");
        Console.Error.WriteLine(bar);
    }

    private static string FindRepositoryRoot()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Outboxer.slnx")))
                {
                    return dir.FullName;
                }
            }
        }

        return Environment.CurrentDirectory;
    }
}
