using Microsoft.Extensions.Logging;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// A logger factory for the in-process publishers that counts the republished messages the broker dropped: the NATS publisher's event
/// 4403 (JetStream acknowledged a duplicate) and the Redis publisher's event 4501 (the script found the message appended already). It
/// shows that the scenario did republish messages, and that the broker, not luck, kept the stream free of duplicates.
/// </summary>
internal sealed class DroppedDuplicateCounter : ILoggerFactory, ILogger
{
    /// <summary>The event ids of "the broker dropped a republished message" (samples/Outboxer.Relay prints a line for the same ones).</summary>
    public static readonly int[] EventIds = [4403, 4501];

    private int _count;

    public int Count => Volatile.Read(ref _count);

    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (EventIds.Contains(eventId.Id))
        {
            Interlocked.Increment(ref _count);
        }
    }

    public void Dispose()
    {
    }
}
