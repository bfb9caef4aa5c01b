using System.Net.Sockets;
using MySqlConnector;
using Xunit;

namespace Outboxer.Testing.Servers;

/// <summary>
/// The MySQL or MariaDB server the tests run against: <c>OUTBOXER_MYSQL_URL</c>, or the MariaDB that <c>bash eng/servers.sh start mariadb</c>
/// starts. A server that cannot be reached fails the test with that hint; it never skips it.
/// </summary>
/// <remarks>One source file, linked into every test project that talks to MySQL (see test/Servers/README.md).</remarks>
internal static class MySqlServer
{
    /// <summary>Seconds a session of the tests' data sources waits for a row lock before the statement fails.</summary>
    public const int LockWaitTimeoutSeconds = 3;

    private const string DefaultConnectionString = "Server=127.0.0.1;Port=3307;User ID=outboxer;Password=outboxer;Database=outboxer";

    public static string ConnectionString =>
        Environment.GetEnvironmentVariable("OUTBOXER_MYSQL_URL") is { Length: > 0 } configured ? configured : DefaultConnectionString;

    /// <summary>
    /// Creates a data source whose sessions give up on a row lock after <see cref="LockWaitTimeoutSeconds"/> seconds (instead of 50), so a
    /// statement that wrongly waits fails the test fast with "Lock wait timeout exceeded". No test expects to wait on a row lock.
    /// </summary>
    /// <param name="configure">Changes to the connection string, or <see langword="null"/>.</param>
    /// <param name="sessionSql">More statements to run on every session the data source opens (for example <c>SET time_zone = ...</c>).</param>
    public static MySqlDataSource CreateDataSource(Action<MySqlConnectionStringBuilder>? configure = null, string? sessionSql = null)
    {
        var connectionString = new MySqlConnectionStringBuilder(ConnectionString);
        configure?.Invoke(connectionString);
        var sql = $"SET SESSION innodb_lock_wait_timeout = {LockWaitTimeoutSeconds}" + (sessionSql is null ? "" : "; " + sessionSql);
        return new MySqlDataSourceBuilder(connectionString.ConnectionString)
            .UseConnectionOpenedCallback(async (context, cancellationToken) =>
            {
                // A pooled connection is reset (session variables back to the defaults) unless it was reused as it was.
                if (context.Conditions != MySqlConnectionOpenedConditions.None)
                {
                    await using var command = new MySqlCommand(sql, context.Connection);
                    await command.ExecuteNonQueryAsync(cancellationToken);
                }
            })
            .Build();
    }

    public static async Task<MySqlConnection> OpenAsync(MySqlDataSource dataSource)
    {
        try
        {
            return await dataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        }
        catch (Exception ex) when (ex is MySqlException { ErrorCode: MySqlErrorCode.UnableToConnectToHost } or SocketException)
        {
            throw new InvalidOperationException(
                $"MySQL/MariaDB is not reachable at '{WithoutPassword()}' ({ex.Message}). " +
                "Start it with `bash eng/servers.sh start mariadb`, or point OUTBOXER_MYSQL_URL at another server.",
                ex);
        }
    }

    private static string WithoutPassword()
    {
        var builder = new MySqlConnectionStringBuilder(ConnectionString);
        builder.Remove("Password");
        return builder.ConnectionString;
    }
}
