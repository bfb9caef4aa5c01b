using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Transactions;

namespace Outboxer.Providers;

/// <summary>
/// The one engine of the relational stores (every database with an <see cref="OutboxSqlDialect"/>): it owns
/// connections, transaction checks, serialization, row reading, error mapping and the migration of the table's layout, and takes every
/// statement from its dialect.
/// </summary>
/// <remarks>
/// <para>
/// Every operation takes a pooled connection from the <see cref="DbDataSource"/> for its own duration only; no connection or transaction
/// stays open between operations, and none stays open while the dispatcher waits on the broker.
/// </para>
/// <para>
/// Before its first operation the store checks the table's layout version (one catalog read). With <c>migrate</c> on it creates or
/// migrates the table; with it off it refuses a missing or older table with an <see cref="OutboxException"/> naming the table, its
/// version and the command that migrates it. A table of a newer version is refused either way.
/// </para>
/// <para>
/// The database packages derive sealed stores from this class only to give it their name, options and extras (a
/// notification listener); it has no virtual members: everything a database changes is in its dialect.
/// </para>
/// </remarks>
public class RelationalOutboxStore : IOutboxLockingStore, IOutboxLeasedWriter, IOutboxAdministration, IOutboxSchema
{
    /// <summary>The longest failure text kept with a row.</summary>
    private const int MaxErrorLength = 4000;

    /// <summary>The most ids in one statement that requeues or purges dead letters.</summary>
    private const int IdChunk = 500;

    private readonly OutboxSqlDialect _dialect;
    private readonly bool _migrate;
    private readonly Lock _schemaLock = new();
    private readonly Lazy<ConnectionIdentity> _own;
    private Task? _schemaReady;

    /// <summary>Initializes a store over the database that <paramref name="dataSource"/> connects to.</summary>
    /// <param name="dataSource">Where the store's own connections come from; the store does not dispose it.</param>
    /// <param name="dialect">The database's statements and layout.</param>
    /// <param name="migrate">
    /// Whether the first operation creates the table when it is missing and migrates it when its layout is older; otherwise the store only
    /// checks the version and refuses a table that is missing or not current.
    /// </param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> or <paramref name="dialect"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">The dialect has no migrations, or their versions are not 1, 2, 3 and so on.</exception>
    public RelationalOutboxStore(DbDataSource dataSource, OutboxSqlDialect dialect, bool migrate = true)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(dialect);
        DataSource = dataSource;
        _dialect = dialect;
        _migrate = migrate;
        var migrations = dialect.Migrations;
        for (var i = 0; i < migrations.Count; i++)
        {
            if (migrations[i].Version != i + 1)
            {
                throw new ArgumentException($"The dialect's migration {i} has version {migrations[i].Version}; versions must be 1, 2, 3 and so on.", nameof(dialect));
            }
        }

        if (migrations.Count == 0)
        {
            throw new ArgumentException("The dialect has no migrations; the first one creates the table.", nameof(dialect));
        }

        _own = new Lazy<ConnectionIdentity>(() =>
        {
            using var probe = dataSource.CreateConnection();
            return new ConnectionIdentity(probe.GetType(), dialect.DatabaseOf(probe));
        });
    }

    /// <summary>Gets the data source the store opens its own connections from.</summary>
    public DbDataSource DataSource { get; }

    /// <summary>Gets the table's name as the database shows it, for messages and tools.</summary>
    public string TableDisplayName => _dialect.DisplayName;

    /// <inheritdoc />
    public int LatestVersion => _dialect.Migrations.Count;

    // The two overloads of IOutboxWriter.AddAsync, told apart by the type of their first parameter.
#pragma warning disable RS0026
    /// <inheritdoc />
    public async ValueTask<long> AddAsync(DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ArgumentNullException.ThrowIfNull(message);
        var connection = CheckTransaction(transaction);
        var row = Serialize(message);
        await EnsureSchemaForCallerAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
        return await InsertAsync(connection, transaction, row, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public ValueTask<long> AddAsync(DbConnection connection, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(message);
        return AddOnEnlistedAsync(connection, Serialize(message), cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask<long> AddLeasedAsync(DbConnection connection, OutboxMessage message, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(message);
        ArgumentOutOfRangeException.ThrowIfLessThan(leaseUntil, now);
        var row = Serialize(message) with { LeasedAt = now, LeaseUntil = leaseUntil, LeaseToken = leaseToken };
        message.LeaseToken = leaseToken;
        message.Attempts = 1;
        return AddOnEnlistedAsync(connection, row, cancellationToken);
    }

    private async ValueTask<long> AddOnEnlistedAsync(DbConnection connection, SerializedMessage row, CancellationToken cancellationToken)
    {
        if (!_dialect.SupportsAmbientTransactions)
        {
            throw new NotSupportedException($"The outbox store of {TableDisplayName} cannot join an ambient transaction (TransactionScope): its database provider does not enlist; enqueue within a DbTransaction instead.");
        }

        var expected = _own.Value.Type;
        if (connection.GetType() != expected)
        {
            throw new ArgumentException($"The connection is a {connection.GetType().FullName}, which the outbox store of {TableDisplayName} cannot write to; it writes through {expected.FullName}.", nameof(connection));
        }

        CheckSameDatabase(connection, nameof(connection));

        if (connection.State != ConnectionState.Open)
        {
            throw new ArgumentException($"The connection is {connection.State}; open it inside the transaction scope first.", nameof(connection));
        }

        using (new TransactionScope(TransactionScopeOption.Suppress, TransactionScopeAsyncFlowOption.Enabled))
        {
            // The store's own connection must not enlist in the caller's ambient transaction.
            await EnsureSchemaOnceAsync(cancellationToken).ConfigureAwait(false);
        }

        return await InsertAsync(connection, null, row, cancellationToken).ConfigureAwait(false);
    }

#pragma warning restore RS0026

    /// <inheritdoc />
    public ValueTask<int> AddRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default) =>
        AddRangeAsync(transaction, messages, null, null, 0, cancellationToken);

    /// <inheritdoc />
    public ValueTask<int> AddLeasedRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(leaseUntil, now);
        return AddRangeAsync(transaction, messages, now, leaseUntil, leaseToken, cancellationToken);
    }

    private async ValueTask<int> AddRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, DateTimeOffset? now, DateTimeOffset? leaseUntil, long leaseToken, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ArgumentNullException.ThrowIfNull(messages);
        var connection = CheckTransaction(transaction);
        var rows = new SerializedMessage[messages.Count];
        for (var i = 0; i < rows.Length; i++)
        {
            rows[i] = Serialize(messages[i] ?? throw new ArgumentException($"messages[{i}] is null.", nameof(messages))) with { LeasedAt = now, LeaseUntil = leaseUntil, LeaseToken = leaseToken };
        }

        if (leaseUntil is not null)
        {
            foreach (var message in messages)
            {
                message.LeaseToken = leaseToken;
                message.Attempts = 1;
            }
        }

        if (rows.Length == 0)
        {
            return 0;
        }

        await EnsureSchemaForCallerAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
        var inserted = await WrapAsync("insert the messages", () => _dialect.InsertRangeAsync(connection, transaction, rows, cancellationToken)).ConfigureAwait(false);
        if (leaseUntil is null)
        {
            _dialect.Inserted(connection, transaction);
        }

        return inserted;
    }

    /// <inheritdoc />
    public Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        return AddWithinTransactionAsync(Serialize(message), work, cancellationToken);
    }

    /// <inheritdoc />
    public Task<long> AddLeasedWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        var row = Serialize(message) with { LeasedAt = now, LeaseUntil = leaseUntil, LeaseToken = leaseToken };
        message.LeaseToken = leaseToken;
        message.Attempts = 1;
        return AddWithinTransactionAsync(row, work, cancellationToken);
    }

    private async Task<long> AddWithinTransactionAsync(SerializedMessage row, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken)
    {
        var message = row.Message;
        await EnsureSchemaOnceAsync(cancellationToken).ConfigureAwait(false);

        var connection = await WrapAsync("open a connection", async () => await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false)).ConfigureAwait(false);
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

                    var id = await InsertAsync(connection, transaction, row, cancellationToken).ConfigureAwait(false);
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

    /// <summary>A random positive token: two claims share one with a chance of about one in 2^63.</summary>
    private static long NewLeaseToken() => Random.Shared.NextInt64(1, long.MaxValue);

    /// <inheritdoc />
    public Task<IReadOnlyList<OutboxMessage>> ClaimAsync(int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return OnConnectionAsync<IReadOnlyList<OutboxMessage>>("claim pending messages", async connection =>
        {
            // Unique to this claim: marks, releases and dead-letters carry it back and apply only while it still holds the row.
            var token = NewLeaseToken();
            var messages = new List<OutboxMessage>(Math.Min(batchSize, 1024));
            await _dialect.ClaimAsync(connection, batchSize, now, leaseUntil, token, messages, cancellationToken).ConfigureAwait(false);

            // RETURNING does not promise an order; the dispatcher publishes oldest first.
            messages.Sort(static (a, b) => a.Id.CompareTo(b.Id));
            foreach (var message in messages)
            {
                message.LeaseToken = token;
            }

            return messages;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public bool ClaimsByRowLock => _dialect.ClaimsByRowLock;

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The dialect does not claim by row lock (<see cref="ClaimsByRowLock"/> is <see langword="false"/>).</exception>
    public async Task<IOutboxLockedClaim> ClaimLockedAsync(int batchSize, DateTimeOffset now, TimeSpan hold, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(hold, TimeSpan.Zero);
        if (!_dialect.ClaimsByRowLock)
        {
            throw new NotSupportedException($"The store of {TableDisplayName} does not claim by row lock; use {nameof(ClaimAsync)}.");
        }

        return await WrapAsync<IOutboxLockedClaim>("claim pending messages", async () =>
        {
            await EnsureSchemaOnceAsync(cancellationToken).ConfigureAwait(false);
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            DbTransaction? transaction = null;
            try
            {
                var messages = new List<OutboxMessage>(Math.Min(batchSize, 1024));
                transaction = await _dialect.ClaimLockedAsync(connection, batchSize, now, hold, messages, cancellationToken).ConfigureAwait(false);
                messages.Sort(static (a, b) => a.Id.CompareTo(b.Id));
                var claim = new LockedClaim(this, connection, transaction, messages);
                if (messages.Count == 0)
                {
                    // Nothing locked: end the transaction now rather than hold a connection for an empty claim.
                    await claim.DisposeAsync().ConfigureAwait(false);
                    return LockedClaim.Empty;
                }

                return claim;
            }
            catch
            {
                if (transaction is not null)
                {
                    await transaction.DisposeAsync().ConfigureAwait(false);
                }

                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<int> MarkDispatchedAsync(IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Count == 0)
        {
            return Task.FromResult(0);
        }

        return OnConnectionAsync("mark messages dispatched", connection => _dialect.MarkDispatchedAsync(connection, ids, leaseToken, dispatchedAt, cancellationToken), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<bool> ReleaseAsync(long id, long leaseToken, DateTimeOffset retryAt, string error, bool outcomeUnknown = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(error);
        return await ExecuteAsync(
            "record a failed attempt",
            _dialect.ReleaseSql,
            [("@retry_at", _dialect.ToDbTimestamp(retryAt)), ("@error", Truncate(error, MaxErrorLength)), ("@uncertain", outcomeUnknown ? 1 : 0), ("@id", id), ("@token", leaseToken)],
            cancellationToken).ConfigureAwait(false) > 0;
    }

    /// <inheritdoc />
    public async Task<bool> DeadLetterAsync(long id, long leaseToken, DateTimeOffset deadLetteredAt, string error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(error);
        return await ExecuteAsync(
            "move a message to the dead letters",
            _dialect.DeadLetterSql,
            [("@at", _dialect.ToDbTimestamp(deadLetteredAt)), ("@error", Truncate(error, MaxErrorLength)), ("@id", id), ("@token", leaseToken)],
            cancellationToken).ConfigureAwait(false) > 0;
    }

    /// <inheritdoc />
    public Task<int> RemoveDispatchedAsync(DateTimeOffset dispatchedBefore, int batchSize, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return ExecuteAsync(
            "delete dispatched messages",
            _dialect.RemoveDispatchedSql,
            [("@cutoff", _dialect.ToDbTimestamp(dispatchedBefore)), ("@limit", batchSize)],
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<OutboxMessage>> GetDeadLettersAsync(int limit, long afterId = 0, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        return QueryAsync<OutboxMessage>("read the dead letters", _dialect.DeadLettersSql, [("@after", afterId), ("@limit", limit)], reader =>
        {
            var message = _dialect.ReadMessage(reader);
            message.LastError = reader.IsDBNull(9) ? null : reader.GetString(9);
            message.DeadLetteredAt = _dialect.ReadTimestamp(reader, 10);
            message.UncertainAttempts = Convert.ToInt32(reader.GetValue(11), CultureInfo.InvariantCulture);
            return message;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> RequeueDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default) =>
        ForDeadLettersAsync("requeue dead letters", _dialect.RequeueDeadLettersSql, ids, cancellationToken);

    /// <inheritdoc />
    public Task<int> PurgeDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default) =>
        ForDeadLettersAsync("purge dead letters", _dialect.PurgeDeadLettersSql, ids, cancellationToken);

    /// <inheritdoc />
    public async Task<OutboxStatistics> GetStatisticsAsync(DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var rows = await QueryAsync("read the outbox statistics", _dialect.StatisticsSql, [("@now", _dialect.ToDbTimestamp(now))], reader => new OutboxStatistics(
            ToInt64(reader, 0),
            ToInt64(reader, 1),
            ToInt64(reader, 2),
            reader.IsDBNull(3) ? null : _dialect.ReadTimestamp(reader, 3),
            now), cancellationToken).ConfigureAwait(false);
        return rows[0];
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<OutboxDestinationStatistics>> GetDestinationStatisticsAsync(CancellationToken cancellationToken = default) =>
        QueryAsync("read the statistics per destination", _dialect.DestinationStatisticsSql, [], reader => new OutboxDestinationStatistics(
            reader.IsDBNull(0) ? null : reader.GetString(0),
            ToInt64(reader, 1),
            ToInt64(reader, 2),
            reader.IsDBNull(3) ? null : _dialect.ReadTimestamp(reader, 3)), cancellationToken);

    /// <inheritdoc />
    public Task<OutboxMessage?> GetMessageAsync(long id, CancellationToken cancellationToken = default) =>
        FindMessageAsync("read a message by id", _dialect.MessageByIdSql, ("@id", id), cancellationToken);

    /// <inheritdoc />
    public Task<OutboxMessage?> GetMessageByMessageIdAsync(Guid messageId, CancellationToken cancellationToken = default) =>
        FindMessageAsync("read a message by message id", _dialect.MessageByMessageIdSql, ("@message_id", _dialect.ToDbMessageId(messageId)), cancellationToken);

    /// <inheritdoc />
    public async Task<long> CountRetryingAsync(CancellationToken cancellationToken = default) =>
        (await QueryAsync("count the retrying messages", _dialect.RetryingCountSql, [], reader => ToInt64(reader, 0), cancellationToken).ConfigureAwait(false))[0];

    /// <inheritdoc />
    public async Task<long> CountDispatchedSinceAsync(DateTimeOffset since, CancellationToken cancellationToken = default) =>
        (await QueryAsync("count the dispatched messages", _dialect.DispatchedSinceCountSql, [("@since", _dialect.ToDbTimestamp(since))], reader => ToInt64(reader, 0), cancellationToken)
            .ConfigureAwait(false))[0];

    /// <summary>Reads the first row of a message query (<see cref="OutboxSqlDialect.MessageByIdSql"/>), with its state.</summary>
    private async Task<OutboxMessage?> FindMessageAsync(string what, string sql, (string Name, object? Value) key, CancellationToken cancellationToken)
    {
        var rows = await QueryAsync(what, sql, [key], reader =>
        {
            var message = _dialect.ReadMessage(reader);
            message.LastError = reader.IsDBNull(9) ? null : reader.GetString(9);
            message.DeadLetteredAt = reader.IsDBNull(10) ? null : _dialect.ReadTimestamp(reader, 10);
            message.Dispatched = Convert.ToBoolean(reader.GetValue(11), CultureInfo.InvariantCulture);
            message.DispatchedAt = reader.IsDBNull(12) ? null : _dialect.ReadTimestamp(reader, 12);
            message.UncertainAttempts = Convert.ToInt32(reader.GetValue(13), CultureInfo.InvariantCulture);
            return message;
        }, cancellationToken).ConfigureAwait(false);
        return rows.Count == 0 ? null : rows[0];
    }

    /// <inheritdoc />
    public Task<OutboxSchemaStatus> GetSchemaStatusAsync(CancellationToken cancellationToken = default) =>
        WrapAsync("read the outbox table's version", async () =>
        {
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var state = await _dialect.ReadSchemaAsync(connection, null, cancellationToken).ConfigureAwait(false);
                return Status(state.Version);
            }
        });

    /// <inheritdoc />
    public async Task<OutboxSchemaStatus> MigrateAsync(CancellationToken cancellationToken = default)
    {
        var status = await WrapAsync("migrate the outbox table", async () =>
        {
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                return await MigrateOnAsync(connection, null, cancellationToken).ConfigureAwait(false);
            }
        }).ConfigureAwait(false);
        _schemaReady = Task.CompletedTask;
        return status;
    }

    /// <inheritdoc />
    public string GetMigrationScript(int fromVersion = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fromVersion);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(fromVersion, LatestVersion);
        return ScriptFor(_dialect, fromVersion);
    }

    /// <summary>
    /// Gets the SQL that migrates a table of <paramref name="dialect"/> from <paramref name="fromVersion"/> to the latest version (from 0:
    /// creates it), with the statements that record each version and, at the end, the repair statements (indexes, triggers).
    /// </summary>
    /// <param name="dialect">The dialect.</param>
    /// <param name="fromVersion">The table's current version; 0 for none.</param>
    /// <returns>The script.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fromVersion"/> is negative or newer than the dialect's latest version.</exception>
    public static string ScriptFor(OutboxSqlDialect dialect, int fromVersion)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        ArgumentOutOfRangeException.ThrowIfNegative(fromVersion);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(fromVersion, dialect.Migrations.Count);
        var script = new System.Text.StringBuilder();
        foreach (var step in dialect.Migrations)
        {
            if (step.Version > fromVersion)
            {
                script.Append(CultureInfo.InvariantCulture, $"-- version {step.Version}: {step.Description}\n");
                script.Append(step.Sql.TrimEnd()).Append('\n');
                script.Append(dialect.RecordVersionSql(step.Version, step.Description).TrimEnd()).Append("\n\n");
            }
        }

        if (script.Length > 0 && dialect.RepairSql is { } repair)
        {
            script.Append(repair.TrimEnd()).Append('\n');
        }

        return script.ToString();
    }

    private OutboxSchemaStatus Status(int version) => new(TableDisplayName, version, LatestVersion);

    /// <summary>Creates or migrates the table on <paramref name="connection"/>, under the dialect's lock.</summary>
    private async Task<OutboxSchemaStatus> MigrateOnAsync(DbConnection connection, DbTransaction? callerTransaction, CancellationToken cancellationToken)
    {
        // Usually the table is current: one catalog read, no lock, no DDL privilege needed.
        var state = await _dialect.ReadSchemaAsync(connection, callerTransaction, cancellationToken).ConfigureAwait(false);
        RefuseNewer(state.Version);
        if (state.Version == LatestVersion && !state.NeedsRepair)
        {
            return Status(state.Version);
        }

        var transaction = await _dialect.BeginSchemaChangeAsync(connection, callerTransaction, cancellationToken).ConfigureAwait(false);
        var own = transaction is not null && !ReferenceEquals(transaction, callerTransaction);
        try
        {
            // Another process may have migrated while this one waited for the lock: look again, and apply only what is still missing.
            state = await _dialect.ReadSchemaAsync(connection, transaction ?? callerTransaction, cancellationToken).ConfigureAwait(false);
            RefuseNewer(state.Version);
            var changed = false;
            foreach (var step in _dialect.Migrations)
            {
                if (step.Version <= state.Version)
                {
                    continue;
                }

                if (step.AppliedCheckSql is null || !await AlreadyAppliedAsync(connection, transaction, step, cancellationToken).ConfigureAwait(false))
                {
                    await RunAsync(connection, transaction, step.Sql, cancellationToken).ConfigureAwait(false);
                }

                await RunAsync(connection, transaction, _dialect.RecordVersionSql(step.Version, step.Description), cancellationToken).ConfigureAwait(false);
                changed = true;
            }

            if (changed || state.NeedsRepair)
            {
                await _dialect.RepairAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
            }

            if (own)
            {
                await transaction!.CommitAsync(cancellationToken).ConfigureAwait(false);
            }

            return Status(LatestVersion);
        }
        finally
        {
            if (own)
            {
                await transaction!.DisposeAsync().ConfigureAwait(false);
            }

            await _dialect.EndSchemaChangeAsync(connection).ConfigureAwait(false);
        }
    }

    private static async Task<bool> AlreadyAppliedAsync(DbConnection connection, DbTransaction? transaction, OutboxMigration step, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction, step.AppliedCheckSql!, []);
        await using (command.ConfigureAwait(false))
        {
            var result = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return result is not null and not DBNull && Convert.ToInt64(result, CultureInfo.InvariantCulture) > 0;
        }
    }

    private static async Task RunAsync(DbConnection connection, DbTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction, sql, []);
        await using (command.ConfigureAwait(false))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private void RefuseNewer(int version)
    {
        if (version > LatestVersion)
        {
            throw new OutboxException(
                $"The outbox table {TableDisplayName} has layout version {version}, newer than version {LatestVersion} that this Outboxer knows: a newer Outboxer migrated it. " +
                "Upgrade this application's Outboxer packages; this one refuses to write to the table.",
                isTransient: false);
        }
    }

    /// <summary>Checks (without migrating) that the table is current, for stores that must not change the schema.</summary>
    private async Task VerifyOnAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        var state = await _dialect.ReadSchemaAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
        RefuseNewer(state.Version);
        if (state.Version == 0)
        {
            throw new OutboxException(
                $"The outbox table {TableDisplayName} does not exist, and this store does not create it (CreateTableIfMissing is off). " +
                "Create it with `outboxer schema migrate`, or run the script of `outboxer schema script` in your migrations.",
                isTransient: false);
        }

        if (state.Version < LatestVersion)
        {
            throw new OutboxException(
                $"The outbox table {TableDisplayName} has layout version {state.Version}, and this Outboxer needs version {LatestVersion}; this store does not migrate it " +
                $"(CreateTableIfMissing is off). Migrate it with `outboxer schema migrate`, or run the script of `outboxer schema script --from {state.Version}` in your migrations.",
                isTransient: false);
        }
    }

    private async Task EnsureSchemaForCallerAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken)
    {
        if (_dialect.MigratesInCallerTransaction && _schemaReady is not { IsCompletedSuccessfully: true })
        {
            // A database with one writer at a time cannot change the schema on a second connection while the caller's transaction
            // holds the write lock; migrate inside that transaction instead (not remembered, as it may roll back).
            await WrapAsync("migrate the outbox table", async () => _migrate
                ? await MigrateOnAsync(connection, transaction, cancellationToken).ConfigureAwait(false)
                : await VerifyAndReturnAsync(connection, transaction, cancellationToken).ConfigureAwait(false)).ConfigureAwait(false);
        }
        else
        {
            await EnsureSchemaOnceAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<OutboxSchemaStatus> VerifyAndReturnAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        await VerifyOnAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
        return Status(LatestVersion);
    }

    private Task EnsureSchemaOnceAsync(CancellationToken cancellationToken)
    {
        var ready = _schemaReady;
        if (ready is { IsCompletedSuccessfully: true })
        {
            return ready;
        }

        lock (_schemaLock)
        {
            if (_schemaReady is null || _schemaReady.IsFaulted || _schemaReady.IsCanceled)
            {
                // Shared by every caller that arrives meanwhile, so no one caller's token may cancel it.
                _schemaReady = _migrate ? MigrateAsync(CancellationToken.None) : VerifyAsync();
            }

            return _schemaReady.WaitAsync(cancellationToken);
        }
    }

    private Task VerifyAsync() =>
        WrapAsync("check the outbox table's version", async () =>
        {
            var connection = await DataSource.OpenConnectionAsync(CancellationToken.None).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                return await VerifyAndReturnAsync(connection, null, CancellationToken.None).ConfigureAwait(false);
            }
        });

    private SerializedMessage Serialize(OutboxMessage message)
    {
        var row = SerializedMessage.Create(message);
        _dialect.Validate(row);
        return row;
    }

    private DbConnection CheckTransaction(DbTransaction transaction)
    {
        if (!_dialect.Owns(transaction))
        {
            throw new ArgumentException(
                $"The transaction is a {transaction.GetType().FullName}, which the outbox store of {TableDisplayName} cannot write to; begin it on a connection to the outbox's database.",
                nameof(transaction));
        }

        var connection = OpenConnectionOf(transaction);
        CheckSameDatabase(connection, nameof(transaction));
        return connection;
    }

    /// <summary>
    /// The connection of a transaction that is still open, or an <see cref="ArgumentException"/> that says why it is not (disposed,
    /// committed or rolled back, its connection closed). Shared by every writer that enqueues in the caller's transaction.
    /// </summary>
    internal static DbConnection OpenConnectionOf(DbTransaction transaction)
    {
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

    /// <summary>
    /// Refuses a connection to another database than the store's (the row would be written there, and this outbox would never publish
    /// it), as far as the dialect can tell from the connections themselves, without a round trip.
    /// </summary>
    private void CheckSameDatabase(DbConnection connection, string paramName)
    {
        var own = _own.Value.Database;
        var theirs = _dialect.DatabaseOf(connection);
        if (own is not null && theirs is not null && !string.Equals(own, theirs, StringComparison.Ordinal))
        {
            throw new ArgumentException(
                $"The transaction is on the database '{theirs}', but the outbox table {TableDisplayName} is in '{own}'; begin it on a connection to the outbox's database.",
                paramName);
        }
    }

    private async Task<long> InsertAsync(DbConnection connection, DbTransaction? transaction, SerializedMessage row, CancellationToken cancellationToken)
    {
        var id = await WrapAsync("insert the message", async () =>
        {
            var command = _dialect.CreateInsertCommand(connection, transaction, row);
            await using (command.ConfigureAwait(false))
            {
                await _dialect.PrepareAsync(command, cancellationToken).ConfigureAwait(false);
                return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
            }
        }).ConfigureAwait(false);
        if (transaction is not null && row.LeaseUntil is null)
        {
            _dialect.Inserted(connection, transaction);
        }

        row.Message.Id = id;
        return id;
    }

    /// <summary>Runs a dead-letter statement on all dead letters, or on those among <paramref name="ids"/>, a chunk of ids per statement.</summary>
    private async Task<int> ForDeadLettersAsync(string what, Func<string?, string> statement, IReadOnlyCollection<long>? ids, CancellationToken cancellationToken)
    {
        if (ids is null)
        {
            return await ExecuteAsync(what, statement(null), [], cancellationToken).ConfigureAwait(false);
        }

        var total = 0;
        foreach (var chunk in ids.Distinct().Chunk(IdChunk))
        {
            var names = chunk.Select((_, i) => "@id" + i.ToString(CultureInfo.InvariantCulture)).ToArray();
            total += await ExecuteAsync(what, statement(string.Join(", ", names)), [.. chunk.Select((id, i) => (names[i], (object?)id))], cancellationToken).ConfigureAwait(false);
        }

        return total;
    }

    private Task<int> ExecuteAsync(string what, string sql, (string Name, object? Value)[] parameters, CancellationToken cancellationToken) =>
        OnConnectionAsync(what, async connection =>
        {
            var command = Command(connection, null, sql, parameters);
            await using (command.ConfigureAwait(false))
            {
                return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }, cancellationToken);

    private Task<IReadOnlyList<T>> QueryAsync<T>(string what, string sql, (string Name, object? Value)[] parameters, Func<DbDataReader, T> read, CancellationToken cancellationToken) =>
        OnConnectionAsync<IReadOnlyList<T>>(what, async connection =>
        {
            var command = Command(connection, null, sql, parameters);
            await using (command.ConfigureAwait(false))
            {
                var rows = new List<T>();
                var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        rows.Add(read(reader));
                    }
                }

                return rows;
            }
        }, cancellationToken);

    /// <summary>Checks the schema once, then runs <paramref name="operation"/> on a pooled connection of the store's own, mapping database errors.</summary>
    private Task<T> OnConnectionAsync<T>(string what, Func<DbConnection, Task<T>> operation, CancellationToken cancellationToken) =>
        WrapAsync(what, async () =>
        {
            await EnsureSchemaOnceAsync(cancellationToken).ConfigureAwait(false);
            var connection = await DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                return await operation(connection).ConfigureAwait(false);
            }
        });

    private static DbCommand Command(DbConnection connection, DbTransaction? transaction, string sql, (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }

        return command;
    }

    private sealed record ConnectionIdentity(Type Type, string? Database);

    private static long ToInt64(DbDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? 0 : Convert.ToInt64(reader.GetValue(ordinal), CultureInfo.InvariantCulture);

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

    /// <summary>A batch locked by <see cref="ClaimLockedAsync"/>: its connection and open transaction, until settled or disposed.</summary>
    private sealed class LockedClaim : IOutboxLockedClaim
    {
        public static readonly LockedClaim Empty = new(null, null, null, []);

        private readonly RelationalOutboxStore? _store;
        private DbConnection? _connection;
        private DbTransaction? _transaction;

        public LockedClaim(RelationalOutboxStore? store, DbConnection? connection, DbTransaction? transaction, IReadOnlyList<OutboxMessage> messages)
        {
            _store = store;
            _connection = connection;
            _transaction = transaction;
            Messages = messages;
        }

        public IReadOnlyList<OutboxMessage> Messages { get; }

        public async Task SettleAsync(IReadOnlyList<long> dispatched, IReadOnlyList<OutboxFailedAttempt> failed, DateTimeOffset now, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(dispatched);
            ArgumentNullException.ThrowIfNull(failed);
            if (_store is null)
            {
                if (dispatched.Count > 0 || failed.Count > 0)
                {
                    throw new ArgumentException("The claim holds no messages.", dispatched.Count > 0 ? nameof(dispatched) : nameof(failed));
                }

                return;
            }

            var connection = _connection ?? throw new InvalidOperationException("The claim is already settled or disposed.");
            var transaction = _transaction!;
            var truncated = failed.Count == 0 ? failed : [.. failed.Select(static f => f with { Error = Truncate(f.Error, MaxErrorLength) })];
            await _store.WrapAsync("settle claimed messages", async () =>
            {
                await _store._dialect.SettleLockedAsync(connection, transaction, dispatched, truncated, now, cancellationToken).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return true;
            }).ConfigureAwait(false);
            await DisposeAsync().ConfigureAwait(false);
        }

        public async ValueTask DisposeAsync()
        {
            var transaction = Interlocked.Exchange(ref _transaction, null);
            var connection = Interlocked.Exchange(ref _connection, null);
            if (transaction is not null)
            {
                // Rolls back when not settled: the rows are claimable again at once. A broken connection cannot roll back; closing it
                // ends the transaction on the server too.
                try
                {
                    await transaction.DisposeAsync().ConfigureAwait(false);
                }
                catch (DbException)
                {
                }
            }

            if (connection is not null)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
