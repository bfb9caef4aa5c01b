namespace Outboxer.PostgreSql;

/// <summary>Settings of a <see cref="PostgreSqlLogRelay"/>: batching, retries, takeover and heartbeat.</summary>
public sealed class PostgreSqlLogRelayOptions
{
    /// <summary>
    /// Gets or sets the most messages handed to the publisher at once (one <c>PublishBatchAsync</c> call for a batch publisher, otherwise
    /// concurrent publishes with pipelined confirms). The relay decodes the next batch while the broker confirms this one.
    /// </summary>
    /// <value>The default value is 500. 1 to 100,000.</value>
    public int BatchSize { get; set; } = 500;

    /// <summary>Gets or sets how long one attempt to publish a batch may take before its unconfirmed messages count as failed (transiently).</summary>
    /// <value>The default value is 30 seconds. At least 1 millisecond.</value>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Gets or sets the first wait before a transient failure (of a publish, the replication connection or the dead-letter table) is
    /// retried; each further failure in a row doubles it, up to <see cref="MaxRetryDelay"/>.
    /// </summary>
    /// <value>The default value is 1 second. At least 1 millisecond.</value>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Gets or sets the longest wait between retries.</summary>
    /// <value>The default value is 30 seconds. At least <see cref="RetryDelay"/>.</value>
    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Gets or sets how often a standby relay (another relay holds the slot: PostgreSQL allows one consumer per slot) tries to take the
    /// slot over. A relay that dies releases the slot when PostgreSQL notices its connection is gone: at once when its process ends,
    /// after <c>wal_sender_timeout</c> (60 seconds by default) when its host or network vanishes.
    /// </summary>
    /// <value>The default value is 2 seconds. At least 1 millisecond.</value>
    public TimeSpan TakeoverInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Gets or sets how often the active relay writes a heartbeat (an empty logical decoding message in a transaction of its own). The
    /// slot can be acknowledged only at a transaction the relay decoded; without heartbeats a database whose other writes the slot does
    /// not decode would keep its write-ahead log from the last outbox message on, however old.
    /// </summary>
    /// <value>The default value is 10 seconds. At least 1 millisecond.</value>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Checks every value and throws one exception listing every invalid one.</summary>
    /// <exception cref="ArgumentException">A value is out of range; the message names each option and its value.</exception>
    internal PostgreSqlLogRelayOptions Validate()
    {
        var errors = new List<string>();
        if (BatchSize is < 1 or > 100_000)
        {
            errors.Add($"{nameof(BatchSize)} must be 1 to 100000, but is {BatchSize}.");
        }

        Positive(PublishTimeout, nameof(PublishTimeout));
        Positive(RetryDelay, nameof(RetryDelay));
        Positive(TakeoverInterval, nameof(TakeoverInterval));
        Positive(HeartbeatInterval, nameof(HeartbeatInterval));
        if (MaxRetryDelay < RetryDelay)
        {
            errors.Add($"{nameof(MaxRetryDelay)} ({MaxRetryDelay}) must be at least {nameof(RetryDelay)} ({RetryDelay}).");
        }

        if (errors.Count > 0)
        {
            throw new ArgumentException($"{nameof(PostgreSqlLogRelayOptions)} are invalid: {string.Join(" ", errors)}", nameof(PostgreSqlLogRelayOptions));
        }

        return this;

        void Positive(TimeSpan value, string name)
        {
            if (value < TimeSpan.FromMilliseconds(1))
            {
                errors.Add($"{name} must be at least 1 ms, but is {value}.");
            }
        }
    }
}
