using Microsoft.Extensions.Logging;

namespace Outboxer.PostgreSql;

/// <summary>
/// The log messages of the PostgreSQL log mode's relay (logger category <c>Outboxer.PostgreSql.LogRelay</c>), event ids 3100 to 3199.
/// </summary>
internal static partial class LogModeLog
{
    [LoggerMessage(EventId = 3100, EventName = "LogRelayActive", Level = LogLevel.Information, Message = "The log relay consumes the replication slot {Slot} (publication {Publication}, prefix {Prefix}).")]
    public static partial void Active(ILogger logger, string slot, string publication, string prefix);

    [LoggerMessage(EventId = 3101, EventName = "LogRelayStandby", Level = LogLevel.Information, Message = "Another relay consumes the replication slot {Slot}; this one stands by and tries to take over every {Interval}.")]
    public static partial void Standby(ILogger logger, string slot, TimeSpan interval);

    [LoggerMessage(EventId = 3102, EventName = "LogRelayFailed", Level = LogLevel.Warning, Message = "The log relay on the replication slot {Slot} failed; it resumes from the slot's acknowledged position in {Delay}.")]
    public static partial void Failed(ILogger logger, Exception exception, string slot, TimeSpan delay);

    [LoggerMessage(EventId = 3103, EventName = "LogRelayPublishFailed", Level = LogLevel.Warning, Message = "Publishing {Count} message(s) from the replication slot {Slot} failed transiently, first: {Error}; retrying in {Delay}.")]
    public static partial void PublishFailed(ILogger logger, int count, string slot, string error, TimeSpan delay);

    [LoggerMessage(EventId = 3104, EventName = "LogRelayDeadLettered", Level = LogLevel.Error, Message = "The message {MessageId} at {Lsn} cannot be published and was moved to the dead letters: {Error}")]
    public static partial void DeadLettered(ILogger logger, Guid messageId, string lsn, string error);

    [LoggerMessage(EventId = 3105, EventName = "LogRelaySlotUnusable", Level = LogLevel.Error, Message = "The log relay cannot consume the replication slot {Slot}: {Reason} It tries again in {Delay}.")]
    public static partial void SlotUnusable(ILogger logger, string slot, string reason, TimeSpan delay);

    [LoggerMessage(EventId = 3106, EventName = "LogRelayStopped", Level = LogLevel.Information, Message = "The log relay on the replication slot {Slot} stopped; acknowledged up to {Lsn}.")]
    public static partial void Stopped(ILogger logger, string slot, string lsn);

    [LoggerMessage(EventId = 3107, EventName = "LogRelayHeartbeatFailed", Level = LogLevel.Debug, Message = "The log relay could not write its heartbeat.")]
    public static partial void HeartbeatFailed(ILogger logger, Exception exception);
}
