using System.Threading.Channels;
using Npgsql;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.PostgreSql.Tests;

/// <summary>Push wake-ups: a commit in another process wakes the dispatcher through LISTEN/NOTIFY, long before its check interval.</summary>
public sealed class PostgreSqlWakeUpTests : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private readonly TemporarySchema _temporary = new("outboxer_wake");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _temporary.DisposeAsync();

    private string Schema => _temporary.Name;

    private NpgsqlDataSource DataSource => _temporary.DataSource;

    [Fact]
    public async Task A_commit_by_another_process_wakes_the_dispatcher_at_once()
    {
        var options = new PostgreSqlOutboxStoreOptions { SchemaName = Schema };
        var publisher = new RecordingPublisher();
        await using var dispatcherSide = new Outbox(new PostgreSqlOutboxStore(DataSource, options), publisher, new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) });
        var dispatched = dispatcherSide.Dispatched;
        dispatcherSide.StartDispatcher();

        // "Another process": its own store and data source, and no dispatcher, so nothing local wakes the dispatcher above.
        await using var otherDataSource = PostgreSqlServer.CreateDataSource();
        var producer = new PostgreSqlOutboxStore(otherDataSource, options);
        for (var i = 0; i < 3; i++)
        {
            var message = new OutboxMessage($"from elsewhere {i}") { MessageId = Guid.NewGuid(), CreatedAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero) };
            await producer.AddWithinTransactionAsync(message, null, Ct);

            var notification = await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
            Assert.Equal(message.Id, notification.Id);
        }
    }

    [Fact]
    public async Task The_insert_trigger_notifies_once_per_committed_transaction_and_never_for_a_rollback()
    {
        var store = new PostgreSqlOutboxStore(DataSource, new PostgreSqlOutboxStoreOptions { SchemaName = Schema });
        await store.MigrateAsync(Ct);
        await using var listener = await DataSource.OpenConnectionAsync(Ct);
        var notifications = 0;
        listener.Notification += (_, e) => Interlocked.Increment(ref notifications);
        await using (var listen = new NpgsqlCommand($"LISTEN \"{store.NotificationChannel}\"", listener))
        {
            await listen.ExecuteNonQueryAsync(Ct);
        }

        await using (var connection = await DataSource.OpenConnectionAsync(Ct))
        {
            await using (var rolledBack = await connection.BeginTransactionAsync(Ct))
            {
                await store.AddAsync(rolledBack, NewMessage(), Ct);
                await rolledBack.RollbackAsync(Ct);
            }

            await using var committed = await connection.BeginTransactionAsync(Ct);
            for (var i = 0; i < 5; i++)
            {
                await store.AddAsync(committed, NewMessage(), Ct);
            }

            await committed.CommitAsync(Ct);
        }

        // Notifications arrive in commit order: a marker sent after the commit proves every earlier notification has arrived.
        await using (var marker = DataSource.CreateCommand($"NOTIFY \"{store.NotificationChannel}\", 'marker'"))
        {
            await marker.ExecuteNonQueryAsync(Ct);
        }

        while (Volatile.Read(ref notifications) < 2)
        {
            await listener.WaitAsync(Ct).WaitAsync(Bound, Ct);
        }

        Assert.Equal(2, notifications);
        Assert.Contains("CREATE OR REPLACE TRIGGER", PostgreSqlOutboxStore.GetCreateScript(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_applications_own_commit_of_a_quiet_enqueue_wakes_the_listener_through_a_lock_the_commit_releases()
    {
        using var stopListening = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var (store, wakes, listening) = await StartListeningAsync(stopListening.Token);

        foreach (var commit in new[] { true, false })
        {
            await using var connection = await DataSource.OpenConnectionAsync(Ct);
            await using var transaction = await connection.BeginTransactionAsync(Ct);
            await store.AddAsync(transaction, NewMessage(), Ct);

            // The watcher waits for this transaction's lock (so it has not woken anyone), and no NOTIFY is on its way (a quiet insert).
            await WaitForWatcherAsync(connection.ProcessID);
            Assert.False(wakes.Reader.TryRead(out _));

            if (commit)
            {
                await transaction.CommitAsync(Ct);
            }
            else
            {
                await transaction.RollbackAsync(Ct);
            }

            await wakes.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        }

        await stopListening.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => listening);
    }

    [Fact]
    public async Task Commits_queued_behind_a_long_transaction_wake_the_listener_together_while_one_still_open_is_waited_for()
    {
        using var stopListening = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var (store, wakes, listening) = await StartListeningAsync(stopListening.Token);

        // Two long transactions keep both watchers waiting; meanwhile five transactions commit and a sixth stays open.
        var open = new List<(NpgsqlConnection Connection, NpgsqlTransaction Transaction)>();
        for (var i = 0; i < 3; i++)
        {
            var connection = await DataSource.OpenConnectionAsync(Ct);
            var transaction = await connection.BeginTransactionAsync(Ct);
            await store.AddAsync(transaction, NewMessage(), Ct);
            open.Add((connection, transaction));
            if (i < 2)
            {
                await WaitForWatcherAsync(connection.ProcessID);
            }
        }

        for (var i = 0; i < 5; i++)
        {
            await using var connection = await DataSource.OpenConnectionAsync(Ct);
            await using var transaction = await connection.BeginTransactionAsync(Ct);
            await store.AddAsync(transaction, NewMessage(), Ct);
            await transaction.CommitAsync(Ct);
        }

        Assert.False(wakes.Reader.TryRead(out _));

        // The first long one commits: its watcher wakes the listener, then checks everything queued behind it at once (five ended:
        // a second wake, although the first transaction in that queue is still open) and waits for the one still open.
        await open[0].Transaction.CommitAsync(Ct);
        await wakes.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await wakes.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await WaitForWatcherAsync(open[2].Connection.ProcessID);
        Assert.False(wakes.Reader.TryRead(out _));

        await open[2].Transaction.CommitAsync(Ct);
        await wakes.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await open[1].Transaction.CommitAsync(Ct);
        await wakes.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        foreach (var (connection, transaction) in open)
        {
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
        }

        await stopListening.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => listening);
    }

    /// <summary>Starts a store's listener on this test's table, counting its wake-ups, past the one when listening starts.</summary>
    private async Task<(PostgreSqlOutboxStore Store, Channel<bool> Wakes, Task Listening)> StartListeningAsync(CancellationToken stop)
    {
        var store = new PostgreSqlOutboxStore(DataSource, new PostgreSqlOutboxStoreOptions { SchemaName = Schema });
        await store.MigrateAsync(Ct);
        var wakes = Channel.CreateUnbounded<bool>();
        var listening = store.ListenAsync(() => wakes.Writer.TryWrite(true), stop);
        await wakes.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        return (store, wakes, listening);
    }

    private async Task WaitForWatcherAsync(int backend)
    {
        var deadline = TimeProvider.System.GetTimestamp();
        while (true)
        {
            // A session waits for an advisory lock that the enqueuing session holds.
            await using var command = DataSource.CreateCommand($"""
                SELECT count(*) FROM pg_locks AS waiting
                JOIN pg_locks AS held ON held.locktype = 'advisory' AND held.granted AND held.pid = {backend}
                    AND held.classid = waiting.classid AND held.objid = waiting.objid AND held.objsubid = waiting.objsubid
                WHERE waiting.locktype = 'advisory' AND NOT waiting.granted
                """);
            if ((long)(await command.ExecuteScalarAsync(Ct))! > 0)
            {
                return;
            }

            Assert.True(TimeProvider.System.GetElapsedTime(deadline) < Bound, "No commit watcher waited for the enqueuing transaction.");
            await Task.Yield();
        }
    }

    [Fact]
    public async Task A_process_whose_dispatcher_listens_does_not_notify_for_its_own_enqueues_and_one_that_only_enqueues_does()
    {
        var options = new PostgreSqlOutboxStoreOptions { SchemaName = Schema };
        var dispatching = new PostgreSqlOutboxStore(DataSource, options);
        await dispatching.MigrateAsync(Ct);
        await using var listener = await DataSource.OpenConnectionAsync(Ct);
        var payloads = new System.Collections.Concurrent.ConcurrentQueue<string>();
        listener.Notification += (_, e) => payloads.Enqueue(e.Payload);
        await using (var listen = new NpgsqlCommand($"LISTEN \"{dispatching.NotificationChannel}\"", listener))
        {
            await listen.ExecuteNonQueryAsync(Ct);
        }

        // This store's own dispatcher listening, as a running Outbox dispatcher does.
        using var stopListening = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ownListener = dispatching.ListenAsync(() => listening.TrySetResult(), stopListening.Token);
        await listening.Task.WaitAsync(Bound, Ct);

        await using (var connection = await DataSource.OpenConnectionAsync(Ct))
        {
            await using (var single = await connection.BeginTransactionAsync(Ct))
            {
                await dispatching.AddAsync(single, NewMessage(), Ct);
                await single.CommitAsync(Ct);
            }

            await using (var bulk = await connection.BeginTransactionAsync(Ct))
            {
                await dispatching.AddRangeAsync(bulk, [NewMessage(), NewMessage()], Ct);
                await bulk.CommitAsync(Ct);
            }

            // Another process: its own store instance, with nobody listening in it.
            await using (var elsewhere = await connection.BeginTransactionAsync(Ct))
            {
                await new PostgreSqlOutboxStore(DataSource, options).AddAsync(elsewhere, NewMessage(), Ct);
                await elsewhere.CommitAsync(Ct);
            }

            // And the same store once its dispatcher stopped listening.
            await stopListening.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ownListener);
            await using (var afterStop = await connection.BeginTransactionAsync(Ct))
            {
                await dispatching.AddAsync(afterStop, NewMessage(), Ct);
                await afterStop.CommitAsync(Ct);
            }
        }

        await using (var marker = DataSource.CreateCommand($"NOTIFY \"{dispatching.NotificationChannel}\", 'marker'"))
        {
            await marker.ExecuteNonQueryAsync(Ct);
        }

        while (!payloads.Contains("marker"))
        {
            await listener.WaitAsync(Ct).WaitAsync(Bound, Ct);
        }

        Assert.Equal(["", "", "marker"], payloads);
        await using var count = DataSource.CreateCommand($"SELECT count(*) FROM \"{Schema}\".outbox_messages");
        Assert.Equal(5L, await count.ExecuteScalarAsync(Ct));
    }

    [Fact]
    public async Task Without_notify_on_commit_no_trigger_is_created_and_messages_are_still_dispatched()
    {
        var options = new PostgreSqlOutboxStoreOptions { SchemaName = Schema, NotifyOnCommit = false };
        Assert.DoesNotContain("TRIGGER", PostgreSqlOutboxStore.GetCreateScript(options), StringComparison.Ordinal);
        var store = new PostgreSqlOutboxStore(DataSource, options);
        await store.MigrateAsync(Ct);
        await using (var triggers = DataSource.CreateCommand($"SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{Schema}' AND NOT t.tgisinternal"))
        {
            Assert.Equal(0L, await triggers.ExecuteScalarAsync(Ct));
        }

        var publisher = new RecordingPublisher();
        await using var outbox = new Outbox(store, publisher);
        await outbox.SendAsync(new OutboxMessage("polled"), Ct);

        Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));
        Assert.Single(publisher.Published);
    }

    private static OutboxMessage NewMessage() => new("m") { MessageId = Guid.NewGuid(), CreatedAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero) };
}
