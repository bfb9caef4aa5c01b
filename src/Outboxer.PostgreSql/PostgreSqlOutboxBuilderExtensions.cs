using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Outboxer.PostgreSql;

namespace Outboxer;

/// <summary>Chooses PostgreSQL as the store of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class PostgreSqlOutboxBuilderExtensions
{
    /// <summary>
    /// Stores the outbox's messages in PostgreSQL through the <see cref="NpgsqlDataSource"/> registered in the container (for example
    /// with Npgsql's <c>AddNpgsqlDataSource</c>), the one your application writes its data with.
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Changes to the store's settings (schema, table name, table creation).</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder UsePostgreSql(this IOutboxBuilder builder, Action<PostgreSqlOutboxStoreOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.UseStore(sp => new PostgreSqlOutboxStore(sp.GetRequiredService<NpgsqlDataSource>(), Configure(configure)));
    }

    /// <summary>
    /// Stores the outbox's messages in the PostgreSQL database that <paramref name="connectionString"/> names, through a data source of
    /// the outbox's own that the container disposes.
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="connectionString">An Npgsql connection string.</param>
    /// <param name="configure">Changes to the store's settings (schema, table name, table creation).</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="connectionString"/> is empty.</exception>
    public static IOutboxBuilder UsePostgreSql(this IOutboxBuilder builder, string connectionString, Action<PostgreSqlOutboxStoreOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        var key = $"Outboxer:{builder.Name}";
        builder.Services.AddKeyedSingleton(key, (_, _) => NpgsqlDataSource.Create(connectionString));
        return builder.UseStore(sp => new PostgreSqlOutboxStore(sp.GetRequiredKeyedService<NpgsqlDataSource>(key), Configure(configure)));
    }

    private static PostgreSqlOutboxStoreOptions Configure(Action<PostgreSqlOutboxStoreOptions>? configure)
    {
        var options = new PostgreSqlOutboxStoreOptions();
        configure?.Invoke(options);
        return options;
    }
}
