using System.Text;

namespace Outboxer.RabbitMQ;

/// <summary>
/// Settings of a <see cref="RabbitMQPublisher"/> that apply to every message. Per-message routing comes from the message's
/// <see cref="OutboxMessage.Options"/> (see <see cref="RabbitMQOptionKeys"/>). The values are copied and validated when the publisher
/// is created.
/// </summary>
public sealed class RabbitMQPublisherOptions
{
    /// <summary>Gets or sets the AMQP <c>content-type</c> of messages whose options have no <see cref="RabbitMQOptionKeys.ContentType"/>.</summary>
    /// <value>The default value is <c>application/octet-stream</c>. Must not be empty, and at most 255 bytes in UTF-8.</value>
    public string DefaultContentType { get; set; } = "application/octet-stream";

    /// <summary>
    /// Gets or sets a value indicating whether messages are published with the persistent delivery mode, so that a durable queue
    /// keeps them across a broker restart.
    /// </summary>
    /// <value>The default value is <see langword="true"/>. The Go outboxer published transient messages.</value>
    public bool Persistent { get; set; } = true;

    /// <summary>
    /// Gets or sets a value indicating whether messages are published as mandatory, so that a message no queue receives fails with a
    /// non-transient <see cref="OutboxException"/> instead of being dropped by the broker.
    /// </summary>
    /// <value>The default value is <see langword="true"/>. The Go outboxer did not set it, so unroutable messages were lost.</value>
    public bool Mandatory { get; set; } = true;

    /// <summary>
    /// Gets or sets a value indicating whether the publisher declares each exchange (from the message's <c>exchange.*</c> options)
    /// before its first publish to it. Each exchange is declared once, and again after the publishing channel was closed (a lost
    /// connection, a broker restart), not once per message. The default exchange <c>""</c> and the predefined <c>amq.*</c> exchanges
    /// are never declared.
    /// </summary>
    /// <value>
    /// The default value is <see langword="true"/>, as in the Go outboxer. Set it to <see langword="false"/> when the exchanges are
    /// managed elsewhere or the user may not configure them; publishing to a missing exchange then fails with a non-transient
    /// <see cref="OutboxException"/>.
    /// </value>
    public bool DeclareExchanges { get; set; } = true;

    /// <summary>Checks every value and throws for the first one that is invalid.</summary>
    /// <exception cref="ArgumentException">A value is invalid; the message names the property and its value.</exception>
    public void Validate()
    {
        const string name = $"{nameof(RabbitMQPublisherOptions)}.{nameof(DefaultContentType)}";
        if (string.IsNullOrWhiteSpace(DefaultContentType))
        {
            throw new ArgumentException($"{name} must not be empty, but it is '{DefaultContentType}'.", name);
        }

        if (Encoding.UTF8.GetByteCount(DefaultContentType) > 255)
        {
            throw new ArgumentException($"{name} must be at most 255 bytes in UTF-8 (an AMQP short string), but it is '{DefaultContentType}'.", name);
        }
    }

    internal RabbitMQPublisherOptions Clone() => (RabbitMQPublisherOptions)MemberwiseClone();
}
