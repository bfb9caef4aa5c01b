using MySqlConnector;
using Outboxer.Providers;

namespace Outboxer.MySql;

/// <summary>
/// An outbox store in a MySQL 8 or MariaDB 10.6+ table (MySqlConnector). Claims select and lock rows with
/// <c>FOR UPDATE SKIP LOCKED</c> in a short <c>READ COMMITTED</c> transaction and set their lease in the same transaction, so any
/// number of dispatchers claim disjoint batches without waiting on each other.
/// </summary>
/// <remarks>
/// <para>
/// The table lives in the database that the connection string names. The payload is a <c>LONGBLOB</c>, options and headers are
/// <c>JSON</c> (on MariaDB an alias of <c>LONGTEXT</c> with a validity check), times are <c>DATETIME(6)</c> holding UTC (microsecond
/// precision), and text is <c>utf8mb4</c>. Every time is sent as a parameter (the store never calls <c>NOW()</c>), and <c>DATETIME</c>
/// is not converted by the session's <c>time_zone</c>, so the server's and the session's time zones do not matter.
/// The store does not own <see cref="MySqlDataSource"/>: dispose it yourself when the application stops.
/// </para>
/// <para>
/// The table's layout version is kept in its comment. With <see cref="MySqlOutboxStoreOptions.CreateTableIfMissing"/>, the first
/// operation reads <c>information_schema</c> and runs DDL only when the table is missing or older, or one of its indexes is missing,
/// under a named lock (<c>GET_LOCK</c>), so processes that start together do not race; once the table is current, starting needs no
/// <c>CREATE</c> or <c>ALTER</c> privilege.
/// </para>
/// </remarks>
public sealed class MySqlOutboxStore : RelationalOutboxStore
{
    /// <summary>Initializes a store over the MySQL or MariaDB database that <paramref name="dataSource"/> connects to.</summary>
    /// <param name="dataSource">Where the store's own connections come from; its connection string must name a database. The store does not dispose it.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">The table name is invalid; <see cref="ArgumentException.ParamName"/> names the option.</exception>
    public MySqlOutboxStore(MySqlDataSource dataSource, MySqlOutboxStoreOptions? options = null)
        : base(
            dataSource,
            new MySqlDialect(options ?? new MySqlOutboxStoreOptions(), dataSource is null ? null : new MySqlConnectionStringBuilder(dataSource.ConnectionString).Database),
            (options ?? new MySqlOutboxStoreOptions()).CreateTableIfMissing)
    {
    }

    /// <summary>Gets the SQL that creates the outbox table (latest layout) and its indexes, for teams that manage their schema themselves.</summary>
    /// <param name="options">The settings whose table name to use; <see langword="null"/> for the defaults.</param>
    /// <returns>The DDL script, for the connection's current database.</returns>
    /// <exception cref="ArgumentException">The table name is invalid.</exception>
    public static string GetCreateScript(MySqlOutboxStoreOptions? options = null) => GetMigrationScript(options, 0);

    /// <summary>
    /// Gets the SQL that migrates the outbox table from layout <paramref name="fromVersion"/> to the latest (from 0: creates it), with the
    /// statements that record the version, for teams that run their own migrations.
    /// </summary>
    /// <param name="options">The settings whose table name to use; <see langword="null"/> for the defaults.</param>
    /// <param name="fromVersion">The table's current layout version; 0 for none.</param>
    /// <returns>The script; empty when <paramref name="fromVersion"/> is the latest.</returns>
    /// <exception cref="ArgumentException">The table name is invalid.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fromVersion"/> is negative or newer than the latest version.</exception>
    public static string GetMigrationScript(MySqlOutboxStoreOptions? options, int fromVersion) =>
        MySqlDialect.Script(options ?? new MySqlOutboxStoreOptions(), fromVersion);
}
