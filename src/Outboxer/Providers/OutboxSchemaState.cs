namespace Outboxer.Providers;

/// <summary>What <see cref="OutboxSqlDialect.ReadSchemaAsync"/> found: the table's layout version and whether it needs a repair.</summary>
/// <param name="Version">The layout version; 0 when the table does not exist.</param>
/// <param name="NeedsRepair">Whether something the current layout has besides its migrations is missing (see <see cref="OutboxSqlDialect.RepairAsync"/>).</param>
public readonly record struct OutboxSchemaState(int Version, bool NeedsRepair);
