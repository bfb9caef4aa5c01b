using System.Data.Common;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;
using Outboxer.Sqlite;

namespace Outboxer.Guarantees.Tests;

/// <summary>SQLite: a database file per run in the temporary folder, shared by the producer and every dispatcher (relays included).</summary>
internal sealed class SqliteGuaranteeStore : IGuaranteeStore
{
    private const string Table = "outbox_messages";

    private string _path = string.Empty;

    public string Name => "sqlite";

    public string DisplayName => "SQLite";

    public string ProducerConnectionString => DispatcherConnectionString;

    public string DispatcherConnectionString => new SqliteConnectionStringBuilder { DataSource = _path }.ToString();

    public async Task CreateAsync(string name, CancellationToken cancellationToken)
    {
        _path = Path.Combine(Path.GetTempPath(), $"outboxer-guarantees-{name}.db");
        await new SqliteOutboxStore(DispatcherConnectionString, new SqliteOutboxStoreOptions { TableName = Table }).MigrateAsync(cancellationToken);
    }

    public (IOutboxStore Store, IAsyncDisposable? Owned) CreateStore(string? connectionString = null) =>
        (new SqliteOutboxStore(connectionString ?? DispatcherConnectionString, new SqliteOutboxStoreOptions { TableName = Table, CreateTableIfMissing = false }), null);

    public async Task<DbConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(DispatcherConnectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    public IReadOnlyList<string> RelayArguments(string? connectionString = null) => [connectionString ?? DispatcherConnectionString, Table];

    public Task<IReadOnlyList<string>> DescribeLostAsync(Guid[] messageIds, CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<string>>([]);

    public async Task<IReadOnlyDictionary<Guid, int>> ReadAttemptsAsync(CancellationToken cancellationToken)
    {
        var attempts = new Dictionary<Guid, int>();
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT message_id, attempts FROM {Table}";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            attempts[Guid.Parse(reader.GetString(0))] = reader.GetInt32(1);
        }

        return attempts;
    }

    public ValueTask DisposeAsync()
    {
        if (_path.Length > 0)
        {
            SqliteConnection.ClearAllPools();
            foreach (var file in new[] { _path, _path + "-wal", _path + "-shm" })
            {
                File.Delete(file);
            }
        }

        return ValueTask.CompletedTask;
    }
}
