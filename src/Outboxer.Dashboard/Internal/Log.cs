using Microsoft.Extensions.Logging;

namespace Outboxer.Dashboard.Internal;

/// <summary>Every log message of the dashboard, with stable event ids in its range (5000s).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 5000, Level = LogLevel.Warning, Message = "The Outboxer dashboard could not sample outbox '{Outbox}'; the charts miss this sample")]
    public static partial void SampleFailed(ILogger logger, Exception exception, string outbox);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Information, Message = "The Outboxer dashboard requeued {Count} dead letter(s) of outbox '{Outbox}' ({Scope})")]
    public static partial void Requeued(ILogger logger, int count, string outbox, string scope);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "The Outboxer dashboard purged {Count} dead letter(s) of outbox '{Outbox}' ({Scope})")]
    public static partial void Purged(ILogger logger, int count, string outbox, string scope);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Warning, Message = "The Outboxer dashboard could not serve {Path}: the store failed")]
    public static partial void PageFailed(ILogger logger, Exception exception, string path);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "The Outboxer dashboard refused a POST without a valid antiforgery token")]
    public static partial void ForgeryRefused(ILogger logger, Exception exception);
}
