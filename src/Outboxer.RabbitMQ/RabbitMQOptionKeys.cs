namespace Outboxer.RabbitMQ;

/// <summary>
/// The keys of <see cref="OutboxMessage.Options"/> that <see cref="RabbitMQPublisher"/> reads. The strings are the Go outboxer's
/// (<c>es/amqp</c>), so rows written by it publish the same way.
/// </summary>
/// <remarks>
/// Values may be of any type that means the same thing after the JSON round trip: a boolean option accepts <see langword="true"/>
/// or the string <c>"true"</c>. A value of a wrong type fails the message with a non-transient <see cref="OutboxException"/>
/// that names the key; it never crashes the dispatcher.
/// </remarks>
public static class RabbitMQOptionKeys
{
    /// <summary>
    /// The name of the exchange to publish to (Go: <c>ExchangeNameOption</c>). The default is <c>""</c>, the default exchange, which
    /// delivers straight to the queue named by <see cref="RoutingKey"/>.
    /// </summary>
    public const string ExchangeName = "exchange.name";

    /// <summary>The type of the exchange, used when declaring it (Go: <c>ExchangeTypeOption</c>). The default is <c>"topic"</c>.</summary>
    public const string ExchangeType = "exchange.type";

    /// <summary>Whether the exchange survives a broker restart, used when declaring it (Go: <c>ExchangeDurable</c>). The default is <see langword="true"/>.</summary>
    public const string ExchangeDurable = "exchange.durable";

    /// <summary>
    /// Whether the broker deletes the exchange when its last binding is removed, used when declaring it (Go: <c>ExchangeAutoDelete</c>).
    /// The default is <see langword="false"/>.
    /// </summary>
    public const string ExchangeAutoDelete = "exchange.auto_delete";

    /// <summary>
    /// Whether the exchange is internal (Go: <c>ExchangeInternal</c>). The default is <see langword="false"/>. RabbitMQ refuses
    /// publishes to an internal exchange, so <see langword="true"/> fails the message with a non-transient <see cref="OutboxException"/>.
    /// </summary>
    public const string ExchangeInternal = "exchange.internal";

    /// <summary>
    /// The Go outboxer's <c>ExchangeNoWait</c>. The default is <see langword="false"/>. The value is checked but not used: the
    /// publisher always waits for the broker to confirm a declaration before it publishes to the exchange.
    /// </summary>
    public const string ExchangeNoWait = "exchange.no_wait";

    /// <summary>The routing key (Go: <c>RoutingKeyOption</c>). The default is <c>""</c>.</summary>
    public const string RoutingKey = "routing_key";

    /// <summary>
    /// The AMQP <c>content-type</c> of the message. Not in the Go outboxer, which always sent <c>text/plain</c>. When absent or empty,
    /// <see cref="RabbitMQPublisherOptions.DefaultContentType"/> is used.
    /// </summary>
    public const string ContentType = "content_type";
}
