using Npgsql;
using Outboxer.Testing.Servers;

namespace Outboxer.PostgreSql.Tests;

/// <summary>A schema name of a test's own on the test PostgreSQL, and a data source to it; disposing drops the schema with everything in it.</summary>
internal sealed class TemporarySchema(string prefix) : IAsyncDisposable
{
    /// <summary>Gets the schema's name: the prefix and a random suffix, 30 characters at most.</summary>
    public string Name { get; } = $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 33, 30)];

    /// <summary>Gets a data source of the test PostgreSQL.</summary>
    public NpgsqlDataSource DataSource { get; } = PostgreSqlServer.CreateDataSource();

    public async ValueTask DisposeAsync()
    {
        await using (var drop = DataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{Name}\" CASCADE"))
        {
            await drop.ExecuteNonQueryAsync();
        }

        await DataSource.DisposeAsync();
    }
}
