using Microsoft.Extensions.Logging;

namespace Outboxer.Kinesis;

/// <summary>Every log message of the Kinesis publisher, with stable event ids in the Kinesis publisher range (4100s).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4100, Level = LogLevel.Information, Message = "Publishing to Kinesis at {Endpoint} (region {Region}) as {Format} records")]
    public static partial void Created(ILogger logger, Uri endpoint, string region, string format);

    [LoggerMessage(EventId = 4101, Level = LogLevel.Debug, Message = "Message {MessageId} was not sent to Kinesis: {Reason}")]
    public static partial void MessageRejected(ILogger logger, Guid messageId, string reason);

    [LoggerMessage(EventId = 4102, Level = LogLevel.Debug, Message = "Kinesis did not accept message {MessageId} in stream '{Stream}': {ErrorCode} {ErrorMessage}")]
    public static partial void RecordFailed(ILogger logger, Guid messageId, string stream, string errorCode, string? errorMessage);

    [LoggerMessage(EventId = 4103, Level = LogLevel.Debug, Message = "A Kinesis {Operation} request with {Count} record(s) for stream '{Stream}' failed")]
    public static partial void RequestFailed(ILogger logger, Exception exception, string operation, int count, string stream);

    [LoggerMessage(EventId = 4104, Level = LogLevel.Debug, Message = "Put {Count} record(s) in Kinesis stream '{Stream}' with {Requests} request(s); {Failed} failed")]
    public static partial void StreamBatchPut(ILogger logger, int count, string stream, int requests, int failed);

    [LoggerMessage(
        EventId = 4105,
        Level = LogLevel.Warning,
        Message = "Message {MessageId} has {Count} header(s), which a raw Kinesis record cannot carry: they were not sent. Set KinesisPublisherOptions.UseEnvelope to send headers. This is logged once per publisher")]
    public static partial void HeadersDropped(ILogger logger, Guid messageId, int count);
}
