namespace Outboxer.Providers;

/// <summary>
/// The layout of an outbox table: which version it has, and the migrations that bring it to the version this library needs. Every
/// layout a released version created keeps working: a table is upgraded in place, ordered step after step, with its rows.
/// </summary>
/// <remarks>
/// A store checks the version before its first operation. With its <c>CreateTableIfMissing</c> option on (the default) it creates or
/// migrates the table itself; with it off it only checks, and refuses an older table with an <see cref="OutboxException"/> that names
/// the table, its version and the command that migrates it. A table of a newer version than the library knows is always refused,
/// never written.
/// </remarks>
public interface IOutboxSchema
{
    /// <summary>Gets the version of the layout this library writes and reads (the newest migration's version).</summary>
    int LatestVersion { get; }

    /// <summary>Reads the version of the table's layout without changing anything.</summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The table, its version (0 when it does not exist) and the latest version.</returns>
    /// <exception cref="OutboxException">The database failed.</exception>
    Task<OutboxSchemaStatus> GetSchemaStatusAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Creates the table when it is missing, or migrates it to <see cref="LatestVersion"/>, applying each missing step once, under a
    /// lock that other processes migrating the same table wait for. Does nothing when the table is current.
    /// </summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The status after migrating.</returns>
    /// <exception cref="OutboxException">The table has a newer version than this library knows, or the database failed.</exception>
    Task<OutboxSchemaStatus> MigrateAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Gets the SQL that migrates the table from <paramref name="fromVersion"/> to <see cref="LatestVersion"/> (from 0: creates it),
    /// including the statements that record each version, for teams that run their own migrations.
    /// </summary>
    /// <param name="fromVersion">The table's current version; 0 for a database without the table.</param>
    /// <returns>The script; empty when <paramref name="fromVersion"/> is the latest.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fromVersion"/> is negative or newer than <see cref="LatestVersion"/>.</exception>
    string GetMigrationScript(int fromVersion = 0);
}
