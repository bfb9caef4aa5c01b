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
/// the dispatcher's polls stay the safety net. When commits come faster than a watcher's round trips (a busy machine), a watcher takes
/// every queued transaction at once and asks which of them have ended in one statement (<c>pg_try_advisory_xact_lock</c>), so a backlog
/// of watches costs one round trip, not one each. Each transaction has a key of its own, so a watcher never waits for a later transaction
/// of the same session, and no enqueuing transaction ever waits for a watcher.
/// </remarks>
internal sealed class CommitWatcher
{
    private const int Watchers = 2;

    /// <summary>The most transactions one watcher checks in one round trip.</summary>
    private const int MaxWatched = 256;

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
            // Autocommit: a lock is taken when the watched transaction ends and released when this statement ends, in the server.
            var wait = PostgreSqlDialect.Command(connection, null, "SELECT pg_advisory_xact_lock(@key, @transaction)");

            // The ones of a list that are still open, in one round trip: a lock that is free now belongs to a transaction that ended.
            var open = PostgreSqlDialect.Command(connection, null, "SELECT k FROM unnest(CAST(@transactions AS integer[])) WITH ORDINALITY AS t(k, n) WHERE NOT pg_try_advisory_xact_lock(@key, k) ORDER BY n");
            await using (wait.ConfigureAwait(false))
            await using (open.ConfigureAwait(false))
            {
                var transaction = new NpgsqlParameter<int>("transaction", 0);
                wait.Parameters.Add(new NpgsqlParameter<int>("key", _key));
                wait.Parameters.Add(transaction);
                // As the text of an integer[] ('{1,2,3}'): a slim data source without EnableArrays() cannot write arrays.
                var transactions = new NpgsqlParameter<string>("transactions", "{}");
                open.Parameters.Add(new NpgsqlParameter<int>("key", _key));
                open.Parameters.Add(transactions);
                var watched = new List<int>();
                while (await _transactions.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    // One transaction queued: wait for it. Several (commits came faster than one round trip each): first ask which have
                    // ended, all at once, and wake the dispatcher for those; then wait for the oldest still open, and so on.
                    do
                    {
                        while (watched.Count < MaxWatched && _transactions.Reader.TryRead(out var key))
                        {
                            watched.Add(key);
                        }

                        if (watched.Count == 0)
                        {
                            // The other watcher took what was queued.
                            break;
                        }

                        if (watched.Count > 1)
                        {
                            transactions.TypedValue = "{" + string.Join(",", watched.Select(static k => k.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "}";
                            var stillOpen = new List<int>(watched.Count);
                            var reader = await open.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                            await using (reader.ConfigureAwait(false))
                            {
                                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                                {
                                    stillOpen.Add(reader.GetInt32(0));
                                }
                            }

                            if (stillOpen.Count < watched.Count)
                            {
                                _wakeUp();
                            }

                            watched.Clear();
                            watched.AddRange(stillOpen);
                            if (watched.Count == 0)
                            {
                                continue;
                            }
                        }

                        transaction.TypedValue = watched[0];
                        await wait.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                        _wakeUp();
                        watched.RemoveAt(0);
                    }
                    while (watched.Count > 0);
                }
            }
        }
    }
}
