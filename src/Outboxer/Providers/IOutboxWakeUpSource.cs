namespace Outboxer.Providers;

/// <summary>
/// A store that can tell the dispatcher at once when another process committed new messages (through its database's notifications), so
/// that messages enqueued anywhere are dispatched without waiting for the check interval. Polling stays as the safety net.
/// </summary>
public interface IOutboxWakeUpSource
{
    /// <summary>
    /// Listens until <paramref name="cancellationToken"/> is cancelled, calling <paramref name="wakeUp"/> whenever a transaction that
    /// enqueued commits (also once right after listening starts, for commits that came before). Throws when the connection fails;
    /// the dispatcher then listens again after its check interval.
    /// </summary>
    /// <param name="wakeUp">Called on every notification; cheap and thread-safe.</param>
    /// <param name="cancellationToken">Stops listening.</param>
    /// <returns>A task that ends when listening stops.</returns>
    Task ListenAsync(Action wakeUp, CancellationToken cancellationToken);
}
