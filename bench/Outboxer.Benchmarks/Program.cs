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
        }

        var summary = new StringBuilder();
        summary.AppendLine();
        summary.AppendLine($"## Outboxer benchmark{(options.Quick ? " (quick smoke run: 10x smaller counts, short W3)" : string.Empty)}");
        summary.AppendLine();
        summary.AppendLine($"PostgreSQL {serverVersion} ({options.PostgresLabel}): fsync={fsync}, synchronous_commit={synchronousCommit}, full_page_writes={fullPageWrites}; "
            + $"{Environment.ProcessorCount} CPUs; {RuntimeInformation.FrameworkDescription}; MessageBatchSize {options.BatchSize} unless the batch column says otherwise; "
            + $"total {Stopwatch.GetElapsedTime(started).TotalSeconds:F0} s; process peak RSS (VmHWM) {RssSampler.LifetimePeakMegabytes():F0} MB.");
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
            + "(this process: it also hosts the consumer and the producers of W1/W3a); W5 >= 50,000 msg/s.");
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
