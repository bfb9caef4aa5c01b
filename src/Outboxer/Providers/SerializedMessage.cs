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

    /// <summary>Gets the token of the claim a row written already claimed belongs to; 0 for an ordinary pending row.</summary>
    public long LeaseToken { get; init; }
}
