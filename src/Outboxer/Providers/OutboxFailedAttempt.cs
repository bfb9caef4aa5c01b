namespace Outboxer.Providers;

/// <summary>A failed publish of a locked claim's message, and what to do with the message (see <see cref="IOutboxLockedClaim.SettleAsync"/>).</summary>
/// <param name="Id">The message's database id.</param>
/// <param name="Error">What went wrong, for <see cref="OutboxMessage.LastError"/>.</param>
/// <param name="RetryAt">When the message may be claimed again; <see langword="null"/> moves it to the dead letters.</param>
/// <param name="OutcomeUnknown">Whether the attempt had no answer, so the message may have reached the broker (<see cref="OutboxMessage.UncertainAttempts"/>).</param>
public readonly record struct OutboxFailedAttempt(long Id, string Error, DateTimeOffset? RetryAt, bool OutcomeUnknown);
