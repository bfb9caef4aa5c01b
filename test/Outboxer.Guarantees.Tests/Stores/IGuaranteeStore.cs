using System.Data.Common;
using Outboxer.Providers;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// The database side of a guarantee scenario: where this run's outbox table lives, how the producer opens a transaction there, how a
/// dispatcher reaches it (in this process, or a samples/Outboxer.Relay process told by its arguments). One implementation per store:
/// a PostgreSQL schema, a MySQL/MariaDB table, a SQLite file.
/// </summary>
internal interface IGuaranteeStore : IAsyncDisposable
{
    /// <summary>Gets the store's name: the report's <c>store</c> field and the relay's <c>--store</c> value.</summary>
    string Name { get; }

    /// <summary>Gets the store's name for people, for log lines.</summary>
    string DisplayName { get; }

    /// <summary>Gets the connection string of the producer and of the checks (never terminated by a scenario).</summary>
    string ProducerConnectionString { get; }

    /// <summary>Gets the connection string the dispatchers use (relays and in-process ones), unless a scenario gives its own.</summary>
    string DispatcherConnectionString { get; }

    /// <summary>Creates this run's outbox table (latest layout), named after <paramref name="name"/>, the run's unique name.</summary>
    Task CreateAsync(string name, CancellationToken cancellationToken);

    /// <summary>
    /// Creates a store over this run's table with a data source of its own, over <paramref name="connectionString"/> (or
    /// <see cref="DispatcherConnectionString"/>); <c>Owned</c>, when not <see langword="null"/>, is disposed after the outbox.
    /// </summary>
    (IOutboxStore Store, IAsyncDisposable? Owned) CreateStore(string? connectionString = null);

    /// <summary>Opens a connection for the producer's transactions (not one of the dispatchers').</summary>
    Task<DbConnection> OpenAsync(CancellationToken cancellationToken);

    /// <summary>Gets the relay's arguments before the broker's: the connection string and the schema or table; the <c>--store</c> option is added by <see cref="RelayOptions"/>.</summary>
    IReadOnlyList<string> RelayArguments(string? connectionString = null);

    /// <summary>Describes where lost messages are in the table (dispatched, dead-lettered, attempts, last error), when the store can tell.</summary>
    Task<IReadOnlyList<string>> DescribeLostAsync(Guid[] messageIds, CancellationToken cancellationToken);

    /// <summary>
    /// Reads every row of this run's table: its message id and how many attempts it counts. A row written already leased by a send after
    /// commit counts 1 from the start and keeps it when its sender marks it; every claim adds 1.
    /// </summary>
    Task<IReadOnlyDictionary<Guid, int>> ReadAttemptsAsync(CancellationToken cancellationToken);
}
