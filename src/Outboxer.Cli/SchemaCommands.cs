using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Outboxer.Providers;

namespace Outboxer.Cli;

/// <summary><c>outboxer schema status | migrate | script | apply</c>: the outbox table's layout version and its migrations.</summary>
internal static class SchemaCommands
{
    public static Command Create()
    {
        var from = new Option<int>("--from")
        {
            Description = "The table's current layout version (see `schema status`); 0, the default, prints the script that creates the table.",
            DefaultValueFactory = _ => 0,
        };
        var script = new Command("script", "Print the SQL that creates the outbox table, or migrates it from --from to the latest layout; no database needed.") { from };
        script.SetVerb((parse, secrets, _) =>
        {
            var settings = StoreSettings.Resolve(parse, secrets, needsConnection: false);
            var fromVersion = parse.GetValue(from);
            var text = settings.GetMigrationScript(fromVersion, "--from");
            Console.Out.WriteLine(text.Length == 0 ? $"-- version {fromVersion.ToString(CultureInfo.InvariantCulture)} is the latest layout: nothing to migrate." : text);
            return Task.FromResult(ExitCodes.Success);
        });

        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of text." };
        var status = new Command("status", "Show the outbox table's layout version and the version this outboxer needs.") { json };
        status.SetVerb(async (parse, secrets, cancellationToken) =>
        {
            var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
            await using var open = settings.Open(createTable: false);
            var current = await open.Schema.GetSchemaStatusAsync(cancellationToken);
            Console.Out.WriteLine(parse.GetValue(json) ? ToJson(current) : $"{settings.DisplayName}: {Describe(current)}");
            return ExitCodes.Success;
        });

        var migrate = new Command("migrate", "Create the outbox table, or migrate it to the latest layout, step by step; safe to run again and from several processes at once.");
        migrate.SetVerb(MigrateAsync);
        var apply = new Command("apply", "The same as `schema migrate` (the name of earlier versions).");
        apply.SetVerb(MigrateAsync);

        return new Command("schema", "Show, migrate or print the outbox table's layout.") { status, migrate, script, apply };
    }

    private static async Task<int> MigrateAsync(ParseResult parse, Secrets secrets, CancellationToken cancellationToken)
    {
        var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
        await using var open = settings.Open(createTable: false);
        var before = await open.Schema.GetSchemaStatusAsync(cancellationToken);
        var after = await open.Schema.MigrateAsync(cancellationToken);
        Console.Out.WriteLine(before.Version == after.Version
            ? $"{settings.DisplayName} is ready: layout version {after.Version.ToString(CultureInfo.InvariantCulture)}, the latest."
            : $"{settings.DisplayName} is ready: {(before.Exists ? $"migrated from layout version {before.Version.ToString(CultureInfo.InvariantCulture)}" : "created")} to version {after.Version.ToString(CultureInfo.InvariantCulture)}, the latest.");
        return ExitCodes.Success;
    }

    private static string Describe(OutboxSchemaStatus status) => status switch
    {
        { Exists: false } => $"missing; run `outboxer schema migrate` to create it (layout version {status.LatestVersion.ToString(CultureInfo.InvariantCulture)}).",
        { IsCurrent: true } => $"layout version {status.Version.ToString(CultureInfo.InvariantCulture)}, the latest.",
        { IsNewer: true } => $"layout version {status.Version.ToString(CultureInfo.InvariantCulture)}, newer than version {status.LatestVersion.ToString(CultureInfo.InvariantCulture)} that this outboxer knows: upgrade it.",
        _ => $"layout version {status.Version.ToString(CultureInfo.InvariantCulture)}, older than version {status.LatestVersion.ToString(CultureInfo.InvariantCulture)}; run `outboxer schema migrate`, or `outboxer schema script --from {status.Version.ToString(CultureInfo.InvariantCulture)}` for the SQL.",
    };

    private static string ToJson(OutboxSchemaStatus status)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("table", status.Table);
            writer.WriteNumber("version", status.Version);
            writer.WriteNumber("latest_version", status.LatestVersion);
            writer.WriteString("state", status switch
            {
                { Exists: false } => "missing",
                { IsCurrent: true } => "current",
                { IsNewer: true } => "newer",
                _ => "older",
            });
            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
