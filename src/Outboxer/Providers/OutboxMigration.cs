namespace Outboxer.Providers;

/// <summary>One step of an outbox table's layout: the SQL that brings the table from the previous version to <see cref="Version"/>.</summary>
/// <param name="Version">The version the step produces; the first step (version 1) creates the table.</param>
/// <param name="Description">What the step changes, recorded with the version.</param>
/// <param name="Sql">The statements of the step.</param>
/// <param name="AppliedCheckSql">
/// For databases whose DDL is not transactional: a query that returns a positive number when the step's change is already there
/// (a step interrupted after its DDL and before its version was recorded), so that the step is recorded without running again; or
/// <see langword="null"/>.
/// </param>
public sealed record OutboxMigration(int Version, string Description, string Sql, string? AppliedCheckSql = null);
