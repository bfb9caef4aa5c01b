namespace Outboxer.Providers;

/// <summary>The version of an outbox table's layout, against the version this library needs.</summary>
/// <param name="Table">The table's name as the database shows it (quoted, qualified where the database has schemas).</param>
/// <param name="Version">The table's layout version; 0 when the table does not exist.</param>
/// <param name="LatestVersion">The version this library writes and reads.</param>
public sealed record OutboxSchemaStatus(string Table, int Version, int LatestVersion)
{
    /// <summary>Gets a value indicating whether the table exists.</summary>
    public bool Exists => Version > 0;

    /// <summary>Gets a value indicating whether the table has the latest layout, so that the store can use it.</summary>
    public bool IsCurrent => Version == LatestVersion;

    /// <summary>Gets a value indicating whether the table was migrated by a newer library than this one, which therefore must not write to it.</summary>
    public bool IsNewer => Version > LatestVersion;
}
