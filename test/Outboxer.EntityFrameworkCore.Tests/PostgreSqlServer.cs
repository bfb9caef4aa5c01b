using System.Net.Sockets;
using Npgsql;
using Xunit;

namespace Outboxer.EntityFrameworkCore.Tests;

/// <summary>
/// The PostgreSQL server the tests run against: <c>OUTBOXER_POSTGRES_URL</c>, or the one <c>bash eng/servers.sh start postgres</c> starts.
/// A server that cannot be reached fails the test with that hint; it never skips it.
/// </summary>
internal static class PostgreSqlServer
{
    private const string DefaultConnectionString = "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer";

    public static string ConnectionString =>
        Environment.GetEnvironmentVariable("OUTBOXER_POSTGRES_URL") is { Length: > 0 } configured ? configured : DefaultConnectionString;

    /// <summary>
    /// The connection string of one test: its schema first on the search path (so the EF model needs no schema), and a lock timeout so
    /// that a statement that wrongly waits fails the test instead of hanging it.
    /// </summary>
    public static string ForSchema(string schema) =>
        new NpgsqlConnectionStringBuilder(ConnectionString) { SearchPath = schema, Options = "-c lock_timeout=30s" }.ConnectionString;

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
