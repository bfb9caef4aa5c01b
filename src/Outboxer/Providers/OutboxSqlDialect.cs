using System.Data.Common;
using System.Globalization;

namespace Outboxer.Providers;

/// <summary>
/// What one relational database contributes to <see cref="RelationalOutboxStore"/>: its statements (claim, mark, release, dead letters,
/// statistics, cleanup), how it stores values, and the migrations of its table layout. The store owns everything the databases share
/// (connections, transaction checks, serialization, row reading, error mapping, the migration procedure); a dialect supplies SQL, and
/// carries out a whole operation itself only where its database needs a different shape (a claim, a mark, a bulk insert).
/// </summary>
/// <remarks>
/// <para>
/// Adding a database means one dialect, a sealed store that passes it to <see cref="RelationalOutboxStore"/>, a server fixture for the
/// tests and a subclass of the store conformance suite; nothing in the core package changes.
/// </para>
/// <para>
/// Statements name their parameters <c>@name</c>. Queries that return messages return the <em>message columns</em> first, in this
/// order: <c>id, message_id, payload, options, headers, created_at, attempts, ordering_key, destination</c> (options and headers as
/// JSON text), read by <see cref="ReadMessage"/>. A dialect is created once per store and must be safe for concurrent use.
/// </para>
/// </remarks>
public abstract class OutboxSqlDialect
{
    /// <summary>Gets the table's name as it is written in SQL: quoted, and qualified where the database has schemas.</summary>
    public abstract string Table { get; }

    /// <summary>Gets the table's name for error messages and tools. The default is <see cref="Table"/>.</summary>
    public virtual string DisplayName => Table;

    /// <summary>
    /// Gets a value indicating whether the provider's connections enlist in an ambient <c>System.Transactions</c> transaction
    /// (<c>TransactionScope</c>). The default is <see langword="true"/>.
    /// </summary>
    public virtual bool SupportsAmbientTransactions => true;

    /// <summary>
    /// Gets a value indicating whether the table is created (migrated) inside the caller's transaction when a message is enqueued before
    /// the table exists, because the database lets only one connection write at a time. The default is <see langword="false"/>.
    /// </summary>
    public virtual bool MigratesInCallerTransaction => false;

    /// <summary>Gets the steps of the table's layout, in version order; the first one creates the table.</summary>
    public abstract IReadOnlyList<OutboxMigration> Migrations { get; }

    /// <summary>Tells whether <paramref name="transaction"/> is a transaction of this dialect's ADO.NET provider.</summary>
    /// <param name="transaction">The caller's transaction.</param>
    /// <returns><see langword="true"/> when the store can insert within it.</returns>
    public abstract bool Owns(DbTransaction transaction);

    /// <summary>
    /// Names the database that <paramref name="connection"/> works in (open or not), so that the store can refuse a caller's transaction
    /// on another database than its own, without a round trip. The default is <see cref="DbConnection.Database"/>; <see langword="null"/>
    /// when it cannot be told, which skips the check.
    /// </summary>
    /// <param name="connection">A connection of this dialect's provider: the caller's, or one the store's data source created.</param>
    /// <returns>The database's name as the provider reports it, or <see langword="null"/>.</returns>
    public virtual string? DatabaseOf(DbConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return string.IsNullOrEmpty(connection.Database) ? null : connection.Database;
    }

    /// <summary>Converts a time to the value the database stores in its timestamp columns. The default is the instant in UTC.</summary>
    /// <param name="value">The time.</param>
    /// <returns>The parameter value.</returns>
    public virtual object ToDbTimestamp(DateTimeOffset value) => value.ToUniversalTime();

    /// <summary>Reads a timestamp column. The default reads a <see cref="DateTimeOffset"/>.</summary>
    /// <param name="reader">The reader, positioned on a row.</param>
    /// <param name="ordinal">The column.</param>
    /// <returns>The time.</returns>
    public virtual DateTimeOffset ReadTimestamp(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return reader.GetFieldValue<DateTimeOffset>(ordinal);
    }

    /// <summary>
    /// Checks, before anything reaches the server, that the database can store <paramref name="row"/>, so that a failing statement
    /// does not abort the caller's transaction. The default accepts everything.
    /// </summary>
    /// <param name="row">The message with its options and headers as JSON.</param>
    /// <exception cref="ArgumentException">The database cannot store a value of the message; the message says which.</exception>
    public virtual void Validate(SerializedMessage row)
    {
    }

    /// <summary>
    /// Creates the command that inserts one message and returns its new id as a scalar (columns <c>message_id, payload, options,
    /// headers, created_at, ordering_key, destination</c>).
    /// </summary>
    /// <param name="connection">The connection to insert on.</param>
    /// <param name="transaction">The caller's transaction, or <see langword="null"/> when the connection is enlisted in an ambient one.</param>
    /// <param name="row">The validated message.</param>
    /// <returns>The command.</returns>
    public abstract DbCommand CreateInsertCommand(DbConnection connection, DbTransaction? transaction, SerializedMessage row);

    /// <summary>
    /// Prepares the insert before it runs, where the database gains from parsing and planning it once per connection. The default does
    /// nothing.
    /// </summary>
    /// <param name="command">The insert, with its connection, transaction and parameters set.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the command is prepared.</returns>
    public virtual Task PrepareAsync(DbCommand command, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Called after a message was inserted with <see cref="CreateInsertCommand"/> in the caller's <paramref name="transaction"/>, before
    /// that transaction ends: a dialect whose database can tell when another session's transaction ends starts watching for its commit
    /// here (PostgreSQL: an advisory lock the insert took), so that the dispatcher learns of the commit without polling. The default
    /// does nothing.
    /// </summary>
    /// <param name="connection">The caller's connection.</param>
    /// <param name="transaction">The caller's transaction, still open.</param>
    public virtual void Inserted(DbConnection connection, DbTransaction transaction)
    {
    }

    /// <summary>
    /// Inserts validated messages within the caller's transaction. The default runs <see cref="CreateInsertCommand"/> once per message
    /// and assigns each <see cref="OutboxMessage.Id"/>; a dialect with a bulk path (a binary <c>COPY</c>) replaces it.
    /// </summary>
    /// <param name="connection">The transaction's connection.</param>
    /// <param name="transaction">The caller's transaction.</param>
    /// <param name="rows">The validated messages.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many rows were inserted.</returns>
    public virtual async Task<int> InsertRangeAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<SerializedMessage> rows, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rows);
        foreach (var row in rows)
        {
            var command = CreateInsertCommand(connection, transaction, row);
            await using (command.ConfigureAwait(false))
            {
                await PrepareAsync(command, cancellationToken).ConfigureAwait(false);
                row.Message.Id = Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
            }
        }

        return rows.Count;
    }

    /// <summary>
    /// Claims pending messages (see <see cref="IOutboxStore.ClaimAsync"/>) on a connection of the store's own and adds them to
    /// <paramref name="claimed"/>, in any order, read with <see cref="ReadMessage"/>. The dialect decides the statements and the
    /// transaction; database errors are mapped by the store.
    /// </summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="batchSize">The most rows to claim.</param>
    /// <param name="now">The current time.</param>
    /// <param name="leaseUntil">Until when the rows stay reserved.</param>
    /// <param name="leaseToken">The claim's token, to write into <c>lease_token</c> of every claimed row.</param>
    /// <param name="claimed">Where to add the claimed messages.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the rows are claimed.</returns>
    public abstract Task ClaimAsync(DbConnection connection, int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, long leaseToken, ICollection<OutboxMessage> claimed, CancellationToken cancellationToken);

    /// <summary>
    /// Gets a value indicating whether the store claims by row lock (<see cref="ClaimLockedAsync"/>, <see cref="SettleLockedAsync"/>);
    /// the dispatcher then uses <see cref="IOutboxLockingStore.ClaimLockedAsync"/>. <see langword="false"/> unless overridden.
    /// </summary>
    public virtual bool ClaimsByRowLock => false;

    /// <summary>
    /// Begins a transaction on <paramref name="connection"/> and locks up to <paramref name="batchSize"/> claimable rows in it (without
    /// changing them), adding their messages to <paramref name="claimed"/> with <see cref="OutboxMessage.Attempts"/> counting the attempt
    /// about to be made; the transaction must end by itself if it stays idle for <paramref name="hold"/>. Only called when
    /// <see cref="ClaimsByRowLock"/> is <see langword="true"/>.
    /// </summary>
    /// <param name="connection">An open connection of the store's own, held until the claim is settled.</param>
    /// <param name="batchSize">The most rows to lock.</param>
    /// <param name="now">The dispatcher's current time.</param>
    /// <param name="hold">The longest the transaction may stay idle.</param>
    /// <param name="claimed">Where to add the locked messages.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The open transaction that holds the locks.</returns>
    /// <exception cref="NotSupportedException">The dialect does not claim by row lock.</exception>
    public virtual Task<DbTransaction> ClaimLockedAsync(DbConnection connection, int batchSize, DateTimeOffset now, TimeSpan hold, ICollection<OutboxMessage> claimed, CancellationToken cancellationToken) =>
        throw new NotSupportedException($"{GetType().Name} does not claim by row lock.");

    /// <summary>
    /// In the claim's <paramref name="transaction"/>: marks <paramref name="dispatched"/> dispatched, records the <paramref name="failed"/>
    /// attempts, counts one attempt for each, and clears their lease; the caller commits.
    /// </summary>
    /// <param name="connection">The claim's connection.</param>
    /// <param name="transaction">The claim's transaction.</param>
    /// <param name="dispatched">The ids of the confirmed messages.</param>
    /// <param name="failed">The failed attempts (errors already truncated to fit).</param>
    /// <param name="now">The time to record as dispatched or dead-lettered.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the statements ran.</returns>
    /// <exception cref="NotSupportedException">The dialect does not claim by row lock.</exception>
    public virtual Task SettleLockedAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<long> dispatched, IReadOnlyList<OutboxFailedAttempt> failed, DateTimeOffset now, CancellationToken cancellationToken) =>
        throw new NotSupportedException($"{GetType().Name} does not claim by row lock.");

    /// <summary>
    /// Marks the given rows dispatched at <paramref name="dispatchedAt"/> (and clears their lease) where <c>lease_token</c> is still
    /// <paramref name="leaseToken"/>, on a connection of the store's own.
    /// </summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="ids">The row ids, at least one.</param>
    /// <param name="leaseToken">The token of the claim that returned them.</param>
    /// <param name="dispatchedAt">The time to record.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many rows were updated.</returns>
    public abstract Task<int> MarkDispatchedAsync(DbConnection connection, IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken);

    /// <summary>
    /// Gets the statement that records a failed attempt of a row not dispatched and still held by <c>@token</c>: <c>@id</c>,
    /// <c>@token</c>, <c>@retry_at</c> (its next claimable time), <c>@error</c>, and <c>@uncertain</c> (1 when the attempt's outcome is
    /// unknown, else 0) added to <c>uncertain_attempts</c>.
    /// </summary>
    public abstract string ReleaseSql { get; }

    /// <summary>
    /// Gets the statement that moves a row not dispatched and still held by <c>@token</c> to the dead letters and ends its lease:
    /// <c>@id</c>, <c>@token</c>, <c>@at</c>, <c>@error</c>.
    /// </summary>
    public abstract string DeadLetterSql { get; }

    /// <summary>Gets the statement that deletes at most <c>@limit</c> rows dispatched before <c>@cutoff</c>, briefly locking only those.</summary>
    public abstract string RemoveDispatchedSql { get; }

    /// <summary>
    /// Gets the query that returns one row: pending (not dispatched, not dead-lettered), in flight (pending with a lease after
    /// <c>@now</c>), dead-lettered, and the oldest pending <c>created_at</c> (or NULL).
    /// </summary>
    public abstract string StatisticsSql { get; }

    /// <summary>
    /// Gets the query that returns, per <c>destination</c> of the rows not dispatched, in destination order (NULL first): the destination,
    /// pending, dead-lettered, and the oldest pending <c>created_at</c> (or NULL).
    /// </summary>
    public abstract string DestinationStatisticsSql { get; }

    /// <summary>Gets the query that returns the message columns, <c>last_error</c>, <c>dead_lettered_at</c> and <c>uncertain_attempts</c> of at most <c>@limit</c> dead letters with an id above <c>@after</c>, in id order.</summary>
    public abstract string DeadLettersSql { get; }

    /// <summary>
    /// Gets the statement that makes dead letters pending again with no attempts and no lease. The default is standard SQL
    /// (<c>UPDATE ... WHERE dead_lettered_at IS NOT NULL AND id IN (...)</c>).
    /// </summary>
    /// <param name="idList">The parameters of the ids to requeue (<c>@id0, @id1</c>), or <see langword="null"/> for every dead letter.</param>
    /// <returns>The statement; it touches only dead letters.</returns>
    public virtual string RequeueDeadLettersSql(string? idList) =>
        $"UPDATE {Table} SET dead_lettered_at = NULL, attempts = 0, locked_until = NULL WHERE dead_lettered_at IS NOT NULL{IdFilter(idList)}";

    /// <summary>Gets the statement that deletes dead letters. The default is standard SQL.</summary>
    /// <param name="idList">The parameters of the ids to delete (<c>@id0, @id1</c>), or <see langword="null"/> for every dead letter.</param>
    /// <returns>The statement; it touches only dead letters.</returns>
    public virtual string PurgeDeadLettersSql(string? idList) => $"DELETE FROM {Table} WHERE dead_lettered_at IS NOT NULL{IdFilter(idList)}";

    /// <summary>
    /// Gets the query that returns the message columns, <c>last_error</c>, <c>dead_lettered_at</c>, <c>dispatched</c>,
    /// <c>dispatched_at</c> and <c>uncertain_attempts</c> of the row whose id is <c>@id</c>. The default is standard SQL.
    /// </summary>
    public virtual string MessageByIdSql =>
        $"SELECT {MessageColumns}, last_error, dead_lettered_at, dispatched, dispatched_at, uncertain_attempts FROM {Table} WHERE id = @id";

    /// <summary>
    /// Gets the query that returns the same columns as <see cref="MessageByIdSql"/> for the row with the lowest id whose message id is
    /// <c>@message_id</c> (see <see cref="ToDbMessageId"/>). The default is standard SQL.
    /// </summary>
    public virtual string MessageByMessageIdSql =>
        $"SELECT {MessageColumns}, last_error, dead_lettered_at, dispatched, dispatched_at, uncertain_attempts FROM {Table} WHERE message_id = @message_id ORDER BY id";

    /// <summary>Converts a message id to the value the database compares its <c>message_id</c> column with. The default is the text form (<c>D</c>).</summary>
    /// <param name="messageId">The message id.</param>
    /// <returns>The parameter value.</returns>
    public virtual object ToDbMessageId(Guid messageId) => messageId.ToString("D");

    /// <summary>
    /// Gets the query that counts the pending rows that failed at least once (<c>last_error</c> set) and hold a lease or a retry time.
    /// The default is standard SQL.
    /// </summary>
    public virtual string RetryingCountSql =>
        $"SELECT COUNT(*) FROM {Table} WHERE dispatched = FALSE AND dead_lettered_at IS NULL AND locked_until IS NOT NULL AND last_error IS NOT NULL";

    /// <summary>Gets the query that counts the rows dispatched after <c>@since</c>. The default is standard SQL.</summary>
    public virtual string DispatchedSinceCountSql =>
        $"SELECT COUNT(*) FROM {Table} WHERE dispatched = TRUE AND dispatched_at > @since";

    /// <summary>
    /// Reads the table's layout version, without locking: 0 when the table does not exist, 1 when it exists without a version record
    /// (created by 0.1.0-preview.1), otherwise the highest version recorded.
    /// </summary>
    /// <param name="connection">An open connection.</param>
    /// <param name="transaction">The transaction to read in, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The version, and whether something that the current layout has besides its migrations is missing (an index, a trigger; see <see cref="RepairAsync"/>).</returns>
    public abstract Task<OutboxSchemaState> ReadSchemaAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken);

    /// <summary>
    /// Takes the lock under which the table is created, migrated or repaired, which other processes doing the same wait for, and
    /// begins the transaction the steps run in where the database's DDL is transactional.
    /// </summary>
    /// <param name="connection">An open connection of the store's own.</param>
    /// <param name="transaction">The caller's transaction when <see cref="MigratesInCallerTransaction"/> applies; otherwise <see langword="null"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The transaction of the steps (which the store commits), or <see langword="null"/> when every statement commits by itself.</returns>
    public abstract Task<DbTransaction?> BeginSchemaChangeAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken);

    /// <summary>Releases what <see cref="BeginSchemaChangeAsync"/> took beyond its transaction (a session lock). The default does nothing.</summary>
    /// <param name="connection">The connection of the change.</param>
    /// <returns>A task that completes when the lock is released.</returns>
    public virtual Task EndSchemaChangeAsync(DbConnection connection) => Task.CompletedTask;

    /// <summary>
    /// Gets the statements that record that the table has layout <paramref name="version"/> (a table comment, or a row in a table of
    /// versions that they create when it is missing). Values are written as literals, so that the statements can go into a script.
    /// </summary>
    /// <param name="version">The version the table now has.</param>
    /// <param name="description">What the version's step changed; plain text without quotes.</param>
    /// <returns>The statements.</returns>
    public abstract string RecordVersionSql(int version, string description);

    /// <summary>
    /// Gets the statements, safe to run again, that add what the current layout has besides its migrations (the indexes again, an
    /// optional trigger); they end every migration script and run after every migration, and when <see cref="OutboxSchemaState.NeedsRepair"/>
    /// says something is missing. The default is <see langword="null"/>: nothing.
    /// </summary>
    public virtual string? RepairSql => null;

    /// <summary>
    /// Adds what the current layout has besides its migrations, under the schema lock. The default runs <see cref="RepairSql"/>; a
    /// database that cannot write such statements to be safe to run again (without <c>ADD INDEX IF NOT EXISTS</c>) looks first.
    /// </summary>
    /// <param name="connection">The connection of the schema change.</param>
    /// <param name="transaction">Its transaction, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the table is repaired.</returns>
    public virtual async Task RepairAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (RepairSql is not { } sql)
        {
            return;
        }

        var command = connection.CreateCommand();
        await using (command.ConfigureAwait(false))
        {
            command.Transaction = transaction;
            command.CommandText = sql;
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Reads the message columns of the current row (<c>id, message_id, payload, options, headers, created_at, attempts, ordering_key,
    /// destination</c>).
    /// </summary>
    /// <param name="reader">The reader, positioned on a row.</param>
    /// <returns>The message.</returns>
    /// <exception cref="FormatException">The options or headers are not JSON that the outbox wrote.</exception>
    public OutboxMessage ReadMessage(DbDataReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var message = new OutboxMessage(reader.GetFieldValue<byte[]>(2))
        {
            Id = reader.GetInt64(0),
            MessageId = reader.GetGuid(1),
            CreatedAt = ReadTimestamp(reader, 5),
            Attempts = reader.GetInt32(6),
            OrderingKey = reader.IsDBNull(7) ? null : reader.GetString(7),
            Destination = reader.IsDBNull(8) ? null : reader.GetString(8),
        };
        Fill(message.Options, reader.IsDBNull(3) ? null : reader.GetString(3));
        Fill(message.Headers, reader.IsDBNull(4) ? null : reader.GetString(4));
        return message;
    }

    /// <summary>
    /// Writes <see cref="StatisticsSql"/> in standard SQL (<c>COUNT</c>, <c>CASE</c>, <c>MIN</c>) for a dialect to return, given how its
    /// database says that a row is not dispatched.
    /// </summary>
    /// <param name="table">The table as SQL writes it.</param>
    /// <param name="notDispatched">The condition that a row is not dispatched, for example <c>dispatched = 0</c>.</param>
    /// <returns>The query.</returns>
    protected static string StandardStatisticsSql(string table, string notDispatched) => $"""
        SELECT COUNT(CASE WHEN dead_lettered_at IS NULL THEN 1 END),
            COUNT(CASE WHEN dead_lettered_at IS NULL AND locked_until > @now THEN 1 END),
            COUNT(CASE WHEN dead_lettered_at IS NOT NULL THEN 1 END),
            MIN(CASE WHEN dead_lettered_at IS NULL THEN created_at END)
        FROM {table} WHERE {notDispatched}
        """;

    /// <summary>Writes <see cref="DestinationStatisticsSql"/> in standard SQL, for databases that sort NULL first (ascending).</summary>
    /// <param name="table">The table as SQL writes it.</param>
    /// <param name="notDispatched">The condition that a row is not dispatched, for example <c>dispatched = 0</c>.</param>
    /// <returns>The query.</returns>
    protected static string StandardDestinationStatisticsSql(string table, string notDispatched) => $"""
        SELECT destination,
            COUNT(CASE WHEN dead_lettered_at IS NULL THEN 1 END),
            COUNT(CASE WHEN dead_lettered_at IS NOT NULL THEN 1 END),
            MIN(CASE WHEN dead_lettered_at IS NULL THEN created_at END)
        FROM {table} WHERE {notDispatched}
        GROUP BY destination ORDER BY destination
        """;

    private const string MessageColumns = "id, message_id, payload, options, headers, created_at, attempts, ordering_key, destination";

    private static string IdFilter(string? idList) => idList is null ? string.Empty : $" AND id IN ({idList})";

    private static void Fill(OutboxValues target, string? json)
    {
        foreach (var (key, value) in OutboxValues.FromJson(json))
        {
            target[key] = value;
        }
    }
}
