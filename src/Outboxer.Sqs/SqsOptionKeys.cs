namespace Outboxer.Sqs;

/// <summary>
/// The keys of <see cref="OutboxMessage.Options"/> that <see cref="SqsPublisher"/> reads. The strings are the Go outboxer's
/// (<c>es/sqs</c>), so rows written by it publish the same way.
/// </summary>
/// <remarks>
/// Values may be of any type that means the same thing after the JSON round trip: <see cref="DelaySeconds"/> accepts an
/// <see cref="int"/>, the <see cref="long"/> it becomes after the round trip, a whole <see cref="double"/>, or a string holding a
/// whole number. A value of a wrong type, or out of range, fails the message with a non-transient <see cref="OutboxException"/> that
/// names the key; it never crashes the dispatcher.
/// </remarks>
public static class SqsOptionKeys
{
    /// <summary>
    /// The queue to send to (Go: <c>QueueNameOption</c>): a queue URL such as <c>https://sqs.us-east-1.amazonaws.com/123456789012/orders</c>,
    /// as the Go outboxer required, or a plain queue name such as <c>orders</c> (or <c>orders.fifo</c>), which the publisher resolves
    /// with <c>GetQueueUrl</c> once and caches. When absent, <see cref="SqsPublisherOptions.DefaultQueueName"/> is used.
    /// </summary>
    public const string QueueName = "queue_name";

    /// <summary>
    /// How many seconds SQS keeps the message invisible after receiving it (Go: <c>DelaySecondsOption</c>), from 0 to 900. When
    /// absent, the queue's own delay applies (the Go outboxer always sent 0, which overrode it). FIFO queues accept no per-message
    /// delay: any value other than 0 fails the message.
    /// </summary>
    public const string DelaySeconds = "delay_seconds";

    /// <summary>
    /// The SQS <c>MessageGroupId</c> (Go: <c>MessageGroupIDOption</c>): required for a FIFO queue, where messages of one group are
    /// delivered in order; on a standard queue it enables fair queues. At most 128 characters: letters, digits and ASCII punctuation.
    /// </summary>
    public const string MessageGroupId = "message_group_id";

    /// <summary>
    /// The SQS <c>MessageDeduplicationId</c> of a message sent to a FIFO queue (Go: <c>MessageDedupIDOption</c>). The default is the
    /// message's <see cref="OutboxMessage.MessageId"/>, so that a message the outbox publishes again within SQS's five-minute
    /// deduplication interval is delivered once. Ignored for standard queues, which do not deduplicate. At most 128 characters:
    /// letters, digits and ASCII punctuation.
    /// </summary>
    public const string MessageDeduplicationId = "message_dedup_id";
}
