using System.Data.Common;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;

namespace Outboxer.Sqlite;

/// <summary>
/// An outbox store in a SQLite database file (Microsoft.Data.Sqlite): the embedded default, for apps whose data lives in SQLite and
/// for running without any server. Claims are single <c>UPDATE ... RETURNING</c> statements, which SQLite runs one writer at a time,
/// so several dispatchers never claim the same row.
/// </summary>
/// <remarks>
/// Times are stored as UTC ticks (<see cref="DateTimeOffset.UtcTicks"/>) in <c>INTEGER</c> columns. Use a database file:
/// each connection to <c>:memory:</c> is a separate database. The store switches the file to WAL journaling when it creates the table.
/// The table's layout versions are recorded in a table beside it, <c>&lt;table&gt;_versions</c>.
/// </remarks>
public sealed class SqliteOutboxStore : RelationalOutboxStore
{
    /// <summary>Initializes a store over the SQLite database that <paramref name="connectionString"/> names.</summary>
    /// <param name="connectionString">A Microsoft.Data.Sqlite connection string, for example <c>Data Source=app.db</c>.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults.</param>
    /// <exception cref="ArgumentException">The connection string is empty, or the table name is invalid.</exception>
    public SqliteOutboxStore(string connectionString, SqliteOutboxStoreOptions? options = null)
        : base(CreateDataSource(connectionString), new SqliteDialect(options ?? new SqliteOutboxStoreOptions()), (options ?? new SqliteOutboxStoreOptions()).CreateTableIfMissing)
    {
    }

    /// <summary>Gets the SQL that creates the outbox table (latest layout) and its indexes, for teams that manage their schema themselves.</summary>
    /// <param name="options">The settings whose table name to use; <see langword="null"/> for the defaults.</param>
    /// <returns>The DDL script; every statement is safe to run again.</returns>
    /// <exception cref="ArgumentException">The table name is invalid.</exception>
    public static string GetCreateScript(SqliteOutboxStoreOptions? options = null) => GetMigrationScript(options, 0);

    /// <summary>
    /// Gets the SQL that migrates the outbox table from layout <paramref name="fromVersion"/> to the latest (from 0: creates it), with the
    /// statements that record the version, for teams that run their own migrations.
    /// </summary>
    /// <param name="options">The settings whose table name to use; <see langword="null"/> for the defaults.</param>
    /// <param name="fromVersion">The table's current layout version; 0 for none.</param>
    /// <returns>The script; empty when <paramref name="fromVersion"/> is the latest.</returns>
    /// <exception cref="ArgumentException">The table name is invalid.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fromVersion"/> is negative or newer than the latest version.</exception>
    public static string GetMigrationScript(SqliteOutboxStoreOptions? options, int fromVersion) =>
        SqliteDialect.Script(options ?? new SqliteOutboxStoreOptions(), fromVersion);

    private static DbDataSource CreateDataSource(string connectionString)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        return SqliteFactory.Instance.CreateDataSource(connectionString);
    }
}
