namespace Outboxer;

/// <summary>A notification that the event stream confirmed a message and the outbox marked it dispatched.</summary>
/// <param name="Id">The database id of the message.</param>
/// <param name="MessageId">The message id sent to the broker.</param>
/// <param name="DispatchedAt">When the message was marked dispatched.</param>
public readonly record struct DispatchedMessage(long Id, Guid MessageId, DateTimeOffset DispatchedAt);
