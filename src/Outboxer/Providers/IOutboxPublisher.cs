using System.Net;

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

    /// <summary>
    /// Gets the name of the messaging system for the <c>messaging.system</c> attribute of the outbox's telemetry, one of the values
    /// OpenTelemetry's conventions register where there is one (<c>rabbitmq</c>, <c>aws_sqs</c>, <c>gcp_pubsub</c>, <c>kafka</c>, ...)
    /// and otherwise a short lowercase name (<c>aws.kinesis</c>, <c>redis</c>, <c>nats</c>).
    /// </summary>
    /// <value>The default implementation returns <see langword="null"/>: the attribute is left out.</value>
    string? MessagingSystem => null;

    /// <summary>
    /// Gets the broker's host name and port for the <c>server.address</c> and <c>server.port</c> attributes of the outbox's telemetry,
    /// or <see langword="null"/> when the publisher does not know a single address (a cluster, or a connection it did not open).
    /// </summary>
    /// <value>The default implementation returns <see langword="null"/>. Must be cheap and never throw; never includes credentials.</value>
    DnsEndPoint? ServerEndPoint => null;
}
