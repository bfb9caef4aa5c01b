using System.CommandLine;

namespace Outboxer.Cli;

/// <summary>The verbs, their options, and the mapping of failures to exit codes.</summary>
internal static class Commands
{
    public static readonly Option<string> ConfigOption = new("--config", "-c")
    {
        Description = "A JSON file with the settings (store, connection, schema, table, broker, rabbitMQUri, output, outbox); flags override it.",
        Recursive = true,
    };

    public static readonly Option<string> StoreOption = new("--store")
    {
        Description = "The store: postgres (default) or sqlite.",
        Recursive = true,
    };

    public static readonly Option<string> ConnectionOption = new("--connection")
    {
        Description = "The connection string (Npgsql, or Microsoft.Data.Sqlite / a database file path); defaults to $OUTBOXER_CONNECTION, then (PostgreSQL) $OUTBOXER_POSTGRES_URL.",
        Recursive = true,
    };

    public static readonly Option<string> SchemaOption = new("--schema")
    {
        Description = "The PostgreSQL schema of the outbox table (default: public).",
        Recursive = true,
    };

    public static readonly Option<string> TableOption = new("--table")
    {
        Description = "The outbox table (default: outbox_messages).",
        Recursive = true,
    };

    public static RootCommand CreateRoot()
    {
        var root = new RootCommand(
            "Outboxer operator CLI: relay an outbox table to a broker, show its status, manage dead letters, print or apply its schema, serve its dashboard.\n" +
            "Exit codes: 0 success, 1 operation failed, 2 usage error, 3 refused (confirmation declined or not given).")
        {
            ConfigOption,
            StoreOption,
            ConnectionOption,
            SchemaOption,
            TableOption,
        };

        root.Add(LogModeCommands.Create());
        root.Add(RelayCommand.Create());
        root.Add(StatusCommand.Create());
        root.Add(DeadLetterCommands.Create());
        root.Add(SchemaCommands.Create());
        root.Add(DashboardCommand.Create());
        return root;
    }

    /// <summary>Sets <paramref name="command"/>'s action to <paramref name="verb"/>, with failures turned into exit codes.</summary>
    public static void SetVerb(this Command command, Func<ParseResult, Secrets, CancellationToken, Task<int>> verb) =>
        command.SetAction((parse, cancellationToken) => RunAsync(verb, parse, cancellationToken));

    /// <summary>Runs a verb and turns its failures into exit codes and messages on standard error, with secrets removed.</summary>
    private static async Task<int> RunAsync(Func<ParseResult, Secrets, CancellationToken, Task<int>> verb, ParseResult parse, CancellationToken cancellationToken)
    {
        var secrets = new Secrets();
        try
        {
            return await verb(parse, secrets, cancellationToken);
        }
        catch (UsageException ex)
        {
            await Console.Error.WriteLineAsync($"error: {secrets.Redact(ex.Message)}");
            await Console.Error.WriteLineAsync("Run 'outboxer --help' (or 'outboxer <verb> --help') for usage.");
            return ExitCodes.Usage;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("Cancelled.");
            return ExitCodes.Failed;
        }
        catch (OutboxException ex)
        {
            await Console.Error.WriteLineAsync($"error: {secrets.Redact(ex.Message)}");
            await WriteHintAsync(ex);
            return ExitCodes.Failed;
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or UnauthorizedAccessException or System.Data.Common.DbException
                                       or System.Net.Sockets.SocketException or TimeoutException)
        {
            await Console.Error.WriteLineAsync($"error: {secrets.Redact(ex.Message)}");
            await WriteHintAsync(ex);
            return ExitCodes.Failed;
        }
    }

    /// <summary>Says what to do next for the failures a newcomer meets first: the outbox table is not there yet.</summary>
    private static async Task WriteHintAsync(Exception ex)
    {
        if (IsMissingTable(ex))
        {
            await Console.Error.WriteLineAsync(
                "hint: the outbox table does not exist yet. Create it with 'outboxer schema apply' (the same flags), or print its SQL with " +
                "'outboxer schema script'; 'outboxer schema status' shows its layout version.");
        }
    }

    /// <summary>
    /// Whether the database said the table is missing: PostgreSQL's SQLSTATE 42P01 (undefined_table) or SQLite's "no such table" (the
    /// stores check for the table first and say so themselves; this catches a table dropped while the verb runs).
    /// </summary>
    internal static bool IsMissingTable(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e is System.Data.Common.DbException db
                && (db.SqlState == "42P01" || db.Message.Contains("no such table", StringComparison.OrdinalIgnoreCase)))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>The passwords of the connection string and broker address: no message on any output may show them.</summary>
internal sealed class Secrets
{
    private readonly List<string> _values = [];

    public void Add(IEnumerable<string> values) => _values.AddRange(values.Where(value => value.Length > 0));

    public string Redact(string text)
    {
        foreach (var value in _values)
        {
            text = text.Replace(value, "***", StringComparison.Ordinal);
        }

        return text;
    }
}
