using Outboxer.Providers;
using Xunit;

namespace Outboxer.Testing;

/// <summary>
/// The behaviour of a store that claims by row lock (<see cref="IOutboxLockingStore"/>), on top of
/// <see cref="RowLockingOutboxStoreConformanceTests"/>: a claim locks rows without writing them, other claims step over them, the
/// settlement updates each row once in the claim's transaction, a claim that is dropped frees its rows at once, and one that stays idle
/// past its hold is ended by the database.
/// </summary>
public abstract class LockedClaimOutboxStoreConformanceTests : RowLockingOutboxStoreConformanceTests
{
    private static readonly TimeSpan Hold = TimeSpan.FromSeconds(30);

    /// <summary>Creates a store over this test's table that claims by row lock, as the dispatcher's default.</summary>
    protected abstract RelationalOutboxStore CreateLockingStore();

    [Fact]
    public async Task A_locked_claim_writes_nothing_and_other_claims_step_over_its_rows()
    {
        var store = CreateLockingStore();
        Assert.True(store.ClaimsByRowLock);
        var ids = await AddAsync(store, 5);

        await using var first = await store.ClaimLockedAsync(3, DateTimeOffset.UtcNow, Hold, Ct);
        Assert.Equal(ids[..3], first.Messages.Select(m => m.Id));
        Assert.All(first.Messages, m => Assert.Equal(1, m.Attempts));
        Assert.Equal([(0, false), (0, false), (0, false)], await ReadRowsAsync(ids[..3]));

        // Neither a locked claim nor a leasing one waits for the first claim's rows: they take the rest.
        await using var second = await store.ClaimLockedAsync(3, DateTimeOffset.UtcNow, Hold, Ct);
        Assert.Equal(ids[3..], second.Messages.Select(m => m.Id));
        Assert.Empty(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task Settling_marks_releases_and_dead_letters_each_row_once_and_counts_the_attempt()
    {
        var store = CreateLockingStore();
        var ids = await AddAsync(store, 4);
        var retryAt = DateTimeOffset.UtcNow.AddHours(1);

        await using (var claim = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, Hold, Ct))
        {
            await claim.SettleAsync(
                [ids[0], ids[1]],
                [new OutboxFailedAttempt(ids[2], "broker down", retryAt, OutcomeUnknown: true), new OutboxFailedAttempt(ids[3], "unroutable", null, false)],
                T0,
                Ct);
        }

        Assert.Equal([(1, true), (1, true), (1, false), (1, false)], await ReadRowsAsync(ids));
        var retrying = await store.GetMessageAsync(ids[2], Ct);
        Assert.Equal("broker down", retrying!.LastError);
        Assert.Equal(1, retrying.UncertainAttempts);
        Assert.Null(retrying.DeadLetteredAt);
        var deadLetter = Assert.Single(await store.GetDeadLettersAsync(10, cancellationToken: Ct));
        Assert.Equal(ids[3], deadLetter.Id);
        Assert.Equal("unroutable", deadLetter.LastError);

        // The released message waits for its retry time; nothing else is claimable.
        await using var next = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, Hold, Ct);
        Assert.Empty(next.Messages);
    }

    [Fact]
    public async Task A_claim_disposed_without_settling_frees_its_rows_at_once_without_counting_an_attempt()
    {
        var store = CreateLockingStore();
        var ids = await AddAsync(store, 2);

        await using (var dropped = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, Hold, Ct))
        {
            Assert.Equal(2, dropped.Messages.Count);
        }

        await using var again = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, Hold, Ct);
        Assert.Equal(ids, again.Messages.Select(m => m.Id));
        Assert.All(again.Messages, m => Assert.Equal(1, m.Attempts));
    }

    [Fact]
    public async Task A_claim_idle_past_its_hold_is_ended_by_the_database_so_others_take_its_rows_and_its_settlement_fails()
    {
        var store = CreateLockingStore();
        var ids = await AddAsync(store, 2);
        var stalled = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(300), Ct);
        await using (stalled)
        {
            // The database, not this process, ends the stalled claim: wait (bounded) until another claim can take the rows.
            var deadline = TimeProvider.System.GetTimestamp() + (TimeProvider.System.TimestampFrequency * 30);
            IOutboxLockedClaim? taken = null;
            while (taken is null)
            {
                Assert.True(TimeProvider.System.GetTimestamp() < deadline, "The database did not end the idle claim within 30 s.");
                var claim = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, Hold, Ct);
                if (claim.Messages.Count > 0)
                {
                    taken = claim;
                }
                else
                {
                    await claim.DisposeAsync();
                    await Task.Delay(50, Ct);
                }
            }

            await using (taken)
            {
                Assert.Equal(ids, taken.Messages.Select(m => m.Id));
                var failure = await Assert.ThrowsAsync<OutboxException>(() => stalled.SettleAsync(ids, [], T0, Ct));
                Assert.Contains("settle", failure.Message, StringComparison.Ordinal);
                await taken.SettleAsync(ids, [], T0, Ct);
            }
        }

        Assert.Equal([(1, true), (1, true)], await ReadRowsAsync(ids));
    }

    [Fact]
    public async Task While_a_keyed_message_is_locked_the_next_message_of_its_key_is_not_claimable()
    {
        var store = CreateLockingStore();
        var first = await store.AddWithinTransactionAsync(new OutboxMessage("k1") { MessageId = Guid.CreateVersion7(), CreatedAt = T0, OrderingKey = "order-7" }, null, Ct);
        var second = await store.AddWithinTransactionAsync(new OutboxMessage("k2") { MessageId = Guid.CreateVersion7(), CreatedAt = T0, OrderingKey = "order-7" }, null, Ct);
        var other = await store.AddWithinTransactionAsync(new OutboxMessage("x") { MessageId = Guid.CreateVersion7(), CreatedAt = T0, OrderingKey = "order-8" }, null, Ct);

        await using (var claim = await store.ClaimLockedAsync(1, DateTimeOffset.UtcNow, Hold, Ct))
        {
            Assert.Equal(first, Assert.Single(claim.Messages).Id);
            await using var next = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, Hold, Ct);
            Assert.Equal(other, Assert.Single(next.Messages).Id);
            await claim.SettleAsync([first], [], T0, Ct);
            await next.SettleAsync([other], [], T0, Ct);
        }

        await using var after = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, Hold, Ct);
        Assert.Equal(second, Assert.Single(after.Messages).Id);
    }

    [Fact]
    public async Task A_locked_claim_takes_a_message_whose_send_after_commit_lease_ran_out_and_fences_the_sender()
    {
        var store = CreateLockingStore();
        var id = await store.AddLeasedWithinTransactionAsync(NewMessage("sent after commit"), null, T0, T0.AddSeconds(30), 42, Ct);

        // The claim runs on the database's clock or on the time it is given: either way the sender's lease (until T0 + 30 s) is over.
        await using (var claim = await store.ClaimLockedAsync(10, DateTimeOffset.UtcNow, Hold, Ct))
        {
            var message = Assert.Single(claim.Messages);
            Assert.Equal(2, message.Attempts);
            await claim.SettleAsync([id], [], T0, Ct);
        }

        Assert.Equal(0, await store.MarkDispatchedAsync([id], 42, T0, Ct));
        Assert.Equal([(2, true)], await ReadRowsAsync([id]));
    }

    private static async Task<long[]> AddAsync(RelationalOutboxStore store, int count)
    {
        var ids = new long[count];
        for (var i = 0; i < count; i++)
        {
            ids[i] = await store.AddWithinTransactionAsync(NewMessage($"m{i}"), null, Ct);
        }

        return ids;
    }

    /// <summary>Reads each row's attempts and whether it is dispatched, from a connection of the test's own.</summary>
    private async Task<(int Attempts, bool Dispatched)[]> ReadRowsAsync(IReadOnlyList<long> ids)
    {
        await using var connection = await OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT attempts, dispatched FROM {QuoteTable(OutboxTable)} WHERE id IN ({string.Join(",", ids)}) ORDER BY id";
        await using var reader = await command.ExecuteReaderAsync(Ct);
        var rows = new List<(int, bool)>();
        while (await reader.ReadAsync(Ct))
        {
            rows.Add((Convert.ToInt32(reader.GetValue(0), System.Globalization.CultureInfo.InvariantCulture), Convert.ToBoolean(reader.GetValue(1), System.Globalization.CultureInfo.InvariantCulture)));
        }

        return [.. rows];
    }
}
