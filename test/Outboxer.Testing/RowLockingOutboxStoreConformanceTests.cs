using Xunit;

namespace Outboxer.Testing;

/// <summary>
/// The behaviour of a store whose database lets several transactions write at once and locks only the rows each one writes
/// (PostgreSQL, MySQL): on top of <see cref="OutboxStoreConformanceTests"/>, claims neither wait for nor see another transaction's rows.
/// </summary>
/// <remarks>
/// SQLite derives from <see cref="OutboxStoreConformanceTests"/> alone: it lets one transaction write at a time, so while one is open a
/// claim (an <c>UPDATE</c>) waits for the whole database rather than for a row, and there is no row lock to skip.
/// </remarks>
public abstract class RowLockingOutboxStoreConformanceTests : OutboxStoreConformanceTests
{
    /// <summary>Gets how long the sessions of <see cref="OutboxStoreConformanceTests.OpenConnectionAsync"/> wait for a row lock before the statement fails.</summary>
    protected abstract TimeSpan LockTimeout { get; }

    [Fact]
    public async Task A_claim_skips_rows_another_transaction_has_locked_instead_of_waiting_for_them()
    {
        var store = CreateStore();
        var ids = new List<long>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await store.AddWithinTransactionAsync(NewMessage($"m{i}"), null, Ct));
        }

        await using (var blocker = await OpenConnectionAsync())
        await using (var transaction = await blocker.BeginTransactionAsync(Ct))
        {
            await ExecuteAsync(blocker, transaction, $"SELECT id FROM {QuoteTable(OutboxTable)} WHERE id = {ids[0]} FOR UPDATE");

            // A claim that waited would fail after the sessions' lock timeout rather than hang.
            var started = TimeProvider.System.GetTimestamp();
            var claimed = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);
            Assert.Equal(ids[1..], claimed.Select(m => m.Id));
            Assert.True(TimeProvider.System.GetElapsedTime(started) < LockTimeout, "The claim waited for the lock.");
            await transaction.RollbackAsync(Ct);
        }

        Assert.Equal(ids[0], Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
    }

    [Fact]
    public async Task A_message_enqueued_in_a_still_open_transaction_is_invisible_to_claims_until_commit()
    {
        var store = CreateStore();
        await store.MigrateAsync(Ct);
        await using var connection = await OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync(Ct);
        var id = await store.AddAsync(transaction, NewMessage("in flight"), Ct);

        Assert.Empty(await CreateStore().ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        await transaction.CommitAsync(Ct);

        Assert.Equal(id, Assert.Single(await CreateStore().ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
    }
}
