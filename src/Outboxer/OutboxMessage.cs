namespace Outboxer;

/// <summary>
/// A message written to the outbox in the same database transaction as the business change that caused it,
/// and later published to an event stream by the dispatcher.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="Options"/> carry routing parameters for the event stream (for example the exchange, queue, stream or topic to
/// publish to, under the keys the publisher package defines); <see cref="Headers"/> become the broker message's headers or attributes.
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
    private string? _orderingKey;
    private string? _destination;

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
    /// Gets or sets the message id sent to the broker (as a message property or attribute), which consumers use
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

    /// <summary>
    /// Gets or sets the token of the claim that holds the message: set by <see cref="Providers.IOutboxStore.ClaimAsync"/>, given back when
    /// the message is marked, released or dead-lettered, so that only the claim that still holds it can settle it. 0 when not claimed.
    /// </summary>
    public long LeaseToken { get; set; }

    /// <summary>
    /// Gets or sets the ordering key: messages with the same key are published one at a time, in the order they were committed,
    /// across every dispatcher; messages with different keys (or none) go in parallel, and a failing key pauses only itself.
    /// Publishers for brokers that have the notion use it as theirs: a partition key, a message group, an ordering key.
    /// </summary>
    /// <value>At most 255 characters; <see langword="null"/> (the default) for no ordering.</value>
    /// <exception cref="ArgumentException">The value is empty, longer than 255 characters, or has U+0000 or half a surrogate pair.</exception>
    public string? OrderingKey
    {
        get => _orderingKey;
        set
        {
            if (value is { Length: 0 or > MaxOrderingKeyLength })
            {
                throw new ArgumentException($"An ordering key must have 1 to {MaxOrderingKeyLength} characters, but it has {value.Length}.", nameof(value));
            }

            CheckText(value, "An ordering key");
            _orderingKey = value;
        }
    }

    /// <summary>Gets or sets the failure of the last attempt to publish the message, or <see langword="null"/>.</summary>
    public string? LastError { get; set; }

    /// <summary>
    /// Gets or sets when the message was moved to the dead letters (after <see cref="OutboxOptions.MaxAttempts"/> attempts, or at once
    /// for a failure that cannot succeed), or <see langword="null"/>. Dead letters are kept, not published, until requeued or purged.
    /// </summary>
    public DateTimeOffset? DeadLetteredAt { get; set; }

    /// <summary>
    /// Gets or sets how many attempts to publish the message had an unknown outcome: the publish was sent but no confirm came (a
    /// timeout, a connection lost while waiting). Such an attempt is retried and never makes the message a dead letter by itself, but a
    /// later attempt can still fail for sure: a dead letter with a count above zero <b>may have reached the broker</b>, and requeueing it
    /// may publish it twice. Read from the store with the dead letters and <see cref="Providers.IOutboxAdministration.GetMessageAsync"/>.
    /// </summary>
    public int UncertainAttempts { get; set; }

    /// <summary>
    /// Refuses text a database column cannot store: U+0000 (PostgreSQL's text refuses it, which would abort the caller's transaction) and
    /// half a surrogate pair (not encodable as UTF-8), so that such a value fails here, before anything reaches the server.
    /// </summary>
    private static void CheckText(string? value, string what)
    {
        var bad = value is null ? -1 : FirstUnstorable(value);
        if (bad >= 0)
        {
            throw new ArgumentException(
                value![bad] == '\0'
                    ? $"{what} must not contain the character U+0000, found at index {bad}."
                    : $"{what} must be valid UTF-16, but has half a surrogate pair (U+{(int)value[bad]:X4}) at index {bad}.",
                nameof(value));
        }
    }

    /// <summary>
    /// A copy of what publishing reads (the payload bytes too), so that a caller who changes the message after enqueueing does not
    /// change what the dispatcher publishes from memory after the commit.
    /// </summary>
    internal OutboxMessage SnapshotForPublish()
    {
        var copy = new OutboxMessage((byte[])_payload.Clone())
        {
            Id = Id,
            MessageId = MessageId,
            CreatedAt = CreatedAt,
            Attempts = Attempts,
            LeaseToken = LeaseToken,
            _orderingKey = _orderingKey,
            _destination = _destination,
        };
        foreach (var (key, value) in Options)
        {
            copy.Options[key] = value;
        }

        foreach (var (key, value) in Headers)
        {
            copy.Headers[key] = value;
        }

        return copy;
    }

    /// <summary>Gets the index of the first U+0000 or half surrogate pair in <paramref name="value"/>, or -1.</summary>
    internal static int FirstUnstorable(string value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                i++;
            }
            else if (c == '\0' || char.IsSurrogate(c))
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>The longest <see cref="OrderingKey"/> accepted.</summary>
    public const int MaxOrderingKeyLength = 255;

    /// <summary>The longest <see cref="Destination"/> accepted.</summary>
    public const int MaxDestinationLength = 255;

    /// <summary>
    /// Gets or sets the name of the place the message goes (an exchange, a queue, a stream, a topic), for statistics per destination,
    /// telemetry and logs. It does not route the message: the event stream routes by <see cref="Options"/>. When it is
    /// <see langword="null"/> on enqueue, the outbox asks its event stream (<c>IOutboxPublisher.GetDestinationName</c>); it is stored
    /// with the message.
    /// </summary>
    /// <value>At most 255 characters, or <see langword="null"/> (the default) when unknown.</value>
    /// <exception cref="ArgumentException">The value is empty, longer than 255 characters, or has U+0000 or half a surrogate pair.</exception>
    public string? Destination
    {
        get => _destination;
        set
        {
            if (value is { Length: 0 or > MaxDestinationLength })
            {
                throw new ArgumentException($"A destination must have 1 to {MaxDestinationLength} characters, but it has {value.Length}.", nameof(value));
            }

            CheckText(value, "A destination");
            _destination = value;
        }
    }

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

    /// <summary>Gets the routing options read by the event stream, such as the name of its destination.</summary>
    public OutboxValues Options { get; } = new();

    /// <summary>Gets the headers sent with the message (the broker message's headers or attributes).</summary>
    public OutboxValues Headers { get; } = new();
}
