using System.Data;
using System.Data.Common;
using System.Globalization;
using Npgsql;
using NpgsqlTypes;
using Outboxer.Providers;

namespace Outboxer.PostgreSql;

/// <summary>
/// The enqueue side of an outbox in log mode: writes each message into PostgreSQL's write-ahead log with
/// <c>pg_logical_emit_message(true, prefix, envelope)</c> in the caller's transaction, and into no table. The message is decoded (and
/// so relayed by <see cref="PostgreSqlLogRelay"/>) only if that transaction commits, in commit order.
/// </summary>
/// <remarks>
/// <para>
/// Use it as the writer of an <see cref="Outbox"/> that only enqueues (<c>new Outbox(writer)</c>): <c>EnqueueAsync</c> (with a
/// <see cref="DbTransaction"/>, or a connection inside a <c>TransactionScope</c>), <c>EnqueueManyAsync</c>, <c>SendAsync</c> and
/// <c>SendWithinTransactionAsync</c> work as with a table. The message is checked exactly as the PostgreSQL table store checks it,
/// before anything reaches the server, so a refused message leaves the caller's transaction usable.
/// </para>
/// <para>
/// <b>Ids.</b> There is no row, so there is no row id: <see cref="AddAsync(DbTransaction, OutboxMessage, CancellationToken)"/> returns
/// (and sets as <see cref="OutboxMessage.Id"/>) the log sequence number where the message was written, as a 64-bit integer, and the relay
/// hands the same number to the publisher. It is unique in the database cluster and increases within a transaction, but not across
/// transactions in commit order (a transaction that began writing earlier may commit later). Consumers deduplicate with
/// <see cref="OutboxMessage.MessageId"/>, as with a table.
/// </para>
/// <para>
/// <b>Status.</b> As an <see cref="IOutboxStatusReport"/> (which the dashboard shows), the writer reads its slot's
/// <see cref="PostgreSqlLogStatus"/>: the lag in bytes and seconds, the write-ahead log it retains, its <c>wal_status</c>, the relay that
/// consumes it, the dead letters and every problem.
/// </para>
/// <para>The writer does not own the <see cref="NpgsqlDataSource"/>: dispose it yourself.</para>
/// </remarks>
public sealed class PostgreSqlLogWriter : IOutboxWriter, IOutboxStatusReport
{
    private const string EmitSql = "SELECT pg_logical_emit_message(true, $1, $2)";
    private const string EmitManySql = "SELECT pg_logical_emit_message(true, $1, m) FROM unnest($2::bytea[]) AS m";

    private readonly NpgsqlDataSource _dataSource;
    private readonly string _prefix;
    private readonly Lazy<string?> _database;
    private readonly PostgreSqlLogSetup _setup;

    /// <summary>Initializes a writer into the write-ahead log of the database that <paramref name="dataSource"/> connects to.</summary>
    /// <param name="dataSource">
    /// The database's data source: it names the database a caller's transaction must be on, and <c>SendAsync</c> opens its connections from it.
    /// </param>
    /// <param name="options">
    /// The settings (the prefix to write with; the slot and dead-letter table for the status); <see langword="null"/> for the defaults.
    /// </param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; <see cref="ArgumentException.ParamName"/> names it.</exception>
    public PostgreSqlLogWriter(NpgsqlDataSource dataSource, PostgreSqlLogOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        _dataSource = dataSource;
        _prefix = (options ?? new PostgreSqlLogOptions()).Validate().Prefix;
        _setup = new PostgreSqlLogSetup(dataSource, options);
        _database = new Lazy<string?>(() =>
        {
            using var probe = dataSource.CreateConnection();
            return string.IsNullOrEmpty(probe.Database) ? null : probe.Database;
        });
    }

    /// <summary>Gets the prefix the writer's messages carry in the log.</summary>
    public string Prefix => _prefix;

    // The two overloads of IOutboxWriter.AddAsync, told apart by the type of their first parameter.
#pragma warning disable RS0026
    /// <summary>
    /// Writes <paramref name="message"/> into the write-ahead log within <paramref name="transaction"/>: it is relayed only if the
    /// transaction commits.
    /// </summary>
    /// <param name="transaction">An open transaction of this writer's database.</param>
    /// <param name="message">The message; its <see cref="OutboxMessage.MessageId"/> and <see cref="OutboxMessage.CreatedAt"/> are already set.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The log sequence number of the message (see the remarks of <see cref="PostgreSqlLogWriter"/>), also set as <see cref="OutboxMessage.Id"/>.</returns>
    /// <exception cref="ArgumentException">
    /// The transaction is not Npgsql's, is completed, or is on another database; or the message cannot be stored.
    /// </exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async ValueTask<long> AddAsync(DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ArgumentNullException.ThrowIfNull(message);
        var connection = CheckTransaction(transaction);
        var envelope = Serialize(message);
        return await EmitAsync(connection, (NpgsqlTransaction)transaction, message, envelope, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Writes <paramref name="message"/> into the write-ahead log on <paramref name="connection"/>, which is enlisted in the caller's
    /// ambient transaction (a <c>TransactionScope</c>): it is relayed only if the scope completes.
    /// </summary>
    /// <param name="connection">An open Npgsql connection to this writer's database, opened inside the transaction scope.</param>
    /// <param name="message">The message.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The log sequence number of the message, also set as <see cref="OutboxMessage.Id"/>.</returns>
    /// <exception cref="ArgumentException">The connection is not Npgsql's, is not open, or is on another database; or the message cannot be stored.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async ValueTask<long> AddAsync(DbConnection connection, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(message);
        if (connection is not NpgsqlConnection npgsql)
        {
            throw new ArgumentException($"The connection is a {connection.GetType().FullName}, which the PostgreSQL log writer cannot write to; it writes through {typeof(NpgsqlConnection).FullName}.", nameof(connection));
        }

        CheckSameDatabase(connection, nameof(connection));
        if (connection.State != ConnectionState.Open)
        {
            throw new ArgumentException($"The connection is {connection.State}; open it inside the transaction scope first.", nameof(connection));
        }

        var envelope = Serialize(message);
        return await EmitAsync(npgsql, null, message, envelope, cancellationToken).ConfigureAwait(false);
    }
#pragma warning restore RS0026

    /// <summary>
    /// Writes many messages into the write-ahead log within <paramref name="transaction"/> in one statement (one round trip), after
    /// checking every one of them. Sets each <see cref="OutboxMessage.Id"/> to its log sequence number.
    /// </summary>
    /// <param name="transaction">An open transaction of this writer's database.</param>
    /// <param name="messages">The messages, in order; they are relayed in this order.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were written.</returns>
    /// <exception cref="ArgumentException">The transaction is completed or of another database, or a message is null or cannot be stored.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async ValueTask<int> AddRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        ArgumentNullException.ThrowIfNull(messages);
        var connection = CheckTransaction(transaction);
        var envelopes = new byte[messages.Count][];
        for (var i = 0; i < envelopes.Length; i++)
        {
            envelopes[i] = Serialize(messages[i] ?? throw new ArgumentException($"messages[{i}] is null.", nameof(messages)));
        }

        if (envelopes.Length == 0)
        {
            return 0;
        }

        var command = Command(connection, (NpgsqlTransaction)transaction, EmitManySql);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = _prefix, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = envelopes, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea });
            try
            {
                var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    var i = 0;
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false) && i < messages.Count)
                    {
                        messages[i++].Id = (long)(ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(0);
                    }
                }
            }
            catch (NpgsqlException ex)
            {
                throw new OutboxException($"Could not write {messages.Count} messages into the write-ahead log: {ex.Message}", ex.IsTransient, ex);
            }
        }

        return messages.Count;
    }

    /// <summary>
    /// Opens a connection and a transaction of its own, runs <paramref name="work"/> with the transaction (when given), writes
    /// <paramref name="message"/> into the write-ahead log and commits. When <paramref name="work"/> throws, rolls back and rethrows,
    /// and nothing is relayed.
    /// </summary>
    /// <param name="message">The message.</param>
    /// <param name="work">The caller's statements to run in the same transaction, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The log sequence number of the message.</returns>
    /// <exception cref="ArgumentException">The message cannot be stored.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        var envelope = Serialize(message);
        NpgsqlConnection connection;
        try
        {
            connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (NpgsqlException ex)
        {
            throw new OutboxException($"Could not open a connection to write into the write-ahead log: {ex.Message}", ex.IsTransient, ex);
        }

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

                    var id = await EmitAsync(connection, transaction, message, envelope, cancellationToken).ConfigureAwait(false);
                    try
                    {
                        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                    }
                    catch (NpgsqlException ex)
                    {
                        throw new OutboxException($"Could not commit the message into the write-ahead log: {ex.Message}", ex.IsTransient, ex);
                    }

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

    /// <inheritdoc/>
    public string StatusTitle => "Log mode";

    /// <summary>Reads the slot's <see cref="PostgreSqlLogStatus"/> and describes it: slot, lag, retained log, relay, dead letters and problems.</summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The items, in the order to show them; each problem is an item of its own.</returns>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async Task<IReadOnlyList<OutboxStatusItem>> GetStatusAsync(CancellationToken cancellationToken = default)
    {
        var status = await _setup.GetStatusAsync(cancellationToken).ConfigureAwait(false);
        return Describe(status);
    }

    /// <summary>Turns a status into the items a dashboard shows.</summary>
    internal static List<OutboxStatusItem> Describe(PostgreSqlLogStatus status)
    {
        const string None = "\u2014";
        static string Bytes(long? bytes) => bytes is { } b ? b.ToString("N0", CultureInfo.InvariantCulture) + " bytes" : None;
        var items = new List<OutboxStatusItem>
        {
            new("Slot", status.SlotName + (status.SlotExists ? string.Empty : " (missing)"), !status.SlotExists),
            new("Lag", Bytes(status.LagBytes)),
            new("Lag (seconds)", status.LagSeconds is { } seconds ? seconds.ToString("0.###", CultureInfo.InvariantCulture) + " s" : None),
            new("Retained WAL", Bytes(status.RetainedWalBytes)),
            new("WAL status", status.WalStatus ?? None, status.WalStatus is "unreserved" or "lost"),
            new("Safe WAL size", status.SafeWalSizeBytes is null ? "unlimited" : Bytes(status.SafeWalSizeBytes)),
            new("Relay", status.Active ? "active" + (status.ActivePid is { } pid ? " (pid " + pid.ToString(CultureInfo.InvariantCulture) + ")" : string.Empty) : "none"),
            new("Dead letters", status.DeadLetters.ToString("N0", CultureInfo.InvariantCulture), status.DeadLetters > 0),
        };
        foreach (var problem in status.Problems)
        {
            items.Add(new OutboxStatusItem("Problem", problem, isProblem: true));
        }

        return items;
    }

    /// <summary>Checks the message as the PostgreSQL table store does (so that both modes accept the same messages) and writes its envelope.</summary>
    private static byte[] Serialize(OutboxMessage message)
    {
        var row = SerializedMessage.Create(message);
        PostgreSqlDialect.ValidateJson(row);
        return LogEnvelope.Write(row);
    }

    private async Task<long> EmitAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, OutboxMessage message, byte[] envelope, CancellationToken cancellationToken)
    {
        var command = Command(connection, transaction, EmitSql);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = _prefix, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = envelope, NpgsqlDbType = NpgsqlDbType.Bytea });
            try
            {
                var lsn = (NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
                message.Id = (long)(ulong)lsn;
                return message.Id;
            }
            catch (NpgsqlException ex)
            {
                throw new OutboxException($"Could not write the message into the write-ahead log: {ex.Message}", ex.IsTransient, ex);
            }
        }
    }

    private static NpgsqlCommand Command(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql)
    {
        var command = new NpgsqlCommand(sql, connection);
        try
        {
            command.Transaction = transaction;
        }
        catch (InvalidOperationException ex)
        {
            // Npgsql keeps a committed transaction's Connection and refuses it here instead.
            command.Dispose();
            throw new ArgumentException("The transaction is already committed or rolled back; enqueue inside an open transaction.", nameof(transaction), ex);
        }

        return command;
    }

    private NpgsqlConnection CheckTransaction(DbTransaction transaction)
    {
        if (transaction is not NpgsqlTransaction)
        {
            throw new ArgumentException(
                $"The transaction is a {transaction.GetType().FullName}, which the PostgreSQL log writer cannot write to; begin it on an Npgsql connection to the outbox's database.",
                nameof(transaction));
        }

        var connection = RelationalOutboxStore.OpenConnectionOf(transaction);
        CheckSameDatabase(connection, nameof(transaction));
        return (NpgsqlConnection)connection;
    }

    /// <summary>
    /// Refuses a connection to another database than the writer's: its messages would go into that database's log, which this outbox's
    /// relay does not read (checked from the connections themselves, without a round trip).
    /// </summary>
    private void CheckSameDatabase(DbConnection connection, string paramName)
    {
        var own = _database.Value;
        var theirs = string.IsNullOrEmpty(connection.Database) ? null : connection.Database;
        if (own is not null && theirs is not null && !string.Equals(own, theirs, StringComparison.Ordinal))
        {
            throw new ArgumentException(
                $"The transaction is on the database '{theirs}', but the outbox's log is read in '{own}'; begin it on a connection to the outbox's database.",
                paramName);
        }
    }
}
