using Outboxer.Providers;
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

    /// <summary>Creates a store over this test's table that keeps leases on the database server's clock (its default; the rest of the suite moves time by hand).</summary>
    protected abstract RelationalOutboxStore CreateStoreOnDatabaseClock();

    /// <summary>Gets the statement that moves every lease of this test's table an hour back, as if an hour passed on the server's clock.</summary>
    protected abstract string LeasesAnHourEarlierSql { get; }

    [Fact]
    public async Task On_the_database_clock_a_lease_lasts_from_the_servers_time_whatever_the_dispatchers_clocks_say()
    {
        var store = CreateStoreOnDatabaseClock();
        var id = await store.AddWithinTransactionAsync(NewMessage("leased by the server's clock"), null, Ct);

        // A dispatcher whose clock is an hour behind claims for 30 s; one whose clock is an hour ahead finds the row still leased.
        var behind = DateTimeOffset.UtcNow.AddHours(-1);
        var ahead = DateTimeOffset.UtcNow.AddHours(1);
        var held = Assert.Single(await store.ClaimAsync(10, behind, behind.AddSeconds(30), Ct));
        Assert.Empty(await store.ClaimAsync(10, ahead, ahead.AddSeconds(30), Ct));
        var lockedUntil = await ReadLockedUntilAsync(id);
        Assert.InRange(lockedUntil - DateTimeOffset.UtcNow, TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(31));

        // Once the lease ran out on the server's clock, the row is claimed again and only the new claim can mark it.
        await MoveLeasesAnHourEarlierAsync();
        var taken = Assert.Single(await store.ClaimAsync(10, ahead, ahead.AddSeconds(30), Ct));
        Assert.Equal(0, await store.MarkDispatchedAsync([id], held.LeaseToken, DateTimeOffset.UtcNow, Ct));
        Assert.Equal(1, await store.MarkDispatchedAsync([id], taken.LeaseToken, DateTimeOffset.UtcNow, Ct));
    }

    [Fact]
    public async Task On_the_database_clock_a_message_written_already_claimed_is_leased_from_the_servers_time()
    {
        var store = CreateStoreOnDatabaseClock();
        var behind = DateTimeOffset.UtcNow.AddHours(-1);
        var id = await store.AddLeasedWithinTransactionAsync(NewMessage("sent after commit"), null, behind, behind.AddSeconds(30), 42, Ct);

        var ahead = DateTimeOffset.UtcNow.AddHours(1);
        Assert.Empty(await store.ClaimAsync(10, ahead, ahead.AddSeconds(30), Ct));
        Assert.InRange(await ReadLockedUntilAsync(id) - DateTimeOffset.UtcNow, TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(31));

        await MoveLeasesAnHourEarlierAsync();
        var taken = Assert.Single(await store.ClaimAsync(10, ahead, ahead.AddSeconds(30), Ct));
        Assert.Equal(2, taken.Attempts);
        Assert.Equal(0, await store.MarkDispatchedAsync([id], 42, DateTimeOffset.UtcNow, Ct));
    }

    private async Task<DateTimeOffset> ReadLockedUntilAsync(long id)
    {
        await using var connection = await OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT locked_until FROM {QuoteTable(OutboxTable)} WHERE id = {id}";
        await using var reader = await command.ExecuteReaderAsync(Ct);
        Assert.True(await reader.ReadAsync(Ct));
        return ReadInstant(reader, 0);
    }

    private async Task MoveLeasesAnHourEarlierAsync()
    {
        await using var connection = await OpenConnectionAsync();
        await ExecuteAsync(connection, null, LeasesAnHourEarlierSql);
    }

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
