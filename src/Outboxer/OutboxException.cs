namespace Outboxer;

/// <summary>
/// The exception thrown or reported when the outbox's store or event stream fails at run time.
/// Wrong usage (a null argument, an invalid option value) raises the standard argument exceptions instead.
/// </summary>
public class OutboxException : Exception
{
    /// <summary>Initializes a new instance of the <see cref="OutboxException"/> class.</summary>
    public OutboxException()
    {
    }

    /// <summary>Initializes a new instance of the <see cref="OutboxException"/> class with a message.</summary>
    /// <param name="message">The message that describes the error.</param>
    public OutboxException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new instance of the <see cref="OutboxException"/> class with a message and an inner exception.</summary>
    /// <param name="message">The message that describes the error.</param>
    /// <param name="innerException">The exception that caused this one.</param>
    public OutboxException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Initializes a new instance of the <see cref="OutboxException"/> class.</summary>
    /// <param name="message">The message that describes the error.</param>
    /// <param name="isTransient">Whether retrying the same operation later may succeed.</param>
    /// <param name="innerException">The exception that caused this one.</param>
    public OutboxException(string message, bool isTransient, Exception? innerException = null)
        : base(message, innerException)
    {
        IsTransient = isTransient;
    }

    /// <summary>
    /// Gets a value indicating whether retrying the same operation later may succeed (a broker restart, a lost
    /// connection), as opposed to a failure that will repeat (an invalid option, an unroutable message).
    /// </summary>
    public bool IsTransient { get; } = true;

    /// <summary>
    /// Gets a value indicating whether the operation may have taken effect although it failed: a publish whose confirmation did not
    /// arrive (a timeout, a connection lost after the message was sent). The dispatcher retries such a message, counts it as a possible
    /// duplicate, and never moves it to the dead letters on that attempt. Publishers set it when they know a message left.
    /// </summary>
    public bool IsOutcomeUnknown { get; init; }
}
