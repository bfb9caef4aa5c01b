namespace Outboxer;

/// <summary>The outbox operation that an <see cref="OutboxError"/> reports on.</summary>
public enum OutboxOperation
{
    /// <summary>Claiming pending messages from the store.</summary>
    Claim,

    /// <summary>Publishing a message to the event stream.</summary>
    Publish,

    /// <summary>Marking published messages as dispatched in the store.</summary>
    MarkDispatched,

    /// <summary>Recording a failed attempt so that the message is retried later.</summary>
    Release,

    /// <summary>Deleting old dispatched messages.</summary>
    Cleanup,

    /// <summary>Moving a message that cannot be published to the dead letters.</summary>
    DeadLetter,
}
