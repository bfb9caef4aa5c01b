using System.Data.Common;
using MySqlConnector;
using Outboxer.MySql;
using Outboxer.Providers;
using Outboxer.Testing.Servers;

namespace Outboxer.Guarantees.Tests;

/// <summary>MySQL/MariaDB: a table per run in the tests' database.</summary>
internal sealed class MySqlGuaranteeStore : IGuaranteeStore
{
    private MySqlDataSource? _dataSource;

    public string Name => "mysql";

    public string DisplayName => "MariaDB";

    /// <summary>Gets this run's table.</summary>
    public string Table { get; private set; } = string.Empty;

    public string ProducerConnectionString => MySqlServer.ConnectionString;

    public string DispatcherConnectionString => MySqlServer.ConnectionString;

    private MySqlDataSource DataSource => _dataSource ?? throw new InvalidOperationException("Not created.");

    public async Task CreateAsync(string name, CancellationToken cancellationToken)
    {
        Table = $"guarantees_{name.Replace('-', '_').Replace('.', '_')}";
        _dataSource = MySqlServer.CreateDataSource();
        await using (await MySqlServer.OpenAsync(_dataSource))
        {
        }

        await new MySqlOutboxStore(_dataSource, new MySqlOutboxStoreOptions { TableName = Table }).MigrateAsync(cancellationToken);
    }

    public (IOutboxStore Store, IAsyncDisposable? Owned) CreateStore(string? connectionString = null)
    {
        var dataSource = new MySqlDataSource(connectionString ?? DispatcherConnectionString);
        return (new MySqlOutboxStore(dataSource, new MySqlOutboxStoreOptions { TableName = Table, CreateTableIfMissing = false }), dataSource);
    }

    public async Task<DbConnection> OpenAsync(CancellationToken cancellationToken) => await DataSource.OpenConnectionAsync(cancellationToken);

    public IReadOnlyList<string> RelayArguments(string? connectionString = null) => [connectionString ?? DispatcherConnectionString, Table];

    public Task<IReadOnlyList<string>> DescribeLostAsync(Guid[] messageIds, CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<string>>([]);

    public async Task<IReadOnlyDictionary<Guid, int>> ReadAttemptsAsync(CancellationToken cancellationToken)
    {
        var attempts = new Dictionary<Guid, int>();
        await using var connection = await DataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new MySqlCommand($"SELECT message_id, attempts FROM `{Table}`", connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            attempts[Guid.Parse(reader.GetString(0))] = reader.GetInt32(1);
        }

        return attempts;
    }

    public async ValueTask DisposeAsync()
    {
        if (_dataSource is null)
        {
            return;
        }

        for (var attempt = 0; attempt < 20; attempt++)
        {
            try
            {
                // After a crash the server may still be starting: try for a few seconds.
                await using var connection = await _dataSource.OpenConnectionAsync(CancellationToken.None);
                await using var drop = new MySqlCommand($"DROP TABLE IF EXISTS `{Table}`", connection);
                await drop.ExecuteNonQueryAsync(CancellationToken.None);
                break;
            }
#pragma warning disable CA1031 // Best effort: the scenario's result does not depend on it.
            catch (MySqlException)
#pragma warning restore CA1031
            {
                await Task.Delay(500, CancellationToken.None);
            }
        }

        await _dataSource.DisposeAsync();
    }
}
