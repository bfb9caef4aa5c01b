using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Outboxer.Sqlite;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.EntityFrameworkCore.Tests;

/// <summary>One test's database: the entity table created by EF, and an outbox store of the same database that creates its own table on first use.</summary>
public abstract class TestDatabase : IAsyncDisposable
{
    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Gets a value indicating whether the outbox can be dispatched from another connection while a transaction writes (not SQLite's single writer).</summary>
    public abstract bool DispatchesBesideAnOpenTransaction { get; }

    public abstract IOutboxStore CreateStore();

    public abstract DbContextOptionsBuilder<ShopContext> UseProvider(DbContextOptionsBuilder<ShopContext> builder);

    public async Task InitializeAsync()
    {
        await PrepareAsync();
        await using var context = new ShopContext(UseProvider(new DbContextOptionsBuilder<ShopContext>()).Options);
        await context.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(Ct);
    }

    public async Task<int> CountOrdersAsync()
    {
        await using var context = new ShopContext(UseProvider(new DbContextOptionsBuilder<ShopContext>()).Options);
        return await context.Orders.CountAsync(Ct);
    }

    public abstract ValueTask DisposeAsync();

    /// <summary>Drops the outbox table behind the store's back, so that the store's next insert fails in the database.</summary>
    public abstract Task DropOutboxTableAsync();

    protected abstract Task PrepareAsync();
}

/// <summary>A fresh schema on the PostgreSQL server, first on the search path of the context's connections.</summary>
public sealed class PostgreSqlTestDatabase : TestDatabase
{
    private readonly string _schema = $"outboxer_ef_{Guid.NewGuid():N}"[..28];
    private readonly NpgsqlDataSource _dataSource;

    public PostgreSqlTestDatabase() => _dataSource = NpgsqlDataSource.Create(PostgreSqlServer.SessionConnectionString(searchPath: _schema));

    public string ConnectionString => PostgreSqlServer.SessionConnectionString(searchPath: _schema);

    public override bool DispatchesBesideAnOpenTransaction => true;

    public override IOutboxStore CreateStore() => new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = _schema });

    public override DbContextOptionsBuilder<ShopContext> UseProvider(DbContextOptionsBuilder<ShopContext> builder) => builder.UseNpgsql(ConnectionString);

    public override async ValueTask DisposeAsync()
    {
        await using (var drop = _dataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{_schema}\" CASCADE"))
        {
            await drop.ExecuteNonQueryAsync();
        }

        await _dataSource.DisposeAsync();
    }

    public override async Task DropOutboxTableAsync()
    {
        await using var drop = _dataSource.CreateCommand($"DROP TABLE \"{_schema}\".outbox_messages");
        await drop.ExecuteNonQueryAsync(Ct);
    }

    protected override async Task PrepareAsync()
    {
        await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
        await using var create = new NpgsqlCommand($"CREATE SCHEMA \"{_schema}\"", connection);
        await create.ExecuteNonQueryAsync(Ct);
    }
}

/// <summary>A SQLite database in a temporary file.</summary>
public sealed class SqliteTestDatabase : TestDatabase
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"outboxer-ef-{Guid.NewGuid():N}.db");

    public string ConnectionString => $"Data Source={_path}";

    public override bool DispatchesBesideAnOpenTransaction => false;

    public override IOutboxStore CreateStore() => new SqliteOutboxStore(ConnectionString);

    public override DbContextOptionsBuilder<ShopContext> UseProvider(DbContextOptionsBuilder<ShopContext> builder) => builder.UseSqlite(ConnectionString);

    public override ValueTask DisposeAsync()
    {
        SqliteConnection.ClearAllPools();
        foreach (var file in new[] { _path, _path + "-wal", _path + "-shm", _path + "-journal" })
        {
            File.Delete(file);
        }

        return ValueTask.CompletedTask;
    }

    public override async Task DropOutboxTableAsync()
    {
        await using var connection = new SqliteConnection(ConnectionString);
        await connection.OpenAsync(Ct);
        await using var drop = connection.CreateCommand();
        drop.CommandText = "DROP TABLE outbox_messages";
        await drop.ExecuteNonQueryAsync(Ct);
    }

    protected override Task PrepareAsync() => Task.CompletedTask;
}
