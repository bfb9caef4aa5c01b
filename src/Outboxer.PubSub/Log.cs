using Microsoft.Extensions.Logging;

namespace Outboxer.PubSub;

/// <summary>Every log message of the Pub/Sub publisher, with stable event ids in the 4300s of the publisher range.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4300, Level = LogLevel.Information, Message = "Publishing to Google Cloud Pub/Sub at {Endpoint} ({Authentication})")]
    public static partial void Created(ILogger logger, string endpoint, string authentication);

    [LoggerMessage(EventId = 4301, Level = LogLevel.Debug, Message = "Could not publish message {MessageId} to Pub/Sub: it was rejected before sending")]
    public static partial void MessageRejected(ILogger logger, Exception exception, Guid messageId);

    [LoggerMessage(EventId = 4302, Level = LogLevel.Debug, Message = "Could not publish {Count} message(s) to Pub/Sub topic '{Topic}'")]
    public static partial void PublishFailed(ILogger logger, Exception exception, int count, string topic);

    [LoggerMessage(EventId = 4303, Level = LogLevel.Debug, Message = "Pub/Sub refused a request of {Count} messages to topic '{Topic}' as invalid; publishing its halves separately to find the invalid message(s): {Detail}")]
    public static partial void RequestSplit(ILogger logger, int count, string topic, string detail);

    [LoggerMessage(EventId = 4304, Level = LogLevel.Debug, Message = "Held back {Count} message(s) to Pub/Sub topic '{Topic}': an earlier message of the batch with the same ordering key failed")]
    public static partial void HeldBack(ILogger logger, int count, string topic);

    [LoggerMessage(EventId = 4305, Level = LogLevel.Trace, Message = "Pub/Sub confirmed {Count} message(s) to topic '{Topic}'")]
    public static partial void Published(ILogger logger, int count, string topic);
}
