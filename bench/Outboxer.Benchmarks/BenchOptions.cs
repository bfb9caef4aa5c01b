using System.Globalization;

namespace Outboxer.Benchmarks;

/// <summary>The command line of the benchmark (and of its <c>producer</c> child mode).</summary>
internal sealed class BenchOptions
{
    /// <summary>Every workload, in the order a full run executes them.</summary>
    public static readonly string[] AllWorkloads = ["ceiling", "W5", "W2", "W1", "W3a", "W3b", "W4-2d", "W4-4d", "W4-1M", "W1-log", "W2-log", "W3-log", "W6"];

    public string PostgresUrl { get; private set; } = Environment.GetEnvironmentVariable("OUTBOXER_POSTGRES_URL") ?? string.Empty;

    public string RabbitMQUrl { get; private set; } = Environment.GetEnvironmentVariable("OUTBOXER_RABBITMQ_URL") ?? string.Empty;

    /// <summary>Which PostgreSQL this is, as run.sh describes it (for example "shared 127.0.0.1:5433").</summary>
    public string PostgresLabel { get; private set; } = Environment.GetEnvironmentVariable("OUTBOXER_BENCH_PG_LABEL") ?? "OUTBOXER_POSTGRES_URL";

    public bool Quick { get; private set; }

    public bool Profile { get; private set; }

    public bool Warmup { get; private set; } = true;

    /// <summary>Adds W2/W1/W3a runs with library changes simulated from outside (see Bench.MarkWhatIf).</summary>
    public bool WhatIf { get; private set; }

    /// <summary>Writes W3's per-message latencies to artifacts/latency-W3x.csv.</summary>
    public bool DumpLatency { get; private set; }

    /// <summary>The MessageBatchSize of every workload's dispatcher (W2 also runs once per <see cref="BatchSweep"/> size).</summary>
    public int BatchSize { get; private set; } = 100;

    /// <summary>Extra W2 runs at these batch sizes, to show the effect of MessageBatchSize.</summary>
    public IReadOnlyList<int> BatchSweep { get; private set; } = [500];

    public HashSet<string> Only { get; } = new(StringComparer.OrdinalIgnoreCase);

    public string? ArtifactsDirectory { get; private set; }

    /// <summary>The longest a drain may take before the workload is reported as timed out.</summary>
    public TimeSpan Timeout { get; private set; } = TimeSpan.FromSeconds(300);

    // Sizes; --quick divides the counts by 10 and runs W3 for 3 s.
    public int Messages => Quick ? 5_000 : 50_000;

    public int LargeBacklog => Quick ? 100_000 : 1_000_000;

    public int BulkMessages => Quick ? 1_000 : 10_000;

    public int LatencyRate { get; private set; } = 500;

    public double LatencySeconds { get; private set; }

    public double LatencyWarmupSeconds => 1.0;

    public int Producers => 4;

    public int MessagesPerTransaction => 10;

    public bool Help { get; private set; }

    /// <summary>Runs the minimal relay's workloads beside Outboxer's (W2, W1, W3a); --no-relay turns them off.</summary>
    public bool Relay { get; private set; } = true;

    /// <summary>Adds W3a/W3b (and the relay's W3a) with one CPU burner per core.</summary>
    public bool Loaded { get; private set; }

    /// <summary>Runs W6, the soak (never in the default run).</summary>
    public bool Soak { get; private set; }

    public int SoakMessages { get; private set; } = 3_000_000;

    /// <summary>The soak's offered rate; null: 0.8 x this run's W1, or 2,000 msg/s without W1.</summary>
    public double? SoakRate { get; private set; }

    /// <summary>Reads pg_stat_statements and the table statistics around W1 and W2 (Outboxer's and the relay's).</summary>
    public bool PgProfile { get; private set; }

    /// <summary>OutboxOptions.MaxBatchesInFlight for every dispatcher; null for the library's default.</summary>
    public int? BatchesInFlight { get; private set; }

    /// <summary>The ceiling's most unconfirmed publishes at a time (over all its connections).</summary>
    public int CeilingInFlight { get; private set; } = 1000;

    /// <summary>The ceiling's connections, one confirming channel each.</summary>
    public int CeilingConnections { get; private set; } = 1;

    public static BenchOptions Parse(string[] args)
    {
        var options = new BenchOptions();
        double? seconds = null;
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{arg} needs a value.");
            switch (arg)
            {
                case "--quick":
                    options.Quick = true;
                    break;
                case "--profile":
                    options.Profile = true;
                    break;
                case "--what-if":
                    options.WhatIf = true;
                    break;
                case "--no-relay":
                    options.Relay = false;
                    break;
                case "--loaded":
                    options.Loaded = true;
                    break;
                case "--soak":
                    options.Soak = true;
                    break;
                case "--soak-messages":
                    options.SoakMessages = int.Parse(Value(), CultureInfo.InvariantCulture);
                    options.Soak = true;
                    break;
                case "--soak-rate":
                    options.SoakRate = double.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--pg-profile":
                    options.PgProfile = true;
                    break;
                case "--dump-latency":
                    options.DumpLatency = true;
                    break;
                case "--no-warmup":
                    options.Warmup = false;
                    break;
                case "--only":
                    foreach (var name in Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        options.AddOnly(name);
                    }

                    break;
                case "--batch":
                    options.BatchSize = int.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--lease-claims":
                    Database.ClaimByRowLock = false;
                    break;
                case "--no-prepare":
                    Database.Prepare = false;
                    break;
                case "--in-flight":
                    options.BatchesInFlight = int.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--batch-sweep":
                    options.BatchSweep = [.. Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture))];
                    break;
                case "--w3-seconds":
                    seconds = double.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--w3-rate":
                    options.LatencyRate = int.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--ceiling-in-flight":
                    options.CeilingInFlight = int.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--ceiling-connections":
                    options.CeilingConnections = int.Parse(Value(), CultureInfo.InvariantCulture);
                    break;
                case "--timeout":
                    options.Timeout = TimeSpan.FromSeconds(double.Parse(Value(), CultureInfo.InvariantCulture));
                    break;
                case "--postgres":
                    options.PostgresUrl = Value();
                    break;
                case "--rabbitmq":
                    options.RabbitMQUrl = Value();
                    break;
                case "--pg-label":
                    options.PostgresLabel = Value();
                    break;
                case "--artifacts":
                    options.ArtifactsDirectory = Value();
                    break;
                case "-h" or "--help":
                    options.Help = true;
                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{arg}'. Run with --help.");
            }
        }

        options.LatencySeconds = seconds ?? (options.Quick ? 3 : 20);
        if (options.SoakMessages <= 0 || options.SoakMessages % options.MessagesPerTransaction != 0)
        {
            throw new ArgumentException($"--soak-messages {options.SoakMessages} must be a positive multiple of {options.MessagesPerTransaction} (the soak commits transactions of {options.MessagesPerTransaction}).");
        }

        if (options.SoakRate is <= 0 or double.NaN)
        {
            throw new ArgumentException($"--soak-rate {options.SoakRate} must be positive (messages per second).");
        }

        return options;
    }

    public bool Runs(string workload) => Only.Count == 0 || Only.Contains(workload);

    private void AddOnly(string name)
    {
        switch (name.ToUpperInvariant())
        {
            case "W3":
                Only.Add("W3a");
                Only.Add("W3b");
                break;
            case "W4":
                Only.Add("W4-2d");
                Only.Add("W4-4d");
                Only.Add("W4-1M");
                break;
            case "W6":
                Only.Add("W6");
                Soak = true;
                break;
            default:
                var known = AllWorkloads.FirstOrDefault(w => string.Equals(w, name, StringComparison.OrdinalIgnoreCase))
                    ?? throw new ArgumentException($"Unknown workload '{name}'; known: {string.Join(", ", AllWorkloads)}, W3, W4.");
                Only.Add(known);
                break;
        }

        // Ratios need their reference: W1 and W2 are compared with the ceiling, W4 with W2.
        if (Only.Overlaps(["W4-2d", "W4-4d", "W4-1M"]))
        {
            Only.Add("W2");
        }

        if (Only.Overlaps(["W1", "W2", "W1-log", "W2-log"]))
        {
            Only.Add("ceiling");
        }
    }

    public const string Usage = """
        Outboxer benchmark: PostgreSQL (durable) -> Outboxer dispatcher -> RabbitMQ (confirms, persistent, durable queue).

        usage: Outboxer.Benchmarks [options]            (bash bench/run.sh [options] starts the servers and builds first)
          --only W2,W3a       run only these workloads (ceiling, W1, W2, W3a, W3b, W3, W4-1M, W4-2d, W4-4d, W4, W5, W6,
                              W1-log, W2-log, W3-log: the PostgreSQL log mode, each on a slot of its own);
                              W1/W2 add the ceiling and W4 adds W2, which their targets are measured against; W1, W2
                              and W3a bring their variants (W1-many, W2-b500, W3a-send) and the minimal relay's rows
          --quick             smoke run: 10x smaller counts, W3 for 3 s
          --profile           time the dispatcher's claim SQL, publish/confirm wait and mark SQL per batch
          --batch N           OutboxOptions.MessageBatchSize for every dispatcher (default 100)
          --no-prepare        PostgreSqlOutboxStoreOptions.PrepareStatements = false for every store
          --lease-claims      PostgreSqlOutboxStoreOptions.ClaimByRowLock = false for every store (claims write a lease)
          --in-flight N       OutboxOptions.MaxBatchesInFlight for every dispatcher (default: the library's)
          --batch-sweep A,B   extra W2 runs at these batch sizes (default 500; "" for none)
          --w3-seconds S      W3 duration (default 20, quick 3); --w3-rate R messages/s (default 500)
          --ceiling-in-flight N   the ceiling's unconfirmed publishes at most (default 1000)
          --ceiling-connections N the ceiling's connections, one channel each, sharing the in-flight limit (default 1)
          --timeout S         give up on a drain after S seconds (default 300)
          --postgres CS       Npgsql connection string (default $OUTBOXER_POSTGRES_URL)
          --rabbitmq URI      AMQP URI (default $OUTBOXER_RABBITMQ_URL)
          --artifacts DIR     where bench.jsonl is appended (default <repo>/artifacts)
          --no-warmup         skip the unreported warm-up pass
          --dump-latency      write W3's per-message latencies to artifacts/latency-<workload>.csv
          --no-relay          skip the minimal relay's workloads (relay-W2, relay-W1, relay-W3a and the at-most-once bounds)
          --loaded            also run W3a and W3b (and relay-W3a) with one CPU burner per core (W3a-loaded, W3b-loaded)
          --soak              also run W6, the soak (--only W6 runs it alone): --soak-messages N (default 3,000,000),
                              --soak-rate R (default 0.8 x this run's W1, or 2,000 msg/s), cleanup with a 10 s retention
          --pg-profile        pg_stat_statements and table/index/WAL statistics around W1, W1-many and W2 and the relay's W1/W2
                              (needs pg_stat_statements preloaded: bench/run.sh's private PostgreSQL has it)
          --what-if           also run W2, W1 and W3a with two library changes simulated from outside: the NOTIFY trigger
                              disabled and the dispatcher's claim/mark committed with synchronous_commit=off
        Results: one JSON object per line on stdout and appended to artifacts/bench.jsonl, then a markdown table.
        """;
}
