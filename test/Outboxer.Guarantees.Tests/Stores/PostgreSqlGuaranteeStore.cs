using System.Data.Common;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Outboxer.Testing.Servers;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// PostgreSQL: a schema per run holding an <c>outbox_messages</c> table. The dispatchers' sessions carry an application name of their
/// own (<see cref="DispatcherApplicationName"/>), so that a scenario can find and terminate them and no other session.
/// </summary>
internal sealed class PostgreSqlGuaranteeStore : IGuaranteeStore
{
    private NpgsqlDataSource? _dataSource;

    public string Name => "postgres";

    public string DisplayName => "PostgreSQL";

    /// <summary>Gets this run's schema.</summary>
    public string Schema { get; private set; } = string.Empty;

    /// <summary>
    /// Gets the application name of the dispatchers' sessions (pg_stat_activity.application_name), unique to the run: the schema's random
    /// suffix, as PostgreSQL keeps only the first 63 bytes of the name.
    /// </summary>
    public string DispatcherApplicationName => $"outboxer-dispatcher-{Schema[^8..]}";

    public string ProducerConnectionString => PostgreSqlServer.ConnectionString;

    public string DispatcherConnectionString =>
        new NpgsqlConnectionStringBuilder(PostgreSqlServer.ConnectionString) { ApplicationName = DispatcherApplicationName }.ConnectionString;

    private NpgsqlDataSource DataSource => _dataSource ?? throw new InvalidOperationException("Not created.");

    public async Task CreateAsync(string name, CancellationToken cancellationToken)
    {
        Schema = $"guarantees_{name.Replace('-', '_').Replace('.', '_')}";
        _dataSource = NpgsqlDataSource.Create(PostgreSqlServer.ConnectionString);
        await using (var connection = await PostgreSqlServer.OpenAsync(_dataSource))
        await using (var create = new NpgsqlCommand($"CREATE SCHEMA \"{Schema}\"", connection))
        {
            await create.ExecuteNonQueryAsync(cancellationToken);
        }

        await new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = Schema }).MigrateAsync(cancellationToken);
    }

    public (IOutboxStore Store, IAsyncDisposable? Owned) CreateStore(string? connectionString = null)
    {
        var dataSource = NpgsqlDataSource.Create(connectionString ?? DispatcherConnectionString);
        return (new PostgreSqlOutboxStore(dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = Schema, CreateTableIfMissing = false }), dataSource);
    }

    public async Task<DbConnection> OpenAsync(CancellationToken cancellationToken) => await DataSource.OpenConnectionAsync(cancellationToken);

    public IReadOnlyList<string> RelayArguments(string? connectionString = null) => [connectionString ?? DispatcherConnectionString, Schema];

    /// <summary>Terminates every session of this run's dispatchers (by their application name) and returns how many there were.</summary>
    public async Task<int> TerminateDispatcherSessionsAsync(CancellationToken cancellationToken)
    {
        await using var command = DataSource.CreateCommand(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()");
        command.Parameters.AddWithValue(DispatcherApplicationName);
        return (int)(long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public async Task<IReadOnlyList<string>> DescribeLostAsync(Guid[] messageIds, CancellationToken cancellationToken)
    {
        var lines = new List<string>();
        await using var command = DataSource.CreateCommand(
            $"SELECT dispatched, dead_lettered_at IS NOT NULL, count(*), min(attempts), max(attempts), min(last_error) FROM \"{Schema}\".outbox_messages WHERE message_id = ANY($1) GROUP BY 1, 2");
        command.Parameters.AddWithValue(messageIds);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            lines.Add($"lost rows: dispatched={reader.GetBoolean(0)} dead_lettered={reader.GetBoolean(1)} count={reader.GetInt64(2)} attempts {reader.GetInt32(3)}..{reader.GetInt32(4)} last_error: {(reader.IsDBNull(5) ? "none" : reader.GetString(5))}");
        }

        return lines;
    }

    public async Task<IReadOnlyDictionary<Guid, int>> ReadAttemptsAsync(CancellationToken cancellationToken)
    {
        var attempts = new Dictionary<Guid, int>();
        await using var command = DataSource.CreateCommand($"SELECT message_id, attempts FROM \"{Schema}\".outbox_messages");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            attempts[reader.GetGuid(0)] = reader.GetInt32(1);
        }

        return attempts;
    }

    public async ValueTask DisposeAsync()
    {
        if (_dataSource is null)
        {
            return;
        }

        try
        {
            await using var drop = _dataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{Schema}\" CASCADE");
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }
#pragma warning disable CA1031 // Best effort: the scenario's result does not depend on it.
        catch (NpgsqlException)
#pragma warning restore CA1031
        {
        }

        await _dataSource.DisposeAsync();
    }
}
