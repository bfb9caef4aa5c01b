using System.Net.Sockets;
using Npgsql;
using Xunit;

namespace Outboxer.Testing.Servers;

/// <summary>
/// The PostgreSQL server the tests run against: <c>OUTBOXER_POSTGRES_URL</c>, or the one <c>bash eng/servers.sh start postgres</c> starts.
/// A server that cannot be reached fails the test with that hint; it never skips it.
/// </summary>
/// <remarks>One source file, linked into every test project that talks to PostgreSQL (see test/Servers/README.md).</remarks>
internal static class PostgreSqlServer
{
    private const string DefaultConnectionString = "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer";

    /// <summary>Gets how long a session of <see cref="SessionConnectionString"/> waits for a lock before the statement fails.</summary>
    public static TimeSpan LockTimeout { get; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets the server's connection string as configured, for processes and stores that the tests start as a user would.</summary>
    public static string ConnectionString { get; } =
        Environment.GetEnvironmentVariable("OUTBOXER_POSTGRES_URL") is { Length: > 0 } configured ? configured : DefaultConnectionString;

    /// <summary>
    /// Gets the connection string of the tests' own sessions: they give up on a lock after <see cref="LockTimeout"/>, so a statement that
    /// wrongly waits fails the test with "lock timeout" instead of hanging it. No test expects to wait on a lock at all.
    /// </summary>
    /// <param name="username">Another role to log in as, or <see langword="null"/> for the configured one.</param>
    /// <param name="searchPath">A schema to put first on the search path (so that unqualified names land there), or <see langword="null"/>.</param>
    public static string SessionConnectionString(string? username = null, string? searchPath = null)
    {
        var builder = new NpgsqlConnectionStringBuilder(ConnectionString) { Options = $"-c lock_timeout={(int)LockTimeout.TotalSeconds}s" };
        if (username is not null)
        {
            builder.Username = username;
        }

        if (searchPath is not null)
        {
            builder.SearchPath = searchPath;
        }

        return builder.ConnectionString;
    }

    /// <summary>Creates a data source over <see cref="SessionConnectionString"/>.</summary>
    public static NpgsqlDataSource CreateDataSource(string? username = null, string? searchPath = null) =>
        NpgsqlDataSource.Create(SessionConnectionString(username, searchPath));

    /// <summary>Opens a connection, failing the test with how to start the server when it is not reachable.</summary>
    public static async Task<NpgsqlConnection> OpenAsync(NpgsqlDataSource dataSource)
    {
        try
        {
            return await dataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        }
        catch (Exception ex) when (ex is NpgsqlException { InnerException: SocketException or IOException or TimeoutException } or SocketException)
        {
            throw new InvalidOperationException(
                $"PostgreSQL is not reachable at '{new NpgsqlConnectionStringBuilder(ConnectionString) { Password = null }}' ({ex.Message}). " +
                "Start it with `bash eng/servers.sh start postgres`, or point OUTBOXER_POSTGRES_URL at another server.",
                ex);
        }
    }
}
