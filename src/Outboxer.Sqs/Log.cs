using Microsoft.Extensions.Logging;

namespace Outboxer.Sqs;

/// <summary>Every log message of the SQS publisher, with stable event ids in the publisher range (4000s; SQS uses 4200-4299).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4200, Level = LogLevel.Debug, Message = "Resolved SQS queue '{QueueName}' to {QueueUrl}")]
    public static partial void QueueResolved(ILogger logger, string queueName, string queueUrl);

    [LoggerMessage(EventId = 4201, Level = LogLevel.Warning, Message = "Could not resolve the URL of SQS queue '{QueueName}'")]
    public static partial void QueueResolveFailed(ILogger logger, Exception exception, string queueName);

    [LoggerMessage(EventId = 4202, Level = LogLevel.Debug, Message = "Could not publish message {MessageId} to SQS queue '{Queue}'")]
    public static partial void PublishFailed(ILogger logger, Exception exception, Guid messageId, string queue);

    [LoggerMessage(EventId = 4203, Level = LogLevel.Debug, Message = "A SendMessageBatch request of {Count} messages to SQS queue '{Queue}' failed")]
    public static partial void BatchRequestFailed(ILogger logger, Exception exception, int count, string queue);

    [LoggerMessage(EventId = 4204, Level = LogLevel.Warning, Message = "SQS refused a SendMessageBatch request of {Count} messages to queue '{Queue}' as too long; sending them one by one")]
    public static partial void BatchTooLong(ILogger logger, int count, string queue);

    [LoggerMessage(EventId = 4205, Level = LogLevel.Debug, Message = "Published {Confirmed} of {Count} messages to SQS in {Requests} SendMessageBatch requests")]
    public static partial void BatchPublished(ILogger logger, int confirmed, int count, int requests);
}
