namespace Outboxer.Providers;

/// <summary>
/// An event stream with a batch API: one request carries many messages. When a publisher implements it, the dispatcher hands it each
/// claimed batch in one call instead of publishing message by message. <see cref="OrderedBatchSplitter"/> helps split a batch into
/// requests without letting a message overtake an earlier one of its ordering key.
/// </summary>
public interface IOutboxBatchPublisher : IOutboxPublisher
{
    /// <summary>
    /// Publishes <paramref name="messages"/> (oldest first), grouping and splitting them as the broker's limits require, and completes
    /// when the broker answered for every one. A message that failed does not fail the others.
    /// </summary>
    /// <param name="messages">The batch, in id order.</param>
    /// <param name="cancellationToken">A token to stop waiting; the broker may still receive some messages.</param>
    /// <returns>
    /// One entry per message, at the same index: <see langword="null"/> when the broker confirmed it, otherwise the exception it failed
    /// with (an <see cref="OutboxException"/> whose <see cref="OutboxException.IsTransient"/> says whether a retry may help).
    /// </returns>
    /// <remarks>Throwing instead of returning fails every message of the batch with that exception.</remarks>
    Task<IReadOnlyList<Exception?>> PublishBatchAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default);
}
