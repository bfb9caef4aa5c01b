namespace Outboxer.Providers;

/// <summary>
/// Where outbox messages are published: a broker or event stream. The counterpart of the Go outboxer's <c>EventStream</c>.
/// Implementations must be safe for concurrent use: the dispatcher publishes a batch's messages concurrently.
/// </summary>
public interface IOutboxPublisher
{
    /// <summary>
    /// Publishes <paramref name="message"/> and completes only when the broker has confirmed it (for RabbitMQ, the publisher
    /// confirm). Throws when the broker refused the message or could not be reached; the message is then retried.
    /// </summary>
    /// <param name="message">The message to publish, with its routing <see cref="OutboxMessage.Options"/> and <see cref="OutboxMessage.Headers"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the broker confirmed the message.</returns>
    ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default);

    /// <summary>
    /// Gets the name of the place <paramref name="message"/> goes (an exchange, a queue, a stream, a topic), which the outbox records with
    /// the message for statistics per destination, telemetry (<c>messaging.destination.name</c>) and logs. Cheap and free of side
    /// effects; never throws for a message whose options are missing or invalid.
    /// </summary>
    /// <param name="message">The message about to be enqueued.</param>
    /// <returns>The destination's name, or <see langword="null"/> when the publisher cannot tell (the default).</returns>
    string? GetDestinationName(OutboxMessage message) => null;
}
