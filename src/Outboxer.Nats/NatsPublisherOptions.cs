namespace Outboxer.Nats;

/// <summary>
/// Settings of a <see cref="NatsPublisher"/> that apply to every message. Per-message routing comes from the message's
/// <see cref="OutboxMessage.Options"/> (see <see cref="NatsOptionKeys"/>). The values are copied and validated when the publisher is
/// created.
/// </summary>
public sealed class NatsPublisherOptions
{
    /// <summary>Gets or sets the subject of messages whose options have no <see cref="NatsOptionKeys.Subject"/>.</summary>
    /// <value>
    /// The default value is <see langword="null"/>: such a message fails with a non-transient <see cref="OutboxException"/>. When set,
    /// it must be a valid subject to publish to (dot-separated tokens, none empty, no whitespace, no wildcard tokens).
    /// </value>
    public string? DefaultSubject { get; set; }

    /// <summary>Checks every value and throws for the first one that is invalid.</summary>
    /// <exception cref="ArgumentException">A value is invalid; the message names the property and its value.</exception>
    public void Validate()
    {
        const string name = $"{nameof(NatsPublisherOptions)}.{nameof(DefaultSubject)}";
        if (DefaultSubject is not null && NatsSubjects.Check(DefaultSubject) is { } reason)
        {
            throw new ArgumentException($"{name} must be a subject to publish to, but it is '{DefaultSubject}': {reason}.", name);
        }
    }

    internal NatsPublisherOptions Clone() => (NatsPublisherOptions)MemberwiseClone();
}
