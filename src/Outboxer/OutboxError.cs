namespace Outboxer;

/// <summary>A notification that an outbox operation failed. The dispatcher and the cleanup carry on after it.</summary>
/// <param name="Operation">What the outbox was doing.</param>
/// <param name="Exception">What went wrong.</param>
/// <param name="Id">The database id of the message concerned, when the failure concerns one message.</param>
/// <param name="MessageId">The message id of the message concerned, when the failure concerns one message.</param>
public sealed record OutboxError(OutboxOperation Operation, Exception Exception, long? Id = null, Guid? MessageId = null);
