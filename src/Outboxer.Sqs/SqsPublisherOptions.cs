namespace Outboxer.Sqs;

/// <summary>
/// Settings of a <see cref="SqsPublisher"/> that apply to every message. Per-message routing comes from the message's
/// <see cref="OutboxMessage.Options"/> (see <see cref="SqsOptionKeys"/>). The values are copied and validated when the publisher is
/// created.
/// </summary>
public sealed class SqsPublisherOptions
{
    /// <summary>The smallest <see cref="MaxMessageSize"/>, and the smallest maximum message size an SQS queue can have.</summary>
    public const int MinMessageSizeLimit = 1_024;

    /// <summary>The largest <see cref="MaxMessageSize"/>: the largest message SQS accepts (1 MiB).</summary>
    public const int MaxMessageSizeLimit = 1_048_576;

    /// <summary>
    /// Gets or sets the queue that messages without a <see cref="SqsOptionKeys.QueueName"/> option are sent to: a queue URL or a queue
    /// name, as the option.
    /// </summary>
    /// <value>
    /// The default value is <see langword="null"/>: every message must name its queue, and one that does not fails with a
    /// non-transient <see cref="OutboxException"/>.
    /// </value>
    public string? DefaultQueueName { get; set; }

    /// <summary>
    /// Gets or sets the largest message, in bytes, that the publisher sends: the UTF-8 length of the body (after base64 encoding, for a
    /// binary payload) plus the names, types and values of all its message attributes, which is how SQS measures a message. A larger
    /// message fails at once with a non-transient <see cref="OutboxException"/> instead of being retried forever. It is also the
    /// largest total size of one <c>SendMessageBatch</c> request, since SQS applies the same limit to a batch as to a message.
    /// </summary>
    /// <value>
    /// The default value is 262,144 (256 KiB), SQS's limit for many years and the limit of queues whose <c>MaximumMessageSize</c> was
    /// left at that default. From <see cref="MinMessageSizeLimit"/> to <see cref="MaxMessageSizeLimit"/>; raise it up to 1,048,576
    /// only when every queue the outbox sends to accepts messages that large.
    /// </value>
    public int MaxMessageSize { get; set; } = 262_144;

    /// <summary>
    /// Gets or sets how many <c>SendMessageBatch</c> requests one <see cref="SqsPublisher.PublishBatchAsync"/> call runs at the same
    /// time. The requests for one FIFO queue always run one after another, in order.
    /// </summary>
    /// <value>The default value is 8. Must be at least 1.</value>
    public int MaxConcurrentRequests { get; set; } = 8;

    /// <summary>Checks every value and throws for the first one that is invalid.</summary>
    /// <exception cref="ArgumentException">A value is invalid; the message names the property and its value.</exception>
    public void Validate()
    {
        if (DefaultQueueName is not null && !SqsQueue.IsValidQueueReference(DefaultQueueName))
        {
            const string name = $"{nameof(SqsPublisherOptions)}.{nameof(DefaultQueueName)}";
            throw new ArgumentException(
                $"{name} must be a queue URL (http or https) or a queue name of 1 to 80 letters, digits, hyphens and underscores (with an optional .fifo suffix), but it is '{DefaultQueueName}'.",
                name);
        }

        if (MaxMessageSize is < MinMessageSizeLimit or > MaxMessageSizeLimit)
        {
            const string name = $"{nameof(SqsPublisherOptions)}.{nameof(MaxMessageSize)}";
            throw new ArgumentException($"{name} must be from {MinMessageSizeLimit} to {MaxMessageSizeLimit} bytes, but it is {MaxMessageSize}.", name);
        }

        if (MaxConcurrentRequests < 1)
        {
            const string name = $"{nameof(SqsPublisherOptions)}.{nameof(MaxConcurrentRequests)}";
            throw new ArgumentException($"{name} must be at least 1, but it is {MaxConcurrentRequests}.", name);
        }
    }

    internal SqsPublisherOptions Clone() => (SqsPublisherOptions)MemberwiseClone();
}
