using System.Data.Common;

namespace Outboxer.Providers;

/// <summary>
/// Writes outbox messages in the application's transactions: the enqueue side of an outbox, which every store offers (a table that the
/// dispatcher later claims from, or a log that it reads). Implementations must be safe for concurrent use.
/// </summary>
public interface IOutboxWriter
{
    // The transaction and the connection overloads (shipped in 0.1.0-preview.1 on IOutboxStore) differ by the type of their first
    // parameter, which no optional parameter can blur.
#pragma warning disable RS0026
    /// <summary>
    /// Inserts <paramref name="message"/> within <paramref name="transaction"/>, which the caller opened and will commit or roll back.
    /// Sets <see cref="OutboxMessage.Id"/> and returns it.
    /// </summary>
    /// <param name="transaction">An open transaction of this store's database.</param>
    /// <param name="message">The message to insert; its <see cref="OutboxMessage.MessageId"/> and <see cref="OutboxMessage.CreatedAt"/> are already set.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the new row.</returns>
    /// <exception cref="ArgumentException">The transaction is completed, or belongs to another kind of database.</exception>
    ValueTask<long> AddAsync(DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default);

    /// <summary>
    /// Inserts <paramref name="message"/> on <paramref name="connection"/> with no explicit transaction: the connection is enlisted in the
    /// caller's ambient <c>System.Transactions</c> transaction (a <c>TransactionScope</c>), which decides whether the row commits.
    /// Sets <see cref="OutboxMessage.Id"/> and returns it.
    /// </summary>
    /// <param name="connection">An open connection of this store's database, opened inside the transaction scope.</param>
    /// <param name="message">The message to insert.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the new row.</returns>
    /// <exception cref="NotSupportedException">The store's database provider does not enlist in ambient transactions.</exception>
    ValueTask<long> AddAsync(DbConnection connection, OutboxMessage message, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} cannot join an ambient transaction (TransactionScope); enqueue within a DbTransaction instead.");

#pragma warning restore RS0026

    /// <summary>
    /// Inserts many messages within <paramref name="transaction"/> in as few round trips as the database allows (for example one binary
    /// <c>COPY</c>). Every message is validated before anything is written. The default implementation calls <see cref="AddAsync(DbTransaction, OutboxMessage, CancellationToken)"/> for each.
    /// </summary>
    /// <param name="transaction">An open transaction of this store's database.</param>
    /// <param name="messages">The messages, each with its <see cref="OutboxMessage.MessageId"/> and <see cref="OutboxMessage.CreatedAt"/> set.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were inserted.</returns>
    /// <exception cref="ArgumentException">The transaction is completed or of another database, or a message cannot be stored.</exception>
    async ValueTask<int> AddRangeAsync(DbTransaction transaction, IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        foreach (var message in messages)
        {
            await AddAsync(transaction, message, cancellationToken).ConfigureAwait(false);
        }

        return messages.Count;
    }

    /// <summary>
    /// Opens a connection and a transaction of its own, runs <paramref name="work"/> with the transaction (when given),
    /// inserts <paramref name="message"/> and commits. When <paramref name="work"/> throws, rolls back and rethrows, and nothing is written.
    /// </summary>
    /// <param name="message">The message to insert.</param>
    /// <param name="work">The caller's statements to run in the same transaction, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the new row.</returns>
    Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default);
}
