namespace Outboxer.Redis;

/// <summary>
/// Settings of a <see cref="RedisPublisher"/> that apply to every message. Per-message routing and trimming come from the message's
/// <see cref="OutboxMessage.Options"/> (see <see cref="RedisOptionKeys"/>). The values are copied and validated when the publisher is
/// created.
/// </summary>
public sealed class RedisPublisherOptions
{
    /// <summary>The smallest <see cref="MaxMessageSize"/>.</summary>
    public const int MinMessageSizeLimit = 1_024;

    /// <summary>
    /// Gets or sets the stream that messages without a <see cref="RedisOptionKeys.Stream"/> option are appended to.
    /// </summary>
    /// <value>
    /// The default value is <see langword="null"/>: every message must name its stream, and one that does not fails with a
    /// non-transient <see cref="OutboxException"/>. Must not be empty.
    /// </value>
    public string? DefaultStream { get; set; }

    /// <summary>
    /// Gets or sets how long Redis remembers that a message (by its <see cref="OutboxMessage.MessageId"/> and stream) was appended, so
    /// that publishing it again within that time (a retry after a lost reply, or after the relay crashed before it marked the message
    /// sent) appends nothing. The check and the append are one Lua script, so they are atomic. Each message costs one key with this
    /// expiry (see the package README for the memory it takes).
    /// </summary>
    /// <value>
    /// The default value is 10 minutes, longer than the outbox's default lease (30 s) and retry delays, so that a message retried after
    /// a crash or a lost reply is still remembered. <see langword="null"/> or <see cref="TimeSpan.Zero"/> switches deduplication off:
    /// then every publish appends an entry. Must not be negative, and must be whole milliseconds.
    /// </value>
    public TimeSpan? DeduplicationWindow { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Gets or sets the start of the deduplication keys: a message's key is this prefix, the stream's hash slot tag in braces and
    /// the message id, for example <c>outboxer:dedup:{orders}:0193...</c>, so that it lives in the stream's hash slot (Redis Cluster).
    /// </summary>
    /// <value>The default value is <c>outboxer:dedup:</c>. Must not be empty, and must not contain <c>{</c> or <c>}</c>.</value>
    public string DeduplicationKeyPrefix { get; set; } = "outboxer:dedup:";

    /// <summary>
    /// Gets or sets the largest entry, in bytes, that the publisher appends: the UTF-8 names and values of all its fields (the payload,
    /// the message id, the headers). A larger message fails at once with a non-transient <see cref="OutboxException"/> instead of
    /// being sent: Redis refuses an argument longer than its <c>proto-max-bulk-len</c> setting by closing the connection, which would
    /// fail every command in flight on it.
    /// </summary>
    /// <value>
    /// The default value is 536,870,912 (512 MiB), Redis's default <c>proto-max-bulk-len</c>. Lower it to the server's setting when that
    /// is lower. At least <see cref="MinMessageSizeLimit"/>.
    /// </value>
    public int MaxMessageSize { get; set; } = 536_870_912;

    /// <summary>Checks every value and throws for the first one that is invalid.</summary>
    /// <exception cref="ArgumentException">A value is invalid; the message names the property and its value.</exception>
    public void Validate()
    {
        if (DefaultStream is { Length: 0 })
        {
            const string name = $"{nameof(RedisPublisherOptions)}.{nameof(DefaultStream)}";
            throw new ArgumentException($"{name} must be null or a stream key, but it is ''.", name);
        }

        if (DeduplicationWindow is { } window && (window < TimeSpan.Zero || window.Ticks % TimeSpan.TicksPerMillisecond != 0))
        {
            const string name = $"{nameof(RedisPublisherOptions)}.{nameof(DeduplicationWindow)}";
            throw new ArgumentException($"{name} must be null, zero (off) or a positive whole number of milliseconds, but it is {window}.", name);
        }

        if (string.IsNullOrEmpty(DeduplicationKeyPrefix) || DeduplicationKeyPrefix.AsSpan().IndexOfAny('{', '}') >= 0)
        {
            const string name = $"{nameof(RedisPublisherOptions)}.{nameof(DeduplicationKeyPrefix)}";
            throw new ArgumentException($"{name} must not be empty or contain '{{' or '}}' (the hash slot tag is added after it), but it is '{DeduplicationKeyPrefix}'.", name);
        }

        if (MaxMessageSize < MinMessageSizeLimit)
        {
            const string name = $"{nameof(RedisPublisherOptions)}.{nameof(MaxMessageSize)}";
            throw new ArgumentException($"{name} must be at least {MinMessageSizeLimit} bytes, but it is {MaxMessageSize}.", name);
        }
    }

    internal RedisPublisherOptions Clone() => (RedisPublisherOptions)MemberwiseClone();

    internal long DeduplicationMilliseconds => DeduplicationWindow is { } window ? (long)window.TotalMilliseconds : 0;
}
