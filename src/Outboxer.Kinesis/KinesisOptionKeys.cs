namespace Outboxer.Kinesis;

/// <summary>
/// The keys of <see cref="OutboxMessage.Options"/> that <see cref="KinesisPublisher"/> reads. The strings are the Go outboxer's
/// (<c>es/kinesis</c>), so rows written by it publish the same way, except <see cref="SequenceNumberForOrdering"/>: the Go outboxer
/// gave it the string <c>"partition_key"</c>, so every partition key was also sent as a sequence number. Here it has a string of its own.
/// </summary>
/// <remarks>
/// Values are read as strings and may be of any type that means the same thing after the JSON round trip (a number is read as its
/// invariant text). A value of a type that is not a string, number or boolean fails the message with a non-transient
/// <see cref="OutboxException"/> that names the key; it never crashes the dispatcher.
/// </remarks>
public static class KinesisOptionKeys
{
    /// <summary>
    /// The name of the stream to put the record in (Go: <c>StreamNameOption</c>). When absent or empty,
    /// <see cref="KinesisPublisherOptions.DefaultStreamName"/> is used; when that is not set either, the message fails without retry.
    /// </summary>
    public const string StreamName = "stream_name";

    /// <summary>
    /// The partition key, which picks the shard and orders the records of one key (Go: <c>PartitionKeyOption</c>): 1 to 256 characters.
    /// When absent or empty, the message's <see cref="OutboxMessage.MessageId"/> is used (the Go outboxer used the current time).
    /// </summary>
    public const string PartitionKey = "partition_key";

    /// <summary>
    /// A hash key that overrides the hash of the partition key to pick the shard explicitly (Go: <c>ExplicitHashKeyOption</c>): a
    /// decimal integer from 0 to 2^128 - 1, best given as a string.
    /// </summary>
    public const string ExplicitHashKey = "explicit_hash_key";

    /// <summary>
    /// The sequence number of a record put earlier with the same partition key, which this record must follow (Go:
    /// <c>SequenceNumberForOrderingOption</c>, whose string was <c>"partition_key"</c> by mistake). A message with this option is put
    /// with <c>PutRecord</c> even in a batch, because <c>PutRecords</c> does not accept it.
    /// </summary>
    public const string SequenceNumberForOrdering = "sequence_number_for_ordering";
}
