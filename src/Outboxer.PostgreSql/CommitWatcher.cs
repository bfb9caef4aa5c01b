using System.Collections.Concurrent;
using System.Threading.Channels;
using Npgsql;

namespace Outboxer.PostgreSql;

/// <summary>
/// Learns when the application commits a transaction that enqueued through this process's outbox, without polling: such an insert took
/// a shared transaction-scoped advisory lock on (the table's key, its backend's process id), and a watcher waits for that lock in
/// exclusive mode on a connection of its own. PostgreSQL grants it the moment the transaction commits or rolls back; the watcher's
/// statement ends (releasing it at once) and the dispatcher is woken. A rollback wakes it for nothing, which costs one empty claim.
/// </summary>
/// <remarks>
/// Two watchers run, so that one long transaction delays the wake-up of at most the transactions queued behind it on the same watcher;
/// the dispatcher's polls stay the safety net. A watcher's pending request is queued ahead of later shared requests on the same key,
/// so a new transaction on the same backend waits for the watcher to take and drop the lock: the instant after the commit it watched.
/// </remarks>
internal sealed class CommitWatcher
{
    private const int Watchers = 2;

    private readonly NpgsqlDataSource _dataSource;
    private readonly int _key;
    private readonly Action _wakeUp;
    private readonly Channel<int> _backends = Channel.CreateUnbounded<int>(new UnboundedChannelOptions { SingleWriter = false, SingleReader = false });
    private readonly ConcurrentDictionary<int, byte> _queued = new();

    public CommitWatcher(NpgsqlDataSource dataSource, int key, Action wakeUp)
    {
        _dataSource = dataSource;
        _key = key;
        _wakeUp = wakeUp;
    }

    /// <summary>Queues the backend whose open transaction just inserted, unless it is queued already (each message of a transaction inserts).</summary>
    public void Watch(int backendProcessId)
    {
        if (_queued.TryAdd(backendProcessId, 0))
        {
            _backends.Writer.TryWrite(backendProcessId);
        }
    }

    /// <summary>Runs the watchers until <paramref name="cancellationToken"/> is cancelled or a watcher's connection fails.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var watchers = new Task[Watchers];
        for (var i = 0; i < Watchers; i++)
        {
            watchers[i] = WatchAsync(cancellationToken);
        }

        await Task.WhenAll(watchers).ConfigureAwait(false);
    }

    private async Task WatchAsync(CancellationToken cancellationToken)
    {
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            // Autocommit: the lock is taken when the watched transaction ends and released when this statement ends, in the server.
            var wait = PostgreSqlDialect.Command(connection, null, "SELECT pg_advisory_xact_lock(@key, @backend)");
            await using (wait.ConfigureAwait(false))
            {
                var backend = new NpgsqlParameter<int>("backend", 0);
                wait.Parameters.Add(new NpgsqlParameter<int>("key", _key));
                wait.Parameters.Add(backend);
                await foreach (var pid in _backends.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                {
                    // Unqueued before waiting: an insert of the next transaction on that backend, during the wait, queues it again.
                    _queued.TryRemove(pid, out _);
                    backend.TypedValue = pid;
                    await wait.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    _wakeUp();
                }
            }
        }
    }
}
