using Microsoft.Extensions.Logging;

namespace Outboxer.Nats;

/// <summary>Every log message of the NATS publisher, with stable event ids in its block of the publisher range (4400s).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4400, Level = LogLevel.Information, Message = "Created a NATS JetStream publisher for {Url} (connection name '{Name}'); it connects on its first publish")]
    public static partial void Created(ILogger logger, string url, string name);

    [LoggerMessage(EventId = 4401, Level = LogLevel.Debug, Message = "Could not publish message {MessageId} to NATS subject '{Subject}'")]
    public static partial void PublishFailed(ILogger logger, Exception exception, Guid messageId, string subject);

    [LoggerMessage(EventId = 4402, Level = LogLevel.Debug, Message = "Held back {Count} message(s) with ordering key '{OrderingKey}' after an earlier one failed")]
    public static partial void HeldBack(ILogger logger, int count, string orderingKey);

    [LoggerMessage(EventId = 4403, Level = LogLevel.Debug, Message = "JetStream reported message {MessageId} on subject '{Subject}' as a duplicate of stream '{Stream}' sequence {Sequence}; it was stored before")]
    public static partial void Duplicate(ILogger logger, Guid messageId, string subject, string stream, ulong sequence);
}
