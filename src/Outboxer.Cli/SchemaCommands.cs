using System.CommandLine;

namespace Outboxer.Cli;

/// <summary><c>outboxer schema script | apply</c>.</summary>
internal static class SchemaCommands
{
    public static Command Create()
    {
        var script = new Command("script", "Print the DDL that creates the outbox table (and on PostgreSQL its schema, indexes and notify trigger); no database needed.");
        script.SetVerb((parse, secrets, _) =>
        {
            var settings = StoreSettings.Resolve(parse, secrets, needsConnection: false);
            Console.Out.WriteLine(settings.GetCreateScript());
            return Task.FromResult(ExitCodes.Success);
        });

        var apply = new Command("apply", "Create the outbox table (and what goes with it) where it is missing; safe to run again.");
        apply.SetVerb(async (parse, secrets, cancellationToken) =>
        {
            var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
            await using var open = settings.Open(createTable: true);
            await open.Store.EnsureCreatedAsync(cancellationToken);
            Console.Out.WriteLine($"{settings.DisplayName} is ready.");
            return ExitCodes.Success;
        });

        return new Command("schema", "Print or apply the DDL of the outbox table.") { script, apply };
    }
}
