namespace Outboxer.Providers;

/// <summary>A validated message ready to insert: the message with its options and headers already written as JSON.</summary>
/// <param name="Message">The message.</param>
/// <param name="OptionsJson">Its options as JSON, or <see langword="null"/> when it has none.</param>
/// <param name="HeadersJson">Its headers as JSON, or <see langword="null"/> when it has none.</param>
public readonly record struct SerializedMessage(OutboxMessage Message, string? OptionsJson, string? HeadersJson);
