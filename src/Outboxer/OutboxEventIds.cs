namespace Outboxer;

/// <summary>
/// The stable event ids of the outbox's log messages, one range per component: dispatcher 1000s, cleanup 2000s. Publisher packages
/// use the 4000s, a block of 100 each, which their documentation names.
/// </summary>
public static class OutboxEventIds
{
    /// <summary>The dispatcher started.</summary>
    public const int DispatcherStarted = 1000;

    /// <summary>The dispatcher stopped.</summary>
    public const int DispatcherStopped = 1001;

    /// <summary>A batch was published and marked dispatched.</summary>
    public const int BatchDispatched = 1002;

    /// <summary>Claiming pending messages failed.</summary>
    public const int ClaimFailed = 1003;

    /// <summary>Publishing a message failed; it will be retried.</summary>
    public const int PublishFailed = 1004;

    /// <summary>Marking published messages as dispatched failed; they will be published again.</summary>
    public const int MarkDispatchedFailed = 1005;

    /// <summary>Recording a failed attempt failed.</summary>
    public const int ReleaseFailed = 1006;

    /// <summary>Listening for other processes' commits failed; the dispatcher polls meanwhile and listens again.</summary>
    public const int ListenFailed = 1007;

    /// <summary>A message was moved to the dead letters.</summary>
    public const int DeadLettered = 1008;

    /// <summary>
    /// A claim came back too late to publish its messages safely (less than <see cref="OutboxOptions.PublishTimeout"/> was left of the
    /// lease): they were not published and come back after the lease.
    /// </summary>
    public const int ClaimTooLate = 1009;

    /// <summary>
    /// Published messages could not be marked because another claim took them after this dispatcher's lease ran out: they will be
    /// published again (possible duplicates).
    /// </summary>
    public const int LeaseLost = 1010;

    /// <summary>
    /// A publish ended without an answer from the event stream (a timeout, a connection lost after sending): the message may have been
    /// published, and is published again (a possible duplicate). It is never dead-lettered on such an attempt.
    /// </summary>
    public const int PublishOutcomeUnknown = 1011;

    /// <summary>The cleanup started.</summary>
    public const int CleanupStarted = 2000;

    /// <summary>The cleanup stopped.</summary>
    public const int CleanupStopped = 2001;

    /// <summary>The cleanup deleted old dispatched messages.</summary>
    public const int CleanupDeleted = 2002;

    /// <summary>The cleanup failed; it tries again at its next run.</summary>
    public const int CleanupFailed = 2003;
}
