using System.Text;
using Amazon.SQS.Model;

namespace Outboxer.Sqs;

/// <summary>
/// One outbox message checked and converted to what SQS receives: queue, body, attributes, delay, group and deduplication ids, and
/// the size SQS counts. Building it throws a non-transient <see cref="OutboxException"/> for anything SQS would refuse.
/// </summary>
internal sealed class SqsOutgoing
{
    private const int MaxDelaySeconds = 900;
    private const int MaxIdLength = 128;

    private SqsOutgoing(int index, OutboxMessage message, SqsQueue queue, string body, Dictionary<string, MessageAttributeValue> attributes, int? delaySeconds, string? groupId, string? deduplicationId, int size)
    {
        Index = index;
        Message = message;
        Queue = queue;
        Body = body;
        Attributes = attributes;
        DelaySeconds = delaySeconds;
        GroupId = groupId;
        DeduplicationId = deduplicationId;
        Size = size;
    }

    /// <summary>Gets the index of the message in the batch handed to the publisher (and its batch entry id).</summary>
    public int Index { get; }

    public OutboxMessage Message { get; }

    public SqsQueue Queue { get; }

    public string Body { get; }

    public Dictionary<string, MessageAttributeValue> Attributes { get; }

    public int? DelaySeconds { get; }

    public string? GroupId { get; }

    public string? DeduplicationId { get; }

    /// <summary>Gets the size SQS counts: the body's UTF-8 bytes plus each attribute's name, type and value.</summary>
    public int Size { get; }

    /// <summary>Checks and converts <paramref name="message"/>.</summary>
    /// <exception cref="OutboxException">The message cannot be sent (never transient); the message names the option or header.</exception>
    public static SqsOutgoing Create(OutboxMessage message, int index, SqsPublisherOptions options)
    {
        ArgumentNullException.ThrowIfNull(message);
        var queue = ReadQueue(message, options);

        var delaySeconds = ReadDelaySeconds(message, queue);
        var groupId = ReadId(message, SqsOptionKeys.MessageGroupId);
        var deduplicationId = ReadId(message, SqsOptionKeys.MessageDeduplicationId);
        if (queue.IsFifo)
        {
            // The message's ordering key is the natural FIFO group: its messages stay in order, other groups go in parallel.
            groupId ??= message.OrderingKey;
            if (groupId is null)
            {
                throw new OutboxException(
                    $"Message {message.MessageId} goes to the FIFO queue '{queue.Reference}', which requires a message group: set the '{SqsOptionKeys.MessageGroupId}' option or the message's OrderingKey.",
                    isTransient: false);
            }

            deduplicationId ??= message.MessageId == Guid.Empty ? null : message.MessageId.ToString();
        }
        else
        {
            // Standard queues do not deduplicate, and SQS refuses the parameter for them.
            deduplicationId = null;
        }

        if (message.Payload.Length == 0)
        {
            throw new OutboxException($"Message {message.MessageId} has an empty payload, which SQS does not accept: a message body needs at least one character.", isTransient: false);
        }

        var text = SqsText.AsText(message.Payload);
        var body = text ?? Convert.ToBase64String(message.Payload);

        var attributes = SqsAttributes.Convert(message.Headers);
        var headerCount = attributes.Count;
        if (message.MessageId != Guid.Empty)
        {
            attributes[SqsAttributes.MessageIdAttribute] = SqsAttributes.String(message.MessageId.ToString());
        }

        if (text is null)
        {
            attributes[SqsAttributes.BodyEncodingAttribute] = SqsAttributes.String(SqsAttributes.Base64Encoding);
        }

        if (attributes.Count > SqsAttributes.MaxAttributes)
        {
            var added = attributes.Count - headerCount;
            var what = (message.MessageId != Guid.Empty, text is null) switch
            {
                (true, true) => $" plus '{SqsAttributes.MessageIdAttribute}' and '{SqsAttributes.BodyEncodingAttribute}' (its payload is binary)",
                (true, false) => $" plus '{SqsAttributes.MessageIdAttribute}'",
                (false, true) => $" plus '{SqsAttributes.BodyEncodingAttribute}' (its payload is binary)",
                _ => string.Empty,
            };
            throw new OutboxException(
                $"Message {message.MessageId} would carry {attributes.Count} message attributes ({headerCount} headers{what}), more than the " +
                $"{SqsAttributes.MaxAttributes} SQS accepts; send at most {SqsAttributes.MaxAttributes - added} headers with it.",
                isTransient: false);
        }

        var size = Encoding.UTF8.GetByteCount(body);
        foreach (var (name, value) in attributes)
        {
            size += SqsAttributes.SizeOf(name, value);
        }

        if (size > options.MaxMessageSize)
        {
            var encoding = text is null ? $" (its {message.Payload.Length}-byte binary payload grows by a third in base64)" : string.Empty;
            throw new OutboxException(
                $"Message {message.MessageId} is {size} bytes with its message attributes{encoding}, more than the {options.MaxMessageSize} bytes " +
                $"an SQS message may have ({nameof(SqsPublisherOptions)}.{nameof(SqsPublisherOptions.MaxMessageSize)}); it cannot be sent. " +
                "Store large payloads elsewhere and send a reference to them.",
                isTransient: false);
        }

        return new SqsOutgoing(index, message, queue, body, attributes, delaySeconds, groupId, deduplicationId, size);
    }

    /// <summary>Gets the attributes to send, or <see langword="null"/> when there are none (SQS refuses an empty map).</summary>
    public Dictionary<string, MessageAttributeValue>? AttributesOrNull => Attributes.Count == 0 ? null : Attributes;

    public SendMessageRequest ToRequest(string queueUrl) => new()
    {
        QueueUrl = queueUrl,
        MessageBody = Body,
        MessageAttributes = AttributesOrNull,
        DelaySeconds = DelaySeconds,
        MessageGroupId = GroupId,
        MessageDeduplicationId = DeduplicationId,
    };

    public SendMessageBatchRequestEntry ToEntry() => new()
    {
        Id = Index.ToString(System.Globalization.CultureInfo.InvariantCulture),
        MessageBody = Body,
        MessageAttributes = AttributesOrNull,
        DelaySeconds = DelaySeconds,
        MessageGroupId = GroupId,
        MessageDeduplicationId = DeduplicationId,
    };

    /// <summary>
    /// Gets the queue <paramref name="message"/> goes to, without throwing: its <see cref="SqsOptionKeys.QueueName"/> option, or
    /// <see cref="SqsPublisherOptions.DefaultQueueName"/> when it has none; <see langword="null"/> when neither names a valid queue or
    /// the option is of a wrong type.
    /// </summary>
    public static SqsQueue? FindQueue(OutboxMessage message, SqsPublisherOptions options)
    {
        string? reference;
        try
        {
            reference = QueueReference(message, options);
        }
        catch (OutboxException)
        {
            return null;
        }

        return reference is null ? null : SqsQueue.Parse(reference);
    }

    /// <summary>Reads the queue URL or name the message's option gives, or else the default queue; throws for an option of a wrong type.</summary>
    private static string? QueueReference(OutboxMessage message, SqsPublisherOptions options)
    {
        var reference = message.Options.GetString(SqsOptionKeys.QueueName);
        return string.IsNullOrEmpty(reference) ? options.DefaultQueueName : reference;
    }

    private static SqsQueue ReadQueue(OutboxMessage message, SqsPublisherOptions options)
    {
        var reference = QueueReference(message, options) ?? throw new OutboxException(
            $"Message {message.MessageId} has no '{SqsOptionKeys.QueueName}' option, and {nameof(SqsPublisherOptions)}.{nameof(SqsPublisherOptions.DefaultQueueName)} " +
            "is not set: name the queue in one of them.",
            isTransient: false);

        return SqsQueue.Parse(reference) ?? throw new OutboxException(
            $"The value of '{SqsOptionKeys.QueueName}' must be a queue URL (http or https) or a queue name of 1 to 80 letters, digits, hyphens " +
            $"and underscores (with an optional .fifo suffix), but it is '{reference}'.",
            isTransient: false);
    }

    private static int? ReadDelaySeconds(OutboxMessage message, SqsQueue queue)
    {
        if (!message.Options.TryGetValue(SqsOptionKeys.DelaySeconds, out var raw) || raw is null)
        {
            return null;
        }

        var delay = message.Options.GetInt64(SqsOptionKeys.DelaySeconds, 0);
        if (delay is < 0 or > MaxDelaySeconds)
        {
            throw new OutboxException($"The value of '{SqsOptionKeys.DelaySeconds}' must be from 0 to {MaxDelaySeconds} seconds, but it is {delay}.", isTransient: false);
        }

        if (queue.IsFifo)
        {
            if (delay != 0)
            {
                throw new OutboxException(
                    $"The value of '{SqsOptionKeys.DelaySeconds}' is {delay}, but the FIFO queue '{queue.Reference}' accepts no per-message delay: " +
                    "remove the option, or set DelaySeconds on the queue.",
                    isTransient: false);
            }

            return null;
        }

        return (int)delay;
    }

    private static string? ReadId(OutboxMessage message, string key)
    {
        var value = message.Options.GetString(key);
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        if (value.Length > MaxIdLength || !value.All(c => c is >= '!' and <= '~'))
        {
            throw new OutboxException(
                $"The value of '{key}' must be 1 to {MaxIdLength} letters, digits or ASCII punctuation, but it is '{value}'.",
                isTransient: false);
        }

        return value;
    }
}
