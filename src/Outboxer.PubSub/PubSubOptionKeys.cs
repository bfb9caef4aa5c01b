namespace Outboxer.PubSub;

/// <summary>
/// The keys of <see cref="OutboxMessage.Options"/> that <see cref="PubSubPublisher"/> reads. The strings are the Go outboxer's
/// (<c>es/pubsub</c>), so rows written by it publish the same way.
/// </summary>
/// <remarks>
/// A value must be a string (or a number or boolean, which is read as its invariant text). A value of another type fails the message
/// with a non-transient <see cref="OutboxException"/> that names the key; it never crashes the dispatcher.
/// </remarks>
public static class PubSubOptionKeys
{
    /// <summary>
    /// The topic to publish to (Go: <c>TopicNameOption</c>): either a full name, <c>projects/{project}/topics/{topic}</c>, or a topic id
    /// that is combined with <see cref="PubSubPublisherOptions.ProjectId"/>. When absent or empty,
    /// <see cref="PubSubPublisherOptions.DefaultTopicName"/> is used.
    /// </summary>
    public const string TopicName = "topic_name";

    /// <summary>
    /// The Pub/Sub ordering key (Go: <c>OrderingKeyOption</c>), at most 1,024 bytes in UTF-8. The default is none. A subscription with
    /// message ordering enabled receives the messages of one ordering key in the order they were published.
    /// </summary>
    public const string OrderingKey = "ordering_key";
}
