using Npgsql;
using Outboxer.Providers;

namespace Outboxer.PostgreSql;

/// <summary>
/// An outbox store in a PostgreSQL table (Npgsql). Claims are single <c>UPDATE</c> statements over rows selected with
/// <c>FOR UPDATE SKIP LOCKED</c>, so any number of dispatchers claim disjoint batches without waiting on each other.
/// </summary>
/// <remarks>
/// <para>
/// Options and headers are stored as <c>jsonb</c>, times as <c>timestamptz</c> (microsecond precision), the payload as <c>bytea</c>.
/// The store does not own <see cref="NpgsqlDataSource"/>: dispose it yourself when the application stops.
/// </para>
/// <para>
/// The table's layout version is kept in its comment (<c>COMMENT ON TABLE</c>), which a catalog read finds without any privilege on the
/// table. With <see cref="PostgreSqlOutboxStoreOptions.CreateTableIfMissing"/>, the first operation creates or migrates the table only
/// when it is missing or older, under a transaction-scoped advisory lock, so processes that start together do not race; once the table is
/// current, starting needs no <c>CREATE</c> privilege and takes no lock on the table.
/// </para>
/// </remarks>
public sealed class PostgreSqlOutboxStore : RelationalOutboxStore, IOutboxWakeUpSource
{
    private readonly PostgreSqlDialect _dialect;

    /// <summary>Initializes a store over the PostgreSQL database that <paramref name="dataSource"/> connects to.</summary>
    /// <param name="dataSource">Where the store's own connections come from; the store does not dispose it.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">The schema or table name is invalid; <see cref="ArgumentException.ParamName"/> names the option.</exception>
    public PostgreSqlOutboxStore(NpgsqlDataSource dataSource, PostgreSqlOutboxStoreOptions? options = null)
        : this(dataSource, new PostgreSqlDialect(options ?? new PostgreSqlOutboxStoreOptions()), (options ?? new PostgreSqlOutboxStoreOptions()).CreateTableIfMissing)
    {
    }

    private PostgreSqlOutboxStore(NpgsqlDataSource dataSource, PostgreSqlDialect dialect, bool migrate)
        : base(dataSource, dialect, migrate)
    {
        _dialect = dialect;
    }

    /// <summary>
    /// Gets the <c>LISTEN/NOTIFY</c> channel on which the table's insert trigger announces commits, one notification per committing
    /// transaction: <c>outboxer_</c> and a hash of the schema and table names.
    /// </summary>
    public string NotificationChannel => _dialect.Channel;

    /// <summary>Gets the SQL that creates the schema, the outbox table (latest layout) and its indexes, for teams that manage their schema themselves.</summary>
    /// <param name="options">The settings whose schema and table names to use; <see langword="null"/> for the defaults.</param>
    /// <returns>The DDL script; every statement is safe to run again.</returns>
    /// <exception cref="ArgumentException">The schema or table name is invalid.</exception>
    public static string GetCreateScript(PostgreSqlOutboxStoreOptions? options = null) => GetMigrationScript(options, 0);

    /// <summary>
    /// Gets the SQL that migrates the outbox table from layout <paramref name="fromVersion"/> to the latest (from 0: creates it), with the
    /// statements that record the version, for teams that run their own migrations.
    /// </summary>
    /// <param name="options">The settings whose schema and table names to use; <see langword="null"/> for the defaults.</param>
    /// <param name="fromVersion">The table's current layout version (see <see cref="RelationalOutboxStore.GetSchemaStatusAsync"/>); 0 for none.</param>
    /// <returns>The script; empty when <paramref name="fromVersion"/> is the latest.</returns>
    /// <exception cref="ArgumentException">The schema or table name is invalid.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fromVersion"/> is negative or newer than the latest version.</exception>
    public static string GetMigrationScript(PostgreSqlOutboxStoreOptions? options, int fromVersion) =>
        PostgreSqlDialect.Script(options ?? new PostgreSqlOutboxStoreOptions(), fromVersion);

    /// <summary>
    /// Listens on <see cref="NotificationChannel"/> with a connection of its own and calls <paramref name="wakeUp"/> for every commit that
    /// inserted into the table, from any process (the trigger fires only when the inserting transaction commits).
    /// </summary>
    /// <remarks>
    /// While a listener of this store instance is connected, messages enqueued through this same instance do not notify: the
    /// <see cref="Outbox"/> that enqueued them wakes its own dispatcher in memory, and a notifying commit would hold PostgreSQL's global
    /// notification lock through its disk flush, serializing concurrent enqueuing commits. Processes that only enqueue still notify.
    /// </remarks>
    /// <param name="wakeUp">Called on every notification, and once when listening starts.</param>
    /// <param name="cancellationToken">Stops listening.</param>
    /// <returns>A task that ends when listening stops.</returns>
    /// <exception cref="OutboxException">The connection failed.</exception>
    public async Task ListenAsync(Action wakeUp, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(wakeUp);
        if (!_dialect.NotifyOnCommit)
        {
            // No trigger sends notifications: polling alone finds other processes' messages.
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
            return;
        }

        try
        {
            var connection = await ((NpgsqlDataSource)DataSource).OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                connection.Notification += (_, _) => wakeUp();
                var listen = PostgreSqlDialect.Command(connection, null, $"LISTEN \"{NotificationChannel}\"");
                await using (listen.ConfigureAwait(false))
                {
                    await listen.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                wakeUp();
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                var watcher = new CommitWatcher((NpgsqlDataSource)DataSource, _dialect.CommitWatchKey, wakeUp);
                _dialect.WatchCommit = watcher.Watch;
                _dialect.Listening(1);
                var watching = watcher.RunAsync(stop.Token);
                try
                {
                    while (!watching.IsCompleted)
                    {
                        await connection.WaitAsync(stop.Token).ConfigureAwait(false);
                    }

                    await watching.ConfigureAwait(false);
                }
                finally
                {
                    _dialect.Listening(-1);
                    _dialect.WatchCommit = null;
                    await stop.CancelAsync().ConfigureAwait(false);
                    try
                    {
                        await watching.ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested)
                    {
                    }
                }
            }
        }
        catch (NpgsqlException ex)
        {
            throw new OutboxException($"Listening on {NotificationChannel} for commits to {TableDisplayName} failed: {ex.Message}", ex.IsTransient, ex);
        }
    }
}
