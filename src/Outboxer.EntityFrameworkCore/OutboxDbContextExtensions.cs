using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Outboxer.EntityFrameworkCore;

namespace Outboxer;

/// <summary>Adds outbox messages to a <see cref="DbContext"/> configured with <c>UseOutboxer</c>, to be written by its next <c>SaveChanges</c>.</summary>
/// <remarks>
/// Messages wait in the context, like tracked entities, until a <c>SaveChanges</c> writes them in its transaction. A <c>SaveChanges</c>
/// that fails leaves them waiting, so that retrying it writes them; rolling back the context's transaction discards them. Like a
/// <see cref="DbContext"/>, this is not thread-safe.
/// </remarks>
public static class OutboxDbContextExtensions
{
    /// <summary>
    /// Adds <paramref name="message"/> to be written by the next <c>SaveChanges</c> of <paramref name="context"/>, in the same transaction
    /// as the context's changes; it is published only if that transaction commits. Adding the same instance again does nothing.
    /// </summary>
    /// <param name="context">A context configured with <c>UseOutboxer</c>.</param>
    /// <param name="message">The message.</param>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">The context is not configured with <c>UseOutboxer</c>.</exception>
    public static void AddOutboxMessage(this DbContext context, OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        GetInterceptor(context).Add(message);
    }

    /// <summary>
    /// Adds <paramref name="messages"/>, in order, to be written by the next <c>SaveChanges</c> of <paramref name="context"/> in the same
    /// transaction as the context's changes (PostgreSQL writes them with one <c>COPY</c>). Instances already added are skipped.
    /// </summary>
    /// <param name="context">A context configured with <c>UseOutboxer</c>.</param>
    /// <param name="messages">The messages.</param>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">A message is <see langword="null"/>; none is added.</exception>
    /// <exception cref="InvalidOperationException">The context is not configured with <c>UseOutboxer</c>.</exception>
    public static void AddOutboxMessages(this DbContext context, IEnumerable<OutboxMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var interceptor = GetInterceptor(context);
        OutboxMessage[] list = [.. messages];
        for (var i = 0; i < list.Length; i++)
        {
            if (list[i] is null)
            {
                throw new ArgumentException($"messages[{i}] is null.", nameof(messages));
            }
        }

        foreach (var message in list)
        {
            interceptor.Add(message);
        }
    }

    /// <summary>Gets the messages waiting for the next <c>SaveChanges</c> of <paramref name="context"/>, in the order they were added.</summary>
    /// <param name="context">A context configured with <c>UseOutboxer</c>.</param>
    /// <returns>A copy of the waiting messages.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="context"/> is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">The context is not configured with <c>UseOutboxer</c>.</exception>
    public static IReadOnlyList<OutboxMessage> GetPendingOutboxMessages(this DbContext context) => GetInterceptor(context).Pending;

    /// <summary>
    /// Discards the messages waiting for the next <c>SaveChanges</c> of <paramref name="context"/>, for example together with
    /// <c>ChangeTracker.Clear()</c> after a failed save that will not be retried. Messages already written in an open transaction stay
    /// in it, and are published only if it commits.
    /// </summary>
    /// <param name="context">A context configured with <c>UseOutboxer</c>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="context"/> is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">The context is not configured with <c>UseOutboxer</c>.</exception>
    public static void ClearOutboxMessages(this DbContext context) => GetInterceptor(context).Clear();

    private static OutboxContextInterceptor GetInterceptor(DbContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.GetInfrastructure().GetService(typeof(OutboxContextInterceptor)) as OutboxContextInterceptor
            ?? throw new InvalidOperationException(
                $"{context.GetType().Name} is not configured for Outboxer: call UseOutboxer(outbox) on its DbContextOptionsBuilder, " +
                $"or AddOutboxer().UseEntityFrameworkCore<{context.GetType().Name}>() where the context is registered.");
    }
}
