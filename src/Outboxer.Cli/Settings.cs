using System.Data.Common;
using System.Text.Json;
using System.Text.Json.Serialization;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Outboxer.Sqlite;

namespace Outboxer.Cli;

/// <summary>The exit codes scripts can rely on.</summary>
internal static class ExitCodes
{
    public const int Success = 0;
    public const int Failed = 1;
    public const int Usage = 2;
    public const int Refused = 3;
}

/// <summary>A wrong or missing option found after parsing: exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>The <c>--config</c> file: the same settings as the flags (flags win), plus the outbox options of the relay.</summary>
internal sealed class ConfigFile
{
    public string? Store { get; set; }

    public string? Connection { get; set; }

    public string? Schema { get; set; }

    public string? Table { get; set; }

    public string? Broker { get; set; }

    public string? RabbitMQUri { get; set; }

    public string? Output { get; set; }

    public OutboxOptions? Outbox { get; set; }

    public static ConfigFile Load(string? path)
    {
        if (path is null)
        {
            return new ConfigFile();
        }

        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"Cannot read the config file '{path}': {ex.Message}");
        }

        try
        {
            return JsonSerializer.Deserialize(text, ConfigJsonContext.Default.ConfigFile) ?? new ConfigFile();
        }
        catch (JsonException ex)
        {
            throw new UsageException($"The config file '{path}' is not valid: {ex.Message}");
        }
    }
}

[JsonSourceGenerationOptions(PropertyNameCaseInsensitive = true, ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(ConfigFile))]
internal sealed partial class ConfigJsonContext : JsonSerializerContext;

/// <summary>The store settings every verb shares, resolved from the flags, the config file and the environment.</summary>
internal sealed class StoreSettings
{
    public const string Postgres = "postgres";
    public const string Sqlite = "sqlite";

    public required string Store { get; init; }

    public string? Connection { get; init; }

    public string? Schema { get; init; }

    public string Table { get; init; } = "outbox_messages";

    public ConfigFile Config { get; init; } = new();

    /// <summary>The environment variable the connection string is read from when no flag or config file gives it.</summary>
    public const string ConnectionVariable = "OUTBOXER_CONNECTION";

    /// <summary>The variable <c>eval "$(bash eng/servers.sh env)"</c> exports for the test PostgreSQL, read after <see cref="ConnectionVariable"/>.</summary>
    public const string PostgresUrlVariable = "OUTBOXER_POSTGRES_URL";

    public string RequiredConnection => Connection ?? throw new UsageException(
        $"A connection string is required: --connection, \"connection\" in the --config file, or the {ConnectionVariable} environment variable" +
        (Store == Postgres ? $" ({PostgresUrlVariable}, which eng/servers.sh env exports, is read after it)." : "."));

    public static StoreSettings Resolve(System.CommandLine.ParseResult parse, Secrets secrets, bool needsConnection)
    {
        var config = ConfigFile.Load(parse.GetValue(Commands.ConfigOption));
        var store = Normalize(parse.GetValue(Commands.StoreOption) ?? config.Store ?? Postgres);
        var connection = parse.GetValue(Commands.ConnectionOption) ?? config.Connection ?? NullIfEmpty(Environment.GetEnvironmentVariable(ConnectionVariable))
            ?? (store == Postgres ? NullIfEmpty(Environment.GetEnvironmentVariable(PostgresUrlVariable)) : null);
        if (connection is not null)
        {
            secrets.Add(PasswordsIn(connection));
            CheckConnectionString(store, connection);
        }

        var schema = parse.GetValue(Commands.SchemaOption) ?? config.Schema;
        if (store == Sqlite && schema is not null)
        {
            throw new UsageException("--schema applies to PostgreSQL only; a SQLite database has no schemas.");
        }

        var table = parse.GetValue(Commands.TableOption) ?? config.Table ?? "outbox_messages";
        CheckName(table, "--table");
        if (schema is not null)
        {
            CheckName(schema, "--schema");
        }

        var settings = new StoreSettings
        {
            Store = store,
            Connection = connection,
            Schema = schema,
            Table = table,
            Config = config,
        };
        if (needsConnection)
        {
            _ = settings.RequiredConnection;
        }

        return settings;
    }

    /// <summary>Refuses a table or schema name the stores would refuse, naming the flag (not the store's option) and quoting the value once.</summary>
    private static void CheckName(string value, string flag)
    {
        try
        {
            SqlIdentifier.Validate(value, flag);
        }
        catch (ArgumentException)
        {
            throw new UsageException(
                $"{flag} '{value}' is not a valid name: use 1 to {SqlIdentifier.MaxLength} ASCII letters, digits and underscores, not starting with a digit " +
                $"(\"{flag[2..]}\" in the --config file follows the same rule).");
        }
    }

    /// <summary>
    /// Refuses a connection string the store's provider cannot read, as a usage error naming the flag (the provider's message names the
    /// keyword, never the password, which is redacted anyway).
    /// </summary>
    private static void CheckConnectionString(string store, string connection)
    {
        try
        {
            _ = store == Postgres
                ? new NpgsqlConnectionStringBuilder(connection).ConnectionString
                : new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(SqliteConnectionString(connection)).ConnectionString;
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or InvalidOperationException)
        {
            throw new UsageException($"--connection is not a valid {(store == Postgres ? "PostgreSQL" : "SQLite")} connection string: {ex.Message}");
        }
    }

    /// <summary>A SQLite connection string, or a file path made into one.</summary>
    private static string SqliteConnectionString(string connection) =>
        connection.Contains('=', StringComparison.Ordinal) ? connection : $"Data Source={connection}";

    public static string Normalize(string store) => store.ToUpperInvariant() switch
    {
        "POSTGRES" or "POSTGRESQL" or "PG" => Postgres,
        "SQLITE" => Sqlite,
        _ => throw new UsageException($"Unknown store '{store}': use postgres or sqlite."),
    };

    public string DisplayName => Store == Postgres ? $"PostgreSQL \"{Schema ?? "public"}\".\"{Table}\"" : $"SQLite \"{Table}\"";

    /// <summary>The SQL that migrates the table from <paramref name="fromVersion"/> (0: creates it) to the latest layout.</summary>
    public string GetMigrationScript(int fromVersion, string flag)
    {
        try
        {
            return Store == Postgres
                ? PostgreSqlOutboxStore.GetMigrationScript(PostgresOptions(createTable: false), fromVersion)
                : SqliteOutboxStore.GetMigrationScript(SqliteOptions(createTable: false), fromVersion);
        }
        catch (ArgumentOutOfRangeException)
        {
            throw new UsageException($"{flag} {fromVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)} is not a layout version: use 0 (no table) up to the latest version, which `outboxer schema status` shows.");
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message);
        }
    }

    /// <summary>Opens the store; <paramref name="createTable"/> makes its first use create the table when it is missing.</summary>
    public OpenStore Open(bool createTable)
    {
        var connection = RequiredConnection;
        try
        {
            if (Store == Postgres)
            {
                var dataSource = NpgsqlDataSource.Create(connection);
                try
                {
                    return new OpenStore(new PostgreSqlOutboxStore(dataSource, PostgresOptions(createTable)), dataSource);
                }
                catch
                {
                    dataSource.Dispose();
                    throw;
                }
            }

            var sqlite = SqliteConnectionString(connection);
            return new OpenStore(new SqliteOutboxStore(sqlite, SqliteOptions(createTable)), null);
        }
        catch (ArgumentException ex)
        {
            // An invalid connection string or table name. The message names the key, never the value of a password.
            throw new UsageException(ex.Message);
        }
    }

    private PostgreSqlOutboxStoreOptions PostgresOptions(bool createTable) =>
        new() { SchemaName = Schema ?? "public", TableName = Table, CreateTableIfMissing = createTable };

    private SqliteOutboxStoreOptions SqliteOptions(bool createTable) =>
        new() { TableName = Table, CreateTableIfMissing = createTable };

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>The passwords in a connection string or in the user information of a URI.</summary>
    public static string[] PasswordsIn(string connection)
    {
        if (Uri.TryCreate(connection, UriKind.Absolute, out var uri) && uri.UserInfo.Contains(':', StringComparison.Ordinal))
        {
            var password = uri.UserInfo[(uri.UserInfo.IndexOf(':', StringComparison.Ordinal) + 1)..];
            return [password, Uri.UnescapeDataString(password)];
        }

        return PasswordsInConnectionString(connection);
    }

    private static string[] PasswordsInConnectionString(string connection)
    {
        try
        {
            var builder = new DbConnectionStringBuilder { ConnectionString = connection };
            foreach (var key in new[] { "Password", "Pwd" })
            {
                if (builder.TryGetValue(key, out var value) && value is string { Length: > 0 } password)
                {
                    return [password];
                }
            }
        }
        catch (ArgumentException)
        {
            // Not a key=value connection string (a SQLite file path): no password in it.
        }

        return [];
    }
}

/// <summary>A store and the data source it needs disposed.</summary>
internal sealed class OpenStore(RelationalOutboxStore store, IAsyncDisposable? owned) : IAsyncDisposable
{
    /// <summary>The dispatcher's contract, for the relay.</summary>
    public IOutboxStore Store { get; } = store;

    /// <summary>The operator's contract: statistics and dead letters.</summary>
    public IOutboxAdministration Administration { get; } = store;

    /// <summary>The table's layout: version and migrations.</summary>
    public IOutboxSchema Schema { get; } = store;

    public ValueTask DisposeAsync() => owned?.DisposeAsync() ?? ValueTask.CompletedTask;
}
