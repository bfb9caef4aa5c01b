namespace Outboxer;

/// <summary>
/// A message written to the outbox in the same database transaction as the business change that caused it,
/// and later published to an event stream by the dispatcher.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="Options"/> carry routing parameters for the event stream (for example <c>exchange.name</c> and
/// <c>routing_key</c> for RabbitMQ); <see cref="Headers"/> become the broker message's headers or attributes.
/// Both are stored as JSON. After a round trip through the database each value keeps its JSON type:
/// integers come back as <see cref="long"/>, other numbers as <see cref="double"/>, booleans as
/// <see cref="bool"/>, strings as <see cref="string"/>.
/// </para>
/// <para>
/// The counterpart of the Go outboxer's <c>OutboxMessage</c>, plus a <see cref="MessageId"/> that is sent to the
/// broker so consumers can deduplicate, and a <see cref="CreatedAt"/> time.
/// </para>
/// </remarks>
public sealed class OutboxMessage
{
    private byte[] _payload;

    /// <summary>Initializes a new message with the given payload.</summary>
    /// <param name="payload">The message body, sent to the broker unchanged.</param>
    /// <exception cref="ArgumentNullException"><paramref name="payload"/> is <see langword="null"/>.</exception>
    public OutboxMessage(byte[] payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        _payload = payload;
    }

    /// <summary>Initializes a new message whose payload is the UTF-8 encoding of <paramref name="payload"/>.</summary>
    /// <param name="payload">The message body as text.</param>
    /// <exception cref="ArgumentNullException"><paramref name="payload"/> is <see langword="null"/>.</exception>
    public OutboxMessage(string payload)
        : this(System.Text.Encoding.UTF8.GetBytes(payload ?? throw new ArgumentNullException(nameof(payload))))
    {
    }

    /// <summary>
    /// Gets or sets the database id of the message. Assigned by the database when the message is enqueued;
    /// zero before that.
    /// </summary>
    public long Id { get; set; }

    /// <summary>
    /// Gets or sets the message id sent to the broker (for example the AMQP <c>message-id</c>), which consumers use
    /// to deduplicate. When left <see cref="Guid.Empty"/>, a version 7 <see cref="Guid"/> is generated on enqueue.
    /// </summary>
    public Guid MessageId { get; set; }

    /// <summary>Gets or sets a value indicating whether the broker confirmed the message.</summary>
    public bool Dispatched { get; set; }

    /// <summary>Gets or sets when the broker confirmed the message, or <see langword="null"/> while it is pending.</summary>
    public DateTimeOffset? DispatchedAt { get; set; }

    /// <summary>
    /// Gets or sets when the message was enqueued. When left at its default value it is set from the outbox's
    /// <see cref="TimeProvider"/> on enqueue.
    /// </summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>Gets or sets how many times the dispatcher has claimed the message for publishing.</summary>
    public int Attempts { get; set; }

    /// <summary>Gets or sets the message body, sent to the broker unchanged.</summary>
    /// <exception cref="ArgumentNullException">The value is <see langword="null"/>.</exception>
    public byte[] Payload
    {
        get => _payload;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            _payload = value;
        }
    }

    /// <summary>Gets the routing options read by the event stream, such as <c>exchange.name</c>.</summary>
    public OutboxValues Options { get; } = new();

    /// <summary>Gets the headers sent with the message (AMQP headers, SQS message attributes, ...).</summary>
    public OutboxValues Headers { get; } = new();
}
