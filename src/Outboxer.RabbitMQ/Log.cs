using Microsoft.Extensions.Logging;

namespace Outboxer.RabbitMQ;

/// <summary>Every log message of the RabbitMQ publisher, with stable event ids in the publisher range (4000s).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 4000, Level = LogLevel.Information, Message = "Connected to RabbitMQ at {Endpoint} as '{ClientName}' with automatic recovery")]
    public static partial void Connected(ILogger logger, string endpoint, string clientName);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Debug, Message = "Opened the RabbitMQ {Purpose} channel {ChannelNumber}")]
    public static partial void ChannelOpened(ILogger logger, string purpose, int channelNumber);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Information, Message = "Reopened the RabbitMQ {Purpose} channel as channel {ChannelNumber}; the previous one was closed: {Reason}")]
    public static partial void ChannelRecreated(ILogger logger, string purpose, int channelNumber, string reason);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Warning, Message = "The RabbitMQ publishing channel was closed: {Reason}")]
    public static partial void ChannelClosed(ILogger logger, string reason);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Debug, Message = "Declared RabbitMQ exchange '{Exchange}' (type {Type}, durable {Durable}, auto-delete {AutoDelete})")]
    public static partial void ExchangeDeclared(ILogger logger, string exchange, string type, bool durable, bool autoDelete);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Warning, Message = "Could not declare RabbitMQ exchange '{Exchange}'")]
    public static partial void ExchangeDeclareFailed(ILogger logger, Exception exception, string exchange);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Debug, Message = "Could not publish message {MessageId} to RabbitMQ exchange '{Exchange}' with routing key '{RoutingKey}'")]
    public static partial void PublishFailed(ILogger logger, Exception exception, Guid messageId, string exchange, string routingKey);
}
