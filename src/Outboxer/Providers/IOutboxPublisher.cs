namespace Outboxer.Providers;

/// <summary>
/// Where outbox messages are published: a broker or event stream. The counterpart of the Go outboxer's <c>EventStream</c>.
/// Implementations must be safe for concurrent use: the dispatcher publishes a batch's messages concurrently.
/// </summary>
public interface IOutboxPublisher
{
    /// <summary>
    /// Publishes <paramref name="message"/> and completes only when the broker has confirmed it (for example with a publisher
    /// confirm or a successful answer to the send request). Throws when the broker refused the message or could not be reached; the
    /// message is then retried.
    /// </summary>
    /// <param name="message">The message to publish, with its routing <see cref="OutboxMessage.Options"/> and <see cref="OutboxMessage.Headers"/>.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when the broker confirmed the message.</returns>
    ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default);

    /// <summary>
    /// Gets the name of the place <paramref name="message"/> goes to, as this publisher would send it: an exchange (or, through a
    /// broker's default exchange, the queue), a queue, a stream or a topic. The outbox uses it to count messages per destination in
    /// its statistics, for the <c>messaging.destination.name</c> attribute of its telemetry, and in its logs.
    /// </summary>
    /// <param name="message">The message, with its routing <see cref="OutboxMessage.Options"/>.</param>
    /// <returns>
    /// The destination's name, including any default the publisher's own settings supply; or <see langword="null"/> when the publisher
    /// cannot tell, which is what the default implementation returns.
    /// </returns>
    /// <remarks>
    /// Implementations must be cheap and pure: no I/O, no change of state, safe for concurrent use. They must not throw for a message
    /// whose options are missing, of a wrong type or invalid; they return <see langword="null"/> then (publishing such a message fails
    /// with the reason).
    /// </remarks>
    string? GetDestinationName(OutboxMessage message) => null;
}
