using System.Threading.Channels;
using Npgsql;

namespace Outboxer.PostgreSql;

/// <summary>
/// Learns when the application commits a transaction that enqueued through this process's outbox, without polling: such an insert took
/// a shared transaction-scoped advisory lock on (the table's key, a random key of that transaction), and a watcher waits for that lock in
/// exclusive mode on a connection of its own. PostgreSQL grants it the moment the transaction commits or rolls back; the watcher's
/// statement ends (releasing it at once) and the dispatcher is woken. A rollback wakes it for nothing, which costs one empty claim.
/// </summary>
/// <remarks>
/// Two watchers run, so that one long transaction delays the wake-up of at most the transactions queued behind it on the same watcher;
/// the dispatcher's polls stay the safety net. Each transaction has a key of its own, so a watcher never waits for a later transaction
/// of the same session, and no enqueuing transaction ever waits for a watcher.
/// </remarks>
internal sealed class CommitWatcher
{
    private const int Watchers = 2;

    private readonly NpgsqlDataSource _dataSource;
    private readonly int _key;
    private readonly Action _wakeUp;
    private readonly Channel<int> _transactions = Channel.CreateUnbounded<int>(new UnboundedChannelOptions { SingleWriter = false, SingleReader = false });

    public CommitWatcher(NpgsqlDataSource dataSource, int key, Action wakeUp)
    {
        _dataSource = dataSource;
        _key = key;
        _wakeUp = wakeUp;
    }

    /// <summary>Queues the key of a transaction that just inserted and is still open (the dialect reports each transaction once).</summary>
    public void Watch(int transactionKey) => _transactions.Writer.TryWrite(transactionKey);

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
            var wait = PostgreSqlDialect.Command(connection, null, "SELECT pg_advisory_xact_lock(@key, @transaction)");
            await using (wait.ConfigureAwait(false))
            {
                var transaction = new NpgsqlParameter<int>("transaction", 0);
                wait.Parameters.Add(new NpgsqlParameter<int>("key", _key));
                wait.Parameters.Add(transaction);
                await foreach (var key in _transactions.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                {
                    transaction.TypedValue = key;
                    await wait.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    _wakeUp();
                }
            }
        }
    }
}
