using System.Data;
using System.Data.Common;
using System.Transactions;

namespace Outboxer.Providers;

/// <summary>
/// The base of the ADO.NET stores (SQLite, PostgreSQL, MySQL): connection and transaction handling, validation,
/// error wrapping and row reading. A provider supplies its SQL through the <c>Create...Command</c> methods.
/// </summary>
/// <remarks>
/// Every operation takes a pooled connection from the <see cref="DbDataSource"/> for its own duration only; no connection
/// or transaction stays open between operations, and none stays open while the dispatcher waits on the broker.
/// The claim command must return the columns <c>id, message_id, payload, options, headers, created_at, attempts, ordering_key</c> in that
/// order. The table needs the columns every store has: <c>id, message_id, payload, options, headers, created_at, dispatched (boolean or
/// 0/1), dispatched_at, attempts, locked_until, last_error, ordering_key, dead_lettered_at</c>.
/// </remarks>
public abstract class DbOutboxStore : IOutboxStore
{
    private readonly Lock _createLock = new();
    private readonly Lazy<Type> _connectionType;
    private Task? _created;

    /// <summary>Initializes the store.</summary>
    /// <param name="dataSource">Where the store's own connections come from.</param>
    /// <param name="createTableIfMissing">Whether the first operation creates the table when it is missing.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is <see langword="null"/>.</exception>
    protected DbOutboxStore(DbDataSource dataSource, bool createTableIfMissing)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        DataSource = dataSource;
        _connectionType = new Lazy<Type>(() =>
        {
            using var probe = dataSource.CreateConnection();
            return probe.GetType();
        });
        if (!createTableIfMissing)
        {
            _created = Task.CompletedTask;
        }
    }

    /// <summary>Gets the data source the store opens its own connections from.</summary>
    protected DbDataSource DataSource { get; }

    /// <summary>
    /// Gets the table's quoted (and, where the database has them, qualified) name, for SQL and error messages (for example
    /// <c>"public"."outbox_messages"</c>). The statements the base class writes itself (dead letters) use it.
    /// </summary>
    protected abstract string TableDisplayName { get; }

    /// <inheritdoc />
    public async Task EnsureCreatedAsync(CancellationToken cancellationToken = default)
    {
        await WrapAsync("create the outbox table", async () =>
        {
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                await CreateTableAsync(connection, null, cancellationToken).ConfigureAwait(false);
            }

            return 0;
        }).ConfigureAwait(false);
        _created = Task.CompletedTask;
    }

    /// <inheritdoc />
    public async ValueTask<long> AddAsync(DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ArgumentNullException.ThrowIfNull(message);
        var connection = CheckTransaction(transaction);
        var (options, headers) = Serialize(message);
        await EnsureCreatedForCallerAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
        return await InsertAsync(connection, transaction, message, options, headers, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask<long> AddAsync(DbConnection connection, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(message);
        if (!SupportsAmbientTransactions)
        {
            throw new NotSupportedException($"{GetType().Name} cannot join an ambient transaction (TransactionScope); enqueue within a DbTransaction instead.");
        }

        var expected = _connectionType.Value;
        if (connection.GetType() != expected)
        {
            throw new ArgumentException($"The connection is a {connection.GetType().FullName}, which this store ({GetType().Name}) cannot write to; it writes through {expected.FullName}.", nameof(connection));
        }

        if (connection.State != ConnectionState.Open)
        {
            throw new ArgumentException($"The connection is {connection.State}; open it inside the transaction scope first.", nameof(connection));
        }

        var (options, headers) = Serialize(message);
        using (new TransactionScope(TransactionScopeOption.Suppress, TransactionScopeAsyncFlowOption.Enabled))
        {
            // The store's own connection must not enlist in the caller's ambient transaction.
            await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);
        }

        return await InsertAsync(connection, null, message, options, headers, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask<int> AddRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ArgumentNullException.ThrowIfNull(messages);
        var connection = CheckTransaction(transaction);
        var rows = new SerializedMessage[messages.Count];
        for (var i = 0; i < rows.Length; i++)
        {
            var message = messages[i] ?? throw new ArgumentException($"messages[{i}] is null.", nameof(messages));
            var (options, headers) = Serialize(message);
            rows[i] = new SerializedMessage(message, options, headers);
        }

        if (rows.Length == 0)
        {
            return 0;
        }

        await EnsureCreatedForCallerAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
        return await WrapAsync("insert the messages", () => InsertRangeAsync(connection, transaction, rows, cancellationToken)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        var (options, headers) = Serialize(message);
        await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);

        var connection = await OpenAsync("open a connection", cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                try
                {
                    if (work is not null)
                    {
                        await work(transaction, cancellationToken).ConfigureAwait(false);
                    }

                    var id = await InsertAsync(connection, transaction, message, options, headers, cancellationToken).ConfigureAwait(false);
                    await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                    return id;
                }
                catch
                {
                    message.Id = 0;
                    try
                    {
                        await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                    }
#pragma warning disable CA1031 // The caller's original exception matters more than a failed rollback; closing the connection discards the transaction anyway.
                    catch (Exception)
#pragma warning restore CA1031
                    {
                    }

                    throw;
                }
            }
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<OutboxMessage>> ClaimAsync(int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return WrapAsync<IReadOnlyList<OutboxMessage>>("claim pending messages", async () =>
        {
            await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var messages = new List<OutboxMessage>(Math.Min(batchSize, 1024));
                await ClaimCoreAsync(connection, messages, batchSize, now, leaseUntil, cancellationToken).ConfigureAwait(false);

                // RETURNING does not promise an order; the dispatcher publishes oldest first.
                messages.Sort(static (a, b) => a.Id.CompareTo(b.Id));
                return messages;
            }
        });
    }

    /// <summary>
    /// Claims pending messages on <paramref name="connection"/> and adds them to <paramref name="claimed"/>, in any order. The default runs
    /// <see cref="CreateClaimCommand"/> and reads its rows with <see cref="ReadClaimed"/>; a provider whose database cannot claim in one
    /// statement (MySQL has no <c>UPDATE ... RETURNING</c>) overrides it. Database errors are wrapped by the caller.
    /// </summary>
    /// <param name="connection">An open connection of the store's own.</param>
    /// <param name="claimed">The list to add the claimed messages to.</param>
    /// <param name="batchSize">The most rows to claim.</param>
    /// <param name="now">The current time.</param>
    /// <param name="leaseUntil">Until when the rows stay reserved.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the rows are claimed.</returns>
    protected virtual async Task ClaimCoreAsync(DbConnection connection, ICollection<OutboxMessage> claimed, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claimed);
        var command = CreateClaimCommand(connection, batchSize, now, leaseUntil);
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    claimed.Add(ReadClaimed(reader));
                }
            }
        }
    }

    /// <inheritdoc />
    public Task MarkDispatchedAsync(IReadOnlyList<long> ids, DateTimeOffset dispatchedAt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count == 0)
        {
            return Task.CompletedTask;
        }

        return WrapAsync("mark messages dispatched", async () =>
        {
            await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                await MarkDispatchedCoreAsync(connection, ids, dispatchedAt, cancellationToken).ConfigureAwait(false);
                return 0;
            }
        });
    }

    /// <summary>
    /// Marks the rows dispatched on <paramref name="connection"/>. The default runs <see cref="CreateMarkDispatchedCommand"/>; a provider
    /// overrides it to change how the statement commits (PostgreSQL does not wait for the disk flush: a lost mark only republishes).
    /// </summary>
    /// <param name="connection">An open connection of the store's own.</param>
    /// <param name="ids">The row ids.</param>
    /// <param name="dispatchedAt">The time to record.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the rows are updated.</returns>
    protected virtual async Task MarkDispatchedCoreAsync(DbConnection connection, IReadOnlyList<long> ids, DateTimeOffset dispatchedAt, CancellationToken cancellationToken)
    {
        var command = CreateMarkDispatchedCommand(connection, ids, dispatchedAt);
        await using (command.ConfigureAwait(false))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public Task ReleaseAsync(long id, DateTimeOffset retryAt, string error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(error);
        return ExecuteAsync("record a failed attempt", c => CreateReleaseCommand(c, id, retryAt, Truncate(error, 4000)), cancellationToken);
    }

    /// <inheritdoc />
    public Task DeadLetterAsync(long id, DateTimeOffset deadLetteredAt, string error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(error);
        return ExecuteAsync(
            "move a message to the dead letters",
            c => Command(
                c,
                $"UPDATE {TableDisplayName} SET dead_lettered_at = @at, locked_until = NULL, last_error = @error WHERE id = @id AND dispatched = FALSE",
                ("@at", ToDbTimestamp(deadLetteredAt)),
                ("@error", Truncate(error, 4000)),
                ("@id", id)),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<OutboxMessage>> GetDeadLettersAsync(int limit, long afterId = 0, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        return WrapAsync<IReadOnlyList<OutboxMessage>>("read the dead letters", async () =>
        {
            await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var command = Command(
                    connection,
                    $"""
                    SELECT id, message_id, payload, options, headers, created_at, attempts, ordering_key, last_error, dead_lettered_at
                    FROM {TableDisplayName} WHERE dead_lettered_at IS NOT NULL AND id > @after ORDER BY id LIMIT @limit
                    """,
                    ("@after", afterId),
                    ("@limit", limit));
                await using (command.ConfigureAwait(false))
                {
                    var messages = new List<OutboxMessage>(Math.Min(limit, 1024));
                    var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                    await using (reader.ConfigureAwait(false))
                    {
                        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                        {
                            var message = ReadClaimed(reader);
                            message.LastError = reader.IsDBNull(8) ? null : reader.GetString(8);
                            message.DeadLetteredAt = ReadTimestamp(reader, 9);
                            messages.Add(message);
                        }
                    }

                    return messages;
                }
            }
        });
    }

    /// <inheritdoc />
    public Task<int> RequeueDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default) =>
        ForDeadLettersAsync("requeue dead letters", $"UPDATE {TableDisplayName} SET dead_lettered_at = NULL, attempts = 0, locked_until = NULL", ids, cancellationToken);

    /// <inheritdoc />
    public Task<int> PurgeDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default) =>
        ForDeadLettersAsync("purge dead letters", $"DELETE FROM {TableDisplayName}", ids, cancellationToken);

    /// <inheritdoc />
    public Task<OutboxStatistics> GetStatisticsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) =>
        WrapAsync("read the outbox statistics", async () =>
        {
            await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                const string Pending = "dispatched = FALSE AND dead_lettered_at IS NULL";
                var command = Command(
                    connection,
                    $"""
                    SELECT
                        (SELECT COUNT(*) FROM {TableDisplayName} WHERE {Pending}),
                        (SELECT COUNT(*) FROM {TableDisplayName} WHERE {Pending} AND locked_until > @now),
                        (SELECT COUNT(*) FROM {TableDisplayName} WHERE dead_lettered_at IS NOT NULL),
                        (SELECT MIN(created_at) FROM {TableDisplayName} WHERE {Pending})
                    """,
                    ("@now", ToDbTimestamp(now)));
                await using (command.ConfigureAwait(false))
                {
                    var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                    await using (reader.ConfigureAwait(false))
                    {
                        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                        return new OutboxStatistics(
                            Convert.ToInt64(reader.GetValue(0), System.Globalization.CultureInfo.InvariantCulture),
                            Convert.ToInt64(reader.GetValue(1), System.Globalization.CultureInfo.InvariantCulture),
                            Convert.ToInt64(reader.GetValue(2), System.Globalization.CultureInfo.InvariantCulture),
                            reader.IsDBNull(3) ? null : ReadTimestamp(reader, 3),
                            now);
                    }
                }
            }
        });

    /// <summary>
    /// Counts the pending and dead-lettered messages per destination (see <see cref="OutboxDestinationStatistics.Destination"/>), for
    /// operators and tools. Reads only undispatched rows.
    /// </summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>One entry per destination, in destination order.</returns>
    /// <exception cref="OutboxException">The database failed.</exception>
    public Task<IReadOnlyList<OutboxDestinationStatistics>> GetDestinationStatisticsAsync(CancellationToken cancellationToken = default) =>
        WrapAsync<IReadOnlyList<OutboxDestinationStatistics>>("read the statistics per destination", async () =>
        {
            await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var keys = new[] { "exchange.name", "queue_name", "stream_name", "topic_name", "routing_key" };
                var destination = $"COALESCE({string.Join(", ", keys.Select(k => k == "exchange.name" ? $"NULLIF({OptionText(k)}, '')" : OptionText(k)))})";
                const string Pending = "dead_lettered_at IS NULL";
                var command = Command(
                    connection,
                    $"""
                    SELECT {destination},
                        SUM(CASE WHEN {Pending} THEN 1 ELSE 0 END),
                        SUM(CASE WHEN dead_lettered_at IS NOT NULL THEN 1 ELSE 0 END),
                        MIN(CASE WHEN {Pending} THEN created_at END)
                    FROM {TableDisplayName} WHERE dispatched = FALSE
                    GROUP BY {destination} ORDER BY {destination}
                    """);
                await using (command.ConfigureAwait(false))
                {
                    var result = new List<OutboxDestinationStatistics>();
                    var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                    await using (reader.ConfigureAwait(false))
                    {
                        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                        {
                            result.Add(new OutboxDestinationStatistics(
                                reader.IsDBNull(0) ? null : reader.GetString(0),
                                Convert.ToInt64(reader.GetValue(1), System.Globalization.CultureInfo.InvariantCulture),
                                Convert.ToInt64(reader.GetValue(2), System.Globalization.CultureInfo.InvariantCulture),
                                reader.IsDBNull(3) ? null : ReadTimestamp(reader, 3)));
                        }
                    }

                    return result;
                }
            }
        });

    /// <summary>
    /// Gets the SQL expression that reads option <paramref name="key"/> of the <c>options</c> column as text (or NULL). The default uses
    /// SQLite's and MySQL's <c>JSON_EXTRACT</c>; PostgreSQL overrides it with <c>options-&gt;&gt;'key'</c>.
    /// </summary>
    /// <param name="key">A plain option key (letters, digits, dots and underscores).</param>
    /// <returns>The SQL expression.</returns>
    protected virtual string OptionText(string key) => $"JSON_UNQUOTE(JSON_EXTRACT(options, '$.\"{key}\"'))";

    /// <summary>Converts a time to the value the provider stores in its timestamp columns. The default is the instant in UTC.</summary>
    /// <param name="value">The time.</param>
    /// <returns>The parameter value.</returns>
    protected virtual object ToDbTimestamp(DateTimeOffset value) => value.ToUniversalTime();

    /// <inheritdoc />
    public Task<int> RemoveDispatchedAsync(DateTimeOffset dispatchedBefore, int batchSize, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return ExecuteAsync("delete dispatched messages", c => CreateRemoveCommand(c, dispatchedBefore, batchSize), cancellationToken);
    }

    /// <summary>
    /// Gets a value indicating whether the provider's connections enlist in an ambient <c>System.Transactions</c> transaction
    /// (<c>TransactionScope</c>), so that <see cref="AddAsync(DbConnection, OutboxMessage, CancellationToken)"/> is safe.
    /// The default is <see langword="true"/>; Microsoft.Data.Sqlite does not enlist, so the SQLite store says <see langword="false"/>.
    /// </summary>
    protected virtual bool SupportsAmbientTransactions => true;

    /// <summary>
    /// Gets a value indicating whether the table is created inside the caller's transaction when a message is enqueued before the
    /// table exists, because the database lets only one connection write at a time (SQLite). The default is <see langword="false"/>:
    /// the table is created on a connection of the store's own.
    /// </summary>
    protected virtual bool CreateTableInCallerTransaction => false;

    /// <summary>Creates the table and indexes when missing, safely against other processes doing the same.</summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="transaction">The caller's transaction when <see cref="CreateTableInCallerTransaction"/> applies; otherwise <see langword="null"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the table exists.</returns>
    protected abstract Task CreateTableAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken);

    /// <summary>Tells whether <paramref name="transaction"/> is a transaction of this store's ADO.NET provider.</summary>
    /// <param name="transaction">The caller's transaction.</param>
    /// <returns><see langword="true"/> when the store can insert within it.</returns>
    protected abstract bool IsOwnProvider(DbTransaction transaction);

    /// <summary>Creates the command that inserts one message and returns its new id as a scalar.</summary>
    /// <param name="connection">The transaction's connection.</param>
    /// <param name="transaction">The transaction to insert within, or <see langword="null"/> when the connection is enlisted in an ambient <c>TransactionScope</c>.</param>
    /// <param name="message">The message.</param>
    /// <param name="optionsJson">The message's options as JSON, or <see langword="null"/> when it has none.</param>
    /// <param name="headersJson">The message's headers as JSON, or <see langword="null"/> when it has none.</param>
    /// <returns>The command.</returns>
    protected abstract DbCommand CreateInsertCommand(DbConnection connection, DbTransaction? transaction, OutboxMessage message, string? optionsJson, string? headersJson);

    /// <summary>Creates the single statement that claims pending messages (see <see cref="IOutboxStore.ClaimAsync"/>).</summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="batchSize">The most rows to claim.</param>
    /// <param name="now">The current time.</param>
    /// <param name="leaseUntil">Until when the rows stay reserved.</param>
    /// <returns>The command; it returns <c>id, message_id, payload, options, headers, created_at, attempts, ordering_key</c>.</returns>
    protected abstract DbCommand CreateClaimCommand(DbConnection connection, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil);

    /// <summary>Creates the single statement that marks the given rows dispatched.</summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="ids">The row ids.</param>
    /// <param name="dispatchedAt">The time to record.</param>
    /// <returns>The command.</returns>
    protected abstract DbCommand CreateMarkDispatchedCommand(DbConnection connection, IReadOnlyList<long> ids, DateTimeOffset dispatchedAt);

    /// <summary>Creates the statement that records a failed attempt and sets the row's next claimable time.</summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="id">The row id.</param>
    /// <param name="retryAt">When the row may be claimed again.</param>
    /// <param name="error">The failure, at most 4000 characters.</param>
    /// <returns>The command.</returns>
    protected abstract DbCommand CreateReleaseCommand(DbConnection connection, long id, DateTimeOffset retryAt, string error);

    /// <summary>Creates the statement that deletes up to <paramref name="batchSize"/> rows dispatched before the cutoff.</summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="dispatchedBefore">The cutoff.</param>
    /// <param name="batchSize">The most rows to delete.</param>
    /// <returns>The command.</returns>
    protected abstract DbCommand CreateRemoveCommand(DbConnection connection, DateTimeOffset dispatchedBefore, int batchSize);

    /// <summary>
    /// Inserts validated messages within the caller's transaction. The default runs the insert command of
    /// <see cref="CreateInsertCommand"/> once per message and assigns each <see cref="OutboxMessage.Id"/>; a provider overrides it
    /// with its bulk path.
    /// </summary>
    /// <param name="connection">The transaction's connection.</param>
    /// <param name="transaction">The caller's transaction.</param>
    /// <param name="rows">The messages with their options and headers as JSON.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many rows were inserted.</returns>
    protected virtual async Task<int> InsertRangeAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rows);
        foreach (var row in rows)
        {
            var command = CreateInsertCommand(connection, transaction, row.Message, row.OptionsJson, row.HeadersJson);
            await using (command.ConfigureAwait(false))
            {
                await PrepareAsync(command, cancellationToken).ConfigureAwait(false);
                var scalar = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
                row.Message.Id = Convert.ToInt64(scalar, System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return rows.Count;
    }

    /// <summary>
    /// Prepares a command that runs for every message (the insert) before it runs, so that the server parses and plans it once per
    /// connection instead of every time. The default does nothing; PostgreSQL prepares (Npgsql keeps prepared statements on the
    /// physical connection across pool rentals).
    /// </summary>
    /// <param name="command">The command, with its connection, transaction and parameters set.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the command is prepared.</returns>
    protected virtual Task PrepareAsync(DbCommand command, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Reads a timestamp column as the provider stores it.</summary>
    /// <param name="reader">The reader, positioned on a row.</param>
    /// <param name="ordinal">The column.</param>
    /// <returns>The time, in UTC.</returns>
    protected abstract DateTimeOffset ReadTimestamp(DbDataReader reader, int ordinal);

    /// <summary>Reads one claimed row (<c>id, message_id, payload, options, headers, created_at, attempts</c> and, when present, <c>ordering_key</c>).</summary>
    /// <param name="reader">The reader, positioned on a row.</param>
    /// <returns>The message.</returns>
    protected virtual OutboxMessage ReadClaimed(DbDataReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var message = new OutboxMessage(reader.GetFieldValue<byte[]>(2))
        {
            Id = reader.GetInt64(0),
            MessageId = reader.GetGuid(1),
            CreatedAt = ReadTimestamp(reader, 5),
            Attempts = reader.GetInt32(6),
        };
        Fill(message.Options, reader.IsDBNull(3) ? null : reader.GetString(3));
        Fill(message.Headers, reader.IsDBNull(4) ? null : reader.GetString(4));
        if (reader.FieldCount > 7 && !reader.IsDBNull(7))
        {
            message.OrderingKey = reader.GetString(7);
        }
        return message;
    }

    /// <summary>Adds a parameter to <paramref name="command"/>.</summary>
    /// <param name="command">The command.</param>
    /// <param name="name">The parameter name, as written in the SQL.</param>
    /// <param name="value">The value; <see langword="null"/> becomes <see cref="DBNull"/>.</param>
    /// <returns>The parameter, for provider-specific settings.</returns>
    protected static DbParameter AddParameter(DbCommand command, string name, object? value)
    {
        ArgumentNullException.ThrowIfNull(command);
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
        return parameter;
    }

    private static void Fill(OutboxValues target, string? json)
    {
        foreach (var (key, value) in OutboxValues.FromJson(json))
        {
            target[key] = value;
        }
    }

    private static (string? Options, string? Headers) Serialize(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message.Payload, nameof(message));
        if (message.MessageId == Guid.Empty)
        {
            throw new ArgumentException("The message has no MessageId; enqueue it through Outbox, which assigns one.", nameof(message));
        }

        try
        {
            return (message.Options.ToJson(), message.Headers.ToJson());
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"The message cannot be stored: {ex.Message}", nameof(message), ex);
        }
    }

    private DbConnection CheckTransaction(DbTransaction transaction)
    {
        if (!IsOwnProvider(transaction))
        {
            throw new ArgumentException(
                $"The transaction is a {transaction.GetType().FullName}, which this store ({GetType().Name}) cannot write to; begin it on a connection to the outbox's database.",
                nameof(transaction));
        }

        DbConnection? connection;
        try
        {
            connection = transaction.Connection;
        }
        catch (ObjectDisposedException ex)
        {
            throw new ArgumentException("The transaction is disposed; enqueue inside an open transaction.", nameof(transaction), ex);
        }

        if (connection is null)
        {
            throw new ArgumentException("The transaction is already committed or rolled back; enqueue inside an open transaction.", nameof(transaction));
        }

        if (connection.State != ConnectionState.Open)
        {
            throw new ArgumentException($"The transaction's connection is {connection.State}; enqueue inside an open transaction.", nameof(transaction));
        }

        return connection;
    }

    private async Task<long> InsertAsync(DbConnection connection, DbTransaction? transaction, OutboxMessage message, string? options, string? headers, CancellationToken cancellationToken)
    {
        var id = await WrapAsync("insert the message", async () =>
        {
            var command = CreateInsertCommand(connection, transaction, message, options, headers);
            await using (command.ConfigureAwait(false))
            {
                await PrepareAsync(command, cancellationToken).ConfigureAwait(false);
                var scalar = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
                return Convert.ToInt64(scalar, System.Globalization.CultureInfo.InvariantCulture);
            }
        }).ConfigureAwait(false);
        message.Id = id;
        return id;
    }

    /// <summary>Makes sure the table exists before writing in the caller's transaction.</summary>
    private async Task EnsureCreatedForCallerAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken)
    {
        if (CreateTableInCallerTransaction && _created is not { IsCompletedSuccessfully: true })
        {
            // A database with one writer at a time (SQLite) cannot create the table on a second connection while the
            // caller's transaction holds the write lock; create it inside that transaction instead (not remembered, as it may roll back).
            await WrapAsync("create the outbox table", async () =>
            {
                await CreateTableAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
                return 0;
            }).ConfigureAwait(false);
        }
        else
        {
            await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private Task EnsureCreatedOnceAsync(CancellationToken cancellationToken)
    {
        var created = _created;
        if (created is { IsCompletedSuccessfully: true })
        {
            return created;
        }

        lock (_createLock)
        {
            if (_created is null || _created.IsFaulted || _created.IsCanceled)
            {
                // Shared by every caller that arrives meanwhile, so no one caller's token may cancel it.
                _created = EnsureCreatedAsync(CancellationToken.None);
            }

            return _created.WaitAsync(cancellationToken);
        }
    }

    private Task<DbConnection> OpenAsync(string what, CancellationToken cancellationToken) =>
        WrapAsync(what, async () => await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false));

    /// <summary>Runs <paramref name="statement"/> on dead letters: all of them, or those among <paramref name="ids"/>, a chunk of ids per statement.</summary>
    private async Task<int> ForDeadLettersAsync(string what, string statement, IReadOnlyCollection<long>? ids, CancellationToken cancellationToken)
    {
        const string DeadLetters = " WHERE dead_lettered_at IS NOT NULL";
        if (ids is null)
        {
            return await ExecuteAsync(what, c => Command(c, statement + DeadLetters), cancellationToken).ConfigureAwait(false);
        }

        var total = 0;
        foreach (var chunk in ids.Distinct().Chunk(500))
        {
            var names = chunk.Select((_, i) => $"@id{i}").ToArray();
            total += await ExecuteAsync(
                what,
                c => Command(c, $"{statement}{DeadLetters} AND id IN ({string.Join(", ", names)})", [.. chunk.Select((id, i) => (names[i], (object?)id))]),
                cancellationToken).ConfigureAwait(false);
        }

        return total;
    }

    private static DbCommand Command(DbConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            AddParameter(command, name, value);
        }

        return command;
    }

    private Task<int> ExecuteAsync(string what, Func<DbConnection, DbCommand> create, CancellationToken cancellationToken) =>
        WrapAsync(what, async () =>
        {
            await EnsureCreatedOnceAsync(cancellationToken).ConfigureAwait(false);
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var command = create(connection);
                await using (command.ConfigureAwait(false))
                {
                    return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
            }
        });

    private async Task<T> WrapAsync<T>(string what, Func<Task<T>> operation)
    {
        try
        {
            return await operation().ConfigureAwait(false);
        }
        catch (DbException ex)
        {
            throw new OutboxException($"Could not {what} in {TableDisplayName}: {ex.Message}", ex.IsTransient, ex);
        }
    }

    /// <summary>
    /// Cuts <paramref name="value"/> to at most <paramref name="length"/> characters and replaces what text columns refuse (U+0000) or
    /// drivers cannot encode (half a surrogate pair, which the cut may leave) with U+FFFD, so that the failure is still recorded.
    /// </summary>
    private static string Truncate(string value, int length) => string.Create(Math.Min(value.Length, length), value, static (text, source) =>
    {
        for (var i = 0; i < text.Length; i++)
        {
            var c = source[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(source[i + 1]))
            {
                text[i] = c;
                text[i + 1] = source[i + 1];
                i++;
            }
            else
            {
                text[i] = c == '\0' || char.IsSurrogate(c) ? '\uFFFD' : c;
            }
        }
    });
}
