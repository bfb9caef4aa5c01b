using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Npgsql;
using Outboxer.PostgreSql;

namespace Outboxer.Cli;

/// <summary>
/// <c>outboxer logmode setup|status|drop</c>: the PostgreSQL log mode's replication slot, publication and dead-letter table (the
/// connection comes from <c>--connection</c>, the config file or <c>OUTBOXER_CONNECTION</c>, as for every verb).
/// </summary>
internal static class LogModeCommands
{
    private static readonly Option<string> Slot = new("--slot") { Description = "The replication slot (default: outboxer).", Recursive = true };

    private static readonly Option<string> Publication = new("--publication") { Description = "The publication (default: outboxer).", Recursive = true };

    private static readonly Option<string> Prefix = new("--prefix") { Description = "The prefix of the outbox's log messages (default: outboxer).", Recursive = true };

    private static readonly Option<string> DeadLetterTable = new("--dead-letter-table") { Description = "The dead-letter table in --schema (default: outbox_log_dead_letters).", Recursive = true };

    private static readonly Option<bool> Json = new("--json") { Description = "Print one JSON object instead of text." };

    private static readonly Option<bool> Yes = new("--yes") { Description = "Confirm dropping the slot: messages written to the log and not yet relayed are lost with it." };

    public static Command Create()
    {
        var setup = new Command("setup", "Check wal_level and the role's REPLICATION privilege, then create what is missing: the dead-letter table, the publication and the slot (pgoutput).") { Json };
        setup.SetVerb((parse, secrets, ct) => RunAsync(parse, secrets, static (s, ct) => s.SetupAsync(ct), ct));

        var status = new Command("status", "Show the log mode's state: wal_level, privilege, slot, publication, lag in bytes and seconds, retained write-ahead log, the max_slot_wal_keep_size guard, dead letters. Exits 1 when something stops the relay.") { Json };
        status.SetVerb((parse, secrets, ct) => RunAsync(parse, secrets, static (s, ct) => s.GetStatusAsync(ct), ct));

        var drop = new Command("drop", "Drop the slot and the publication (a stopped relay's slot retains the write-ahead log until dropped). Needs --yes.") { Yes };
        drop.SetVerb(DropAsync);

        return new Command("logmode", "The PostgreSQL log mode: relay from the write-ahead log through a logical replication slot, with no outbox table.")
        {
            Slot,
            Publication,
            Prefix,
            DeadLetterTable,
            setup,
            status,
            drop,
        };
    }

    private static PostgreSqlLogOptions Options(ParseResult parse, StoreSettings settings)
    {
        var options = new PostgreSqlLogOptions();
        options.SlotName = parse.GetValue(Slot) ?? options.SlotName;
        options.PublicationName = parse.GetValue(Publication) ?? options.PublicationName;
        options.Prefix = parse.GetValue(Prefix) ?? options.Prefix;
        options.SchemaName = settings.Schema ?? options.SchemaName;
        options.DeadLetterTableName = parse.GetValue(DeadLetterTable) ?? options.DeadLetterTableName;
        return options;
    }

    private static StoreSettings Resolve(ParseResult parse, Secrets secrets)
    {
        var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
        if (settings.Store != StoreSettings.Postgres)
        {
            throw new UsageException("The log mode is PostgreSQL's only (logical decoding); use --store postgres.");
        }

        return settings;
    }

    private static async Task<int> RunAsync(ParseResult parse, Secrets secrets, Func<PostgreSqlLogSetup, CancellationToken, Task<PostgreSqlLogStatus>> action, CancellationToken cancellationToken)
    {
        var settings = Resolve(parse, secrets);
        await using var dataSource = NpgsqlDataSource.Create(settings.RequiredConnection);
        PostgreSqlLogSetup setup;
        try
        {
            setup = new PostgreSqlLogSetup(dataSource, Options(parse, settings));
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message);
        }

        var status = await action(setup, cancellationToken);
        Console.Out.WriteLine(parse.GetValue(Json) ? ToJson(status) : ToText(status));
        return status.Problems.Count == 0 ? ExitCodes.Success : ExitCodes.Failed;
    }

    private static async Task<int> DropAsync(ParseResult parse, Secrets secrets, CancellationToken cancellationToken)
    {
        var settings = Resolve(parse, secrets);
        if (!parse.GetValue(Yes))
        {
            await Console.Error.WriteLineAsync("Dropping the slot loses every message written to the log and not yet relayed; run again with --yes to confirm.");
            return ExitCodes.Refused;
        }

        await using var dataSource = NpgsqlDataSource.Create(settings.RequiredConnection);
        var options = Options(parse, settings);
        await new PostgreSqlLogSetup(dataSource, options).DropAsync(cancellationToken);
        Console.Out.WriteLine($"dropped the slot {options.SlotName} and the publication {options.PublicationName}");
        return ExitCodes.Success;
    }

    private static string ToText(PostgreSqlLogStatus status)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"log mode, slot {status.SlotName}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  wal_level:          {status.WalLevel}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  may replicate:      {(status.CanReplicate ? "yes" : "no")}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  slot:               {(status.SlotExists ? status.Active ? $"active (pid {status.ActivePid})" : "inactive (no relay)" : "missing")}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  publication:        {(status.PublicationExists ? "present" : "missing")}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  lag:                {Bytes(status.LagBytes)}{(status.LagSeconds is { } seconds ? $", {StatusCommand.Format(TimeSpan.FromSeconds(seconds))}" : string.Empty)}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  retained WAL:       {Bytes(status.RetainedWalBytes)} (wal_status {status.WalStatus ?? "-"})");
        text.AppendLine(CultureInfo.InvariantCulture, $"  retention guard:    max_slot_wal_keep_size {(status.MaxSlotWalKeepSizeMegabytes < 0 ? "unlimited (-1): a stalled relay keeps the log until the disk fills" : $"{status.MaxSlotWalKeepSizeMegabytes} MB, {Bytes(status.SafeWalSizeBytes)} left")}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  dead letters:       {(status.DeadLetterTableExists ? status.DeadLetters.ToString(CultureInfo.InvariantCulture) : "no table")}");
        foreach (var problem in status.Problems)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"  problem: {problem}");
        }

        return text.ToString().TrimEnd();
    }

    private static string Bytes(long? bytes) => bytes switch
    {
        null => "-",
        >= 1L << 30 => $"{(bytes.Value / (double)(1L << 30)).ToString("0.0", CultureInfo.InvariantCulture)} GB",
        >= 1L << 20 => $"{(bytes.Value / (double)(1L << 20)).ToString("0.0", CultureInfo.InvariantCulture)} MB",
        >= 1L << 10 => $"{(bytes.Value / (double)(1L << 10)).ToString("0.0", CultureInfo.InvariantCulture)} kB",
        _ => $"{bytes.Value.ToString(CultureInfo.InvariantCulture)} B",
    };

    private static string ToJson(PostgreSqlLogStatus status)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("slot", status.SlotName);
            json.WriteString("wal_level", status.WalLevel);
            json.WriteBoolean("can_replicate", status.CanReplicate);
            json.WriteBoolean("slot_exists", status.SlotExists);
            json.WriteBoolean("publication_exists", status.PublicationExists);
            json.WriteBoolean("dead_letter_table_exists", status.DeadLetterTableExists);
            json.WriteBoolean("active", status.Active);
            WriteNumber(json, "active_pid", status.ActivePid);
            WriteNumber(json, "lag_bytes", status.LagBytes);
            if (status.LagSeconds is { } seconds)
            {
                json.WriteNumber("lag_seconds", Math.Round(seconds, 3));
            }
            else
            {
                json.WriteNull("lag_seconds");
            }

            WriteNumber(json, "retained_wal_bytes", status.RetainedWalBytes);
            json.WriteString("wal_status", status.WalStatus);
            WriteNumber(json, "safe_wal_size_bytes", status.SafeWalSizeBytes);
            json.WriteNumber("max_slot_wal_keep_size_mb", status.MaxSlotWalKeepSizeMegabytes);
            json.WriteNumber("dead_letters", status.DeadLetters);
            json.WriteStartArray("problems");
            foreach (var problem in status.Problems)
            {
                json.WriteStringValue(problem);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteNumber(Utf8JsonWriter json, string name, long? value)
    {
        if (value is { } number)
        {
            json.WriteNumber(name, number);
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
