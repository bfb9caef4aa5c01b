using Npgsql;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.PostgreSql.Tests;

/// <summary>
/// The dispatcher on a store that claims by row lock (the PostgreSQL default): the batch stays locked, unwritten, while it publishes;
/// the settlement marks, releases and commits at once; a settlement that cannot commit publishes the batch again.
/// </summary>
public sealed class PostgreSqlClaimByRowLockTests : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly TemporarySchema _temporary = new("outboxer_rowlock");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private PostgreSqlOutboxStoreOptions Options => new() { SchemaName = Schema };

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _temporary.DisposeAsync();

    private string Schema => _temporary.Name;

    private NpgsqlDataSource DataSource => _temporary.DataSource;

    [Fact]
    public async Task While_a_batch_publishes_its_rows_are_locked_and_unwritten_and_the_settlement_marks_and_retries_them()
    {
        var store = new PostgreSqlOutboxStore(DataSource, Options);
        var ids = new List<long>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await store.AddWithinTransactionAsync(NewMessage($"m{i}"), null, Ct));
        }

        var publisher = new RecordingPublisher();
        var failedOnce = 0;
        publisher.Fail = m => m.Id == ids[1] && Interlocked.Exchange(ref failedOnce, 1) == 0 ? new OutboxException("broker said no", isTransient: true) : null;
        publisher.Hold();
        await using var outbox = new Outbox(store, publisher, new OutboxOptions { RetryDelay = TimeSpan.FromMilliseconds(10), CheckInterval = TimeSpan.FromMilliseconds(50) });
        var notifications = outbox.Dispatched;
        outbox.StartDispatcher();
        await publisher.Waiting.Task.WaitAsync(Bound, Ct);

        // Claimed: nothing written into the rows, and they are locked (another session cannot lock them without waiting).
        Assert.Equal([(0, false), (0, false), (0, false)], await ReadRowsAsync(ids));
        await using (var probe = await DataSource.OpenConnectionAsync(Ct))
        await using (var transaction = await probe.BeginTransactionAsync(Ct))
        {
            await using var nowait = new NpgsqlCommand($"SELECT id FROM \"{Schema}\".outbox_messages WHERE id = {ids[0]} FOR UPDATE NOWAIT", probe, transaction);
            var refused = await Assert.ThrowsAsync<PostgresException>(() => nowait.ExecuteNonQueryAsync(Ct));
            Assert.Equal(PostgresErrorCodes.LockNotAvailable, refused.SqlState);
        }

        publisher.Release();
        var dispatched = new HashSet<long>();
        while (dispatched.Count < 3)
        {
            dispatched.Add((await notifications.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct)).Id);
        }

        // One attempt each, and two for the message that failed once and was retried.
        Assert.Equal([(1, true), (2, true), (1, true)], await ReadRowsAsync(ids));
        Assert.Equal("OutboxException: broker said no", (await store.GetMessageAsync(ids[1], Ct))!.LastError);
    }

    [Fact]
    public async Task A_batch_whose_claim_session_ended_while_it_published_is_not_marked_and_is_published_again()
    {
        var store = new PostgreSqlOutboxStore(DataSource, Options);
        var id = await store.AddWithinTransactionAsync(NewMessage("cut"), null, Ct);
        var publisher = new RecordingPublisher();
        publisher.Hold();
        await using var outbox = new Outbox(store, publisher, new OutboxOptions { CheckInterval = TimeSpan.FromMilliseconds(50) });
        var errors = outbox.Errors;
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await publisher.Waiting.Task.WaitAsync(Bound, Ct);

        // The session that holds the row's lock is ended (an operator, a failover, or PostgreSQL after the lease), mid-publish.
        await using (var terminate = DataSource.CreateCommand($"""
            SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE n.nspname = '{Schema}' AND c.relname = 'outbox_messages' AND l.mode = 'RowShareLock' AND a.state = 'idle in transaction'
            """))
        {
            Assert.Equal(true, await terminate.ExecuteScalarAsync(Ct));
        }

        publisher.Release();
        // A claim that polled at that moment may have been ended too (its error says Claim); the batch's settlement must fail.
        OutboxError error;
        do
        {
            error = await errors.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        }
        while (error.Operation == OutboxOperation.Claim);

        Assert.Equal(OutboxOperation.MarkDispatched, error.Operation);

        // Confirmed but not marked: claimed again at once (the rollback freed it) and published a second time, then marked.
        Assert.Equal(id, (await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct)).Id);
        Assert.Equal(2, publisher.Published.Count(m => m.Id == id));
        Assert.Equal([(1, true)], await ReadRowsAsync([id]));
    }

    private static OutboxMessage NewMessage(string payload) => new(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = T0 };

    private async Task<(int Attempts, bool Dispatched)[]> ReadRowsAsync(IReadOnlyList<long> ids)
    {
        await using var command = DataSource.CreateCommand($"SELECT attempts, dispatched FROM \"{Schema}\".outbox_messages WHERE id = ANY(@ids) ORDER BY id");
        command.Parameters.AddWithValue("ids", ids.ToArray());
        await using var reader = await command.ExecuteReaderAsync(Ct);
        var rows = new List<(int, bool)>();
        while (await reader.ReadAsync(Ct))
        {
            rows.Add((reader.GetInt32(0), reader.GetBoolean(1)));
        }

        return [.. rows];
    }
}
