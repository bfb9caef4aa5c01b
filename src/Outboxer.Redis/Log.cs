using Microsoft.Extensions.Logging;

namespace Outboxer.Redis;

/// <summary>Every log message of the Redis publisher, with stable event ids in the publisher range (4500s).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4500, Level = LogLevel.Information, Message = "Connected to Redis at {Endpoints}")]
    public static partial void Connected(ILogger logger, string endpoints);

    [LoggerMessage(EventId = 4501, Level = LogLevel.Debug, Message = "Message {MessageId} was already appended to Redis stream '{Stream}' as entry {EntryId} within the deduplication window; not appended again")]
    public static partial void Duplicate(ILogger logger, Guid messageId, string stream, string entryId);

    [LoggerMessage(EventId = 4502, Level = LogLevel.Debug, Message = "Could not append message {MessageId} to Redis stream '{Stream}'")]
    public static partial void PublishFailed(ILogger logger, Exception exception, Guid messageId, string? stream);

    [LoggerMessage(EventId = 4503, Level = LogLevel.Debug, Message = "Appended {Succeeded} of {Count} messages to Redis in {Calls} script calls")]
    public static partial void BatchPublished(ILogger logger, int succeeded, int count, int calls);
}
