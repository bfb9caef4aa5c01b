using Microsoft.Extensions.DependencyInjection;
using MySqlConnector;
using Outboxer.MySql;

namespace Outboxer;

/// <summary>Chooses MySQL or MariaDB as the store of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class MySqlOutboxBuilderExtensions
{
    /// <summary>Stores the outbox's messages through the <see cref="MySqlDataSource"/> registered in the container, the one the application writes with.</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Changes to the store's settings (table name, table creation).</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseMySql(this IOutboxBuilder builder, Action<MySqlOutboxStoreOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.UseStore(sp => new MySqlOutboxStore(sp.GetRequiredService<MySqlDataSource>(), Configure(configure)));
    }

    /// <summary>Stores the outbox's messages in the database that <paramref name="connectionString"/> names, through a data source of the outbox's own that the container disposes.</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="connectionString">A MySqlConnector connection string that names a database.</param>
    /// <param name="configure">Changes to the store's settings (table name, table creation).</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="connectionString"/> is empty.</exception>
    public static IOutboxBuilder UseMySql(this IOutboxBuilder builder, string connectionString, Action<MySqlOutboxStoreOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        var key = $"Outboxer:{builder.Name}";
        builder.Services.AddKeyedSingleton(key, (_, _) => new MySqlDataSource(connectionString));
        return builder.UseStore(sp => new MySqlOutboxStore(sp.GetRequiredKeyedService<MySqlDataSource>(key), Configure(configure)));
    }

    private static MySqlOutboxStoreOptions Configure(Action<MySqlOutboxStoreOptions>? configure)
    {
        var options = new MySqlOutboxStoreOptions();
        configure?.Invoke(options);
        return options;
    }
}
