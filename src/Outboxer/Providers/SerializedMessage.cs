namespace Outboxer.Providers;

/// <summary>A validated message ready to insert: the message with its options and headers already written as JSON.</summary>
/// <param name="Message">The message.</param>
/// <param name="OptionsJson">Its options as JSON, or <see langword="null"/> when it has none.</param>
/// <param name="HeadersJson">Its headers as JSON, or <see langword="null"/> when it has none.</param>
public readonly record struct SerializedMessage(OutboxMessage Message, string? OptionsJson, string? HeadersJson)
{
    /// <summary>
    /// Gets, for a row written already claimed (see <see cref="IOutboxLeasedWriter"/>), the end of its lease: the row is inserted
    /// with this <c>locked_until</c>, <see cref="LeaseToken"/> and one attempt. <see langword="null"/> for an ordinary pending row.
    /// </summary>
    public DateTimeOffset? LeaseUntil { get; init; }

    /// <summary>
    /// Gets, for a row written already claimed, the caller's time when it computed <see cref="LeaseUntil"/>: a store that keeps leases
    /// on its database's clock writes the lease's length (<see cref="LeaseUntil"/> minus this) from the server's time.
    /// </summary>
    public DateTimeOffset? LeasedAt { get; init; }

    /// <summary>Gets the token of the claim a row written already claimed belongs to; 0 for an ordinary pending row.</summary>
    public long LeaseToken { get; init; }

    /// <summary>
    /// Checks what every store checks before anything reaches the server (a message id is set; every option and header value has a
    /// type that can be stored) and writes the options and headers as JSON. Shared by the table stores and the PostgreSQL log mode, so
    /// a message one accepts the other accepts too.
    /// </summary>
    /// <exception cref="ArgumentException">The message has no id, or a value cannot be stored; the message says which.</exception>
    internal static SerializedMessage Create(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(message.Payload, nameof(message));
        if (message.MessageId == Guid.Empty)
        {
            throw new ArgumentException("The message has no MessageId; enqueue it through Outbox, which assigns one.", nameof(message));
        }

        try
        {
            return new SerializedMessage(message, message.Options.ToJson(), message.Headers.ToJson());
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"The message cannot be stored: {ex.Message}", nameof(message), ex);
        }
    }
}
