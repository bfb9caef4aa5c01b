using Microsoft.Extensions.Logging;
using Outboxer.Providers;
using Outboxer.Testing;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// The broker side of a guarantee scenario: where this run's messages go, how a dispatcher publishes there (in this process, or a
/// samples/Outboxer.Relay process told by its arguments), and how the consumer reads what arrived. One implementation per broker:
/// a RabbitMQ queue consumer, a JetStream ordered consumer over the whole stream, a Redis XRANGE reader over the whole stream.
/// </summary>
internal interface IGuaranteeBroker : IAsyncDisposable
{
    /// <summary>Gets the broker's name: the report's <c>broker</c> field, the relay's broker argument and eng/servers.sh's server name.</summary>
    string Name { get; }

    /// <summary>Gets the broker's name for people, for log lines.</summary>
    string DisplayName { get; }

    /// <summary>
    /// Gets whether the broker drops a second copy of a message it already stored (the report's <c>dedup</c> field). When it does, a
    /// scenario asserts 0 duplicates even after crashes; when it does not, duplicates after a crash are reported, not asserted.
    /// </summary>
    bool Deduplicates { get; }

    /// <summary>
    /// Gets whether the publisher tells when the broker dropped a republished message (NATS and Redis log it), so that the report can
    /// count them (<see cref="DroppedDuplicateCounter"/>).
    /// </summary>
    bool CountsDroppedDuplicates { get; }

    /// <summary>Gets the port the broker listens on, for a <see cref="TcpProxy"/> in front of it.</summary>
    int Port { get; }

    /// <summary>Gets the arguments after the schema that tell samples/Outboxer.Relay which publisher to use and where.</summary>
    IReadOnlyList<string> RelayArguments { get; }

    /// <summary>Creates this run's destination and starts reading it from the start; every message read is handed to <paramref name="arrived"/>.</summary>
    /// <param name="name">The run's unique name (scenario and a random suffix), from which the destination's name is made.</param>
    /// <param name="arrived">Called once per delivery or stream entry read, in read order.</param>
    /// <param name="cancellationToken">The test's token.</param>
    Task StartAsync(string name, Action<Arrival> arrived, CancellationToken cancellationToken);

    /// <summary>Points <paramref name="message"/> at this run's destination; <paramref name="key"/> is its ordering key, or <see langword="null"/>.</summary>
    void Route(OutboxMessage message, string? key);

    /// <summary>
    /// Creates a publisher for a dispatcher in this process; <paramref name="port"/>, when given, replaces the broker's port (a proxy),
    /// and <paramref name="loggerFactory"/> receives the publisher's log events.
    /// </summary>
    Task<IOutboxPublisher> CreatePublisherAsync(int? port = null, ILoggerFactory? loggerFactory = null);

    /// <summary>
    /// Counts the messages the destination holds now (a stream's entries), or <see langword="null"/> when it cannot tell (a queue the
    /// consumer drains). A stream's count must equal what the reader read: duplicates are counted from what is in the stream.
    /// </summary>
    Task<long?> CountStoredAsync(CancellationToken cancellationToken);
}
