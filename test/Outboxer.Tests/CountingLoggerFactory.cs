using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Outboxer.Tests;

/// <summary>A logger factory that counts log events by event id and keeps their text.</summary>
internal sealed class CountingLoggerFactory : ILoggerFactory
{
    private readonly ConcurrentQueue<(string Category, EventId Id, string Text)> _events = new();

    public IReadOnlyList<(string Category, EventId Id, string Text)> Events => _events.ToArray();

    public int Count(int eventId) => _events.Count(e => e.Id.Id == eventId);

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException();

    public void Dispose()
    {
    }

    private sealed class Logger(CountingLoggerFactory owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._events.Enqueue((category, eventId, formatter(state, exception)));
    }
}
