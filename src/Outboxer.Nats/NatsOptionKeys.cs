namespace Outboxer.Nats;

/// <summary>The keys of <see cref="OutboxMessage.Options"/> that <see cref="NatsPublisher"/> reads.</summary>
/// <remarks>
/// <para>
/// Values may be of any type that means the same thing after the JSON round trip. A value of a wrong type, or one NATS would refuse,
/// fails the message with a non-transient <see cref="OutboxException"/> that names the key and the value; it never crashes the
/// dispatcher.
/// </para>
/// <para>
/// What JetStream's publish offers and the publisher deliberately does not: the message id (<c>Nats-Msg-Id</c>) is always
/// <see cref="OutboxMessage.MessageId"/>, so that a message published again after a relay crash is dropped by the stream's
/// duplicate window; and the optimistic-concurrency expectations (<c>Nats-Expected-Last-Sequence</c>,
/// <c>Nats-Expected-Last-Subject-Sequence</c>, <c>Nats-Expected-Last-Msg-Id</c>) are not options, because an outbox publishes at
/// least once, concurrently, and retries: the retry of a message whose first attempt was stored but not acknowledged, or a message
/// of another dispatcher stored in between, would fail the expectation for good. A header of the message with one of those names is
/// still sent as it is, for whoever needs it and accepts that.
/// </para>
/// </remarks>
public static class NatsOptionKeys
{
    /// <summary>
    /// The subject to publish to, for example <c>orders.created</c>: dot-separated tokens, none empty, without whitespace and without
    /// the wildcards <c>*</c> and <c>&gt;</c> as tokens. A JetStream stream must store the subject. When absent or empty,
    /// <see cref="NatsPublisherOptions.DefaultSubject"/> is used.
    /// </summary>
    public const string Subject = "subject";

    /// <summary>
    /// The name of the stream that must store the message (JetStream's <c>Nats-Expected-Stream</c>). When the subject belongs to
    /// another stream, JetStream refuses the message and it fails with a non-transient <see cref="OutboxException"/>. The default is
    /// none: whichever stream stores the subject.
    /// </summary>
    public const string ExpectedStream = "expected_stream";
}
