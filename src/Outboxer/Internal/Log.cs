using Microsoft.Extensions.Logging;

namespace Outboxer.Internal;

/// <summary>Every log message of the core, with stable event ids (see <see cref="OutboxEventIds"/>).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = OutboxEventIds.DispatcherStarted, Level = LogLevel.Information, Message = "Outbox dispatcher started (batch size {BatchSize}, check interval {CheckInterval})")]
    public static partial void DispatcherStarted(ILogger logger, int batchSize, TimeSpan checkInterval);

    [LoggerMessage(EventId = OutboxEventIds.DispatcherStopped, Level = LogLevel.Information, Message = "Outbox dispatcher stopped")]
    public static partial void DispatcherStopped(ILogger logger);

    [LoggerMessage(EventId = OutboxEventIds.BatchDispatched, Level = LogLevel.Debug, Message = "Dispatched {Published} of {Claimed} claimed messages")]
    public static partial void BatchDispatched(ILogger logger, int published, int claimed);

    [LoggerMessage(EventId = OutboxEventIds.ClaimFailed, Level = LogLevel.Warning, Message = "Could not claim pending outbox messages")]
    public static partial void ClaimFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = OutboxEventIds.PublishFailed, Level = LogLevel.Warning, Message = "Could not publish outbox message {Id} ({MessageId}), attempt {Attempt}; retrying at {RetryAt}")]
    public static partial void PublishFailed(ILogger logger, Exception exception, long id, Guid messageId, int attempt, DateTimeOffset retryAt);

    [LoggerMessage(EventId = OutboxEventIds.DeadLettered, Level = LogLevel.Error, Message = "Moved outbox message {Id} ({MessageId}) to the dead letters after attempt {Attempt} (permanent failure: {Permanent})")]
    public static partial void DeadLettered(ILogger logger, Exception exception, long id, Guid messageId, int attempt, bool permanent);

    [LoggerMessage(EventId = OutboxEventIds.ClaimTooLate, Level = LogLevel.Warning, Message = "A claim of {Count} messages took {Elapsed}, leaving less than the publish timeout of their {Lease} lease; not publishing them (they come back after the lease)")]
    public static partial void ClaimTooLate(ILogger logger, int count, TimeSpan elapsed, TimeSpan lease);

    [LoggerMessage(EventId = OutboxEventIds.LeaseLost, Level = LogLevel.Warning, Message = "{Lost} of {Confirmed} published messages were claimed by another dispatcher after this one's lease ran out; they will be published again (possible duplicates)")]
    public static partial void LeaseLost(ILogger logger, int lost, int confirmed);

    [LoggerMessage(EventId = OutboxEventIds.PublishOutcomeUnknown, Level = LogLevel.Warning, Message = "The outcome of publishing outbox message {Id} ({MessageId}), attempt {Attempt}, is unknown: it may have been published and will be published again at {RetryAt} (a possible duplicate)")]
    public static partial void PublishOutcomeUnknown(ILogger logger, Exception exception, long id, Guid messageId, int attempt, DateTimeOffset retryAt);

    [LoggerMessage(EventId = OutboxEventIds.MarkDispatchedFailed, Level = LogLevel.Error, Message = "Could not mark {Count} published messages as dispatched; they will be published again after their lease")]
    public static partial void MarkDispatchedFailed(ILogger logger, Exception exception, int count);

    [LoggerMessage(EventId = OutboxEventIds.ReleaseFailed, Level = LogLevel.Warning, Message = "Could not record the failed attempt of message {Id}; it will be retried after its lease")]
    public static partial void ReleaseFailed(ILogger logger, Exception exception, long id);

    [LoggerMessage(EventId = OutboxEventIds.ListenFailed, Level = LogLevel.Warning, Message = "Listening for other processes' commits failed; polling every {CheckInterval} meanwhile and listening again")]
    public static partial void ListenFailed(ILogger logger, Exception exception, TimeSpan checkInterval);

    [LoggerMessage(EventId = OutboxEventIds.CleanupStarted, Level = LogLevel.Information, Message = "Outbox cleanup started (interval {Interval}, retention {Retention})")]
    public static partial void CleanupStarted(ILogger logger, TimeSpan interval, TimeSpan retention);

    [LoggerMessage(EventId = OutboxEventIds.CleanupStopped, Level = LogLevel.Information, Message = "Outbox cleanup stopped")]
    public static partial void CleanupStopped(ILogger logger);

    [LoggerMessage(EventId = OutboxEventIds.CleanupDeleted, Level = LogLevel.Debug, Message = "Deleted {Count} messages dispatched before {Cutoff}")]
    public static partial void CleanupDeleted(ILogger logger, int count, DateTimeOffset cutoff);

    [LoggerMessage(EventId = OutboxEventIds.CleanupFailed, Level = LogLevel.Warning, Message = "Could not delete old dispatched messages")]
    public static partial void CleanupFailed(ILogger logger, Exception exception);
}
