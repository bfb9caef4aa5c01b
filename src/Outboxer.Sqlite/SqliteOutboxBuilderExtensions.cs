using Outboxer.Sqlite;

namespace Outboxer;

/// <summary>Chooses SQLite as the store of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class SqliteOutboxBuilderExtensions
{
    /// <summary>Stores the outbox's messages in the SQLite database that <paramref name="connectionString"/> names.</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="connectionString">A Microsoft.Data.Sqlite connection string, for example <c>Data Source=app.db</c>.</param>
    /// <param name="configure">Changes to the store's settings (table name, table creation).</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="connectionString"/> is empty.</exception>
    public static IOutboxBuilder UseSqlite(this IOutboxBuilder builder, string connectionString, Action<SqliteOutboxStoreOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        return builder.UseStore(_ =>
        {
            var options = new SqliteOutboxStoreOptions();
            configure?.Invoke(options);
            return new SqliteOutboxStore(connectionString, options);
        });
    }
}
