using Microsoft.Extensions.Logging;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// A logger factory for the in-process dispatchers that adds up the possible duplicates they log: the events that add to the counter
/// <c>outboxer.messages.possible_duplicates</c> (<see cref="OutboxEventIds.PublishOutcomeUnknown"/>, one message each;
/// <see cref="OutboxEventIds.LeaseLost"/>, its <c>Lost</c> messages; <see cref="OutboxEventIds.MarkDispatchedFailed"/>, its <c>Count</c>). The counter itself is one per process, shared by the tests that
/// run side by side, so an outbox's own count comes from its log. samples/Outboxer.Relay reads the counter (one outbox per process).
/// </summary>
internal sealed class PossibleDuplicateCounter : ILoggerFactory, ILogger
{
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        switch (eventId.Id)
        {
            case OutboxEventIds.PublishOutcomeUnknown:
                Interlocked.Increment(ref _count);
                break;
            case OutboxEventIds.LeaseLost:
                Interlocked.Add(ref _count, Value(state, "Lost"));
                break;
            case OutboxEventIds.MarkDispatchedFailed:
                Interlocked.Add(ref _count, Value(state, "Count"));
                break;
        }
    }

    public void Dispose()
    {
    }

    private static int Value<TState>(TState state, string name)
    {
        if (state is IReadOnlyList<KeyValuePair<string, object?>> values)
        {
            foreach (var (key, value) in values)
            {
                if (key == name && value is int count)
                {
                    return count;
                }
            }
        }

        throw new InvalidOperationException($"a log event without its {name} value");
    }
}
