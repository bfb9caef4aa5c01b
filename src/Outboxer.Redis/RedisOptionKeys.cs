namespace Outboxer.Redis;

/// <summary>The keys of <see cref="OutboxMessage.Options"/> that <see cref="RedisPublisher"/> reads.</summary>
/// <remarks>
/// Values may be of any type that means the same thing after the JSON round trip: a number option accepts <c>1000</c> or the string
/// <c>"1000"</c>, a boolean option <see langword="true"/> or <c>"true"</c>. A value of a wrong type or out of range fails the message
/// with a non-transient <see cref="OutboxException"/> that names the key and the value; it never crashes the dispatcher.
/// </remarks>
public static class RedisOptionKeys
{
    /// <summary>
    /// The key of the stream the message is appended to with <c>XADD</c>. The default is
    /// <see cref="RedisPublisherOptions.DefaultStream"/>; a message with neither fails with a non-transient <see cref="OutboxException"/>.
    /// A missing stream is created by the append.
    /// </summary>
    public const string Stream = "stream";

    /// <summary>
    /// Trims the stream to at most this many entries when the message is appended (<c>XADD ... MAXLEN</c>): a whole number, 0 or more.
    /// The default is no trimming. Cannot be combined with <see cref="MinId"/>.
    /// </summary>
    public const string MaxLength = "max_length";

    /// <summary>
    /// Trims the stream's entries whose ids are lower than this one when the message is appended (<c>XADD ... MINID</c>, Redis 6.2 or
    /// newer): a stream id, <c>&lt;milliseconds&gt;</c> or <c>&lt;milliseconds&gt;-&lt;sequence&gt;</c>. The default is no trimming. Cannot
    /// be combined with <see cref="MaxLength"/>.
    /// </summary>
    public const string MinId = "min_id";

    /// <summary>
    /// Whether trimming (<see cref="MaxLength"/>, <see cref="MinId"/>) is approximate (<c>~</c>): Redis then removes whole macro nodes
    /// only, which is much cheaper, and may keep a few more entries than asked. The default is <see langword="true"/>;
    /// <see langword="false"/> trims exactly (<c>=</c>). Without a trimming option it is still checked, and has no effect.
    /// </summary>
    public const string ApproximateTrim = "approximate_trim";
}
