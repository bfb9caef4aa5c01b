using System.Data.Common;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Providers;
using Xunit;

namespace Outboxer.Testing;

/// <summary>
/// The migrations every relational store must survive, against its real database: a table of layout version 1 (0.1.0-preview.1, from
/// its exact DDL) with rows in every state is migrated in place, keeps every row's state, and publishes each pending row exactly once
/// afterwards; newer tables are refused; concurrent migrators apply each step once. A store's test class derives from this and gives
/// each test instance a table of its own.
/// </summary>
public abstract class OutboxSchemaConformanceTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>Gets a token that is cancelled when the test is aborted.</summary>
    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Gets the quoted (and qualified, where needed) name of this test's outbox table, for raw SQL.</summary>
    protected abstract string Table { get; }

    /// <summary>Gets the DDL with which 0.1.0-preview.1 created this test's table (the captured fixture, with its names filled in).</summary>
    protected abstract string Version1Script { get; }

    /// <summary>Creates a store over this test's table; each call returns a new instance.</summary>
    /// <param name="migrate">Whether the store creates and migrates the table (<c>CreateTableIfMissing</c>).</param>
    protected abstract RelationalOutboxStore CreateStore(bool migrate);

    /// <summary>Opens a connection to the store's database.</summary>
    protected abstract Task<DbConnection> OpenConnectionAsync();

    /// <summary>Gets the statements that mark this test's table with layout <paramref name="version"/> the way the store records versions.</summary>
    protected abstract string MarkVersionSql(int version);

    /// <summary>Gets the SQL expression for the parameter of <paramref name="column"/> in a raw insert (a cast where the database needs one).</summary>
    protected virtual string ValueOf(string column) => "@" + column;

    /// <summary>Converts a time to what the database stores in its timestamp columns.</summary>
    protected virtual object Timestamp(DateTimeOffset value) => value.ToUniversalTime();

    /// <summary>Prepares the database for this test (a schema or file of its own).</summary>
    public virtual ValueTask InitializeAsync() => ValueTask.CompletedTask;

    /// <summary>Removes what the test created.</summary>
    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task A_version_1_table_keeps_every_row_state_through_the_migration_and_publishes_each_pending_row_exactly_once()
    {
        var rows = await CreateVersion1TableWithRowsAsync();
        var before = await ReadRowsAsync();
        var store = CreateStore(migrate: true);
        Assert.Equal(1, (await store.GetSchemaStatusAsync(Ct)).Version);

        var status = await store.MigrateAsync(Ct);

        Assert.True(status.IsCurrent);
        Assert.Equal(store.LatestVersion, (await CreateStore(migrate: false).GetSchemaStatusAsync(Ct)).Version);
        Assert.Equal(before, await ReadRowsAsync());
        var deadLetter = Assert.Single(await store.GetDeadLettersAsync(10, 0, Ct));
        Assert.Equal(0, deadLetter.UncertainAttempts);

        var publisher = new RecordingPublisher();
        var time = new FakeTimeProvider(T0.AddDays(1));
        await using (var outbox = new Outbox(CreateStore(migrate: false), publisher, timeProvider: time))
        {
            await outbox.DispatchPendingAsync(Ct);
            var statistics = await outbox.GetStatisticsAsync(Ct);
            Assert.Equal(0, statistics.Pending);
            Assert.Equal(1, statistics.DeadLettered);
        }

        var pending = rows.Where(r => r.Pending).Select(r => r.MessageId).ToHashSet();
        Assert.Equal(pending.Count, publisher.Published.Count);
        Assert.Equal(pending, publisher.Published.Select(m => m.MessageId).ToHashSet());
        var ordered = publisher.Published.Where(m => m.OrderingKey == "key").Select(m => Encoding.UTF8.GetString(m.Payload)).ToList();
        Assert.Equal(["ordered 1", "ordered 2"], ordered);
        var retried = Assert.Single(publisher.Published, m => Encoding.UTF8.GetString(m.Payload) == "retried");
        Assert.Equal(3, retried.Attempts);
        Assert.Equal("direct", retried.Options.GetString("exchange.name"));
        Assert.Equal(7L, retried.Headers["attempt-note"]);
        Assert.Null(retried.Destination);
    }

    [Fact]
    public async Task A_store_that_does_not_migrate_refuses_a_version_1_table_naming_it_its_version_and_the_command()
    {
        await CreateVersion1TableWithRowsAsync();
        var before = await ReadRowsAsync();
        var store = CreateStore(migrate: false);

        var ex = await Assert.ThrowsAsync<OutboxException>(() => store.ClaimAsync(10, T0.AddDays(1), T0.AddDays(2), Ct));

        Assert.Contains(store.TableDisplayName, ex.Message, StringComparison.Ordinal);
        Assert.Contains("layout version 1", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"needs version {store.LatestVersion.ToString(CultureInfo.InvariantCulture)}", ex.Message, StringComparison.Ordinal);
        Assert.Contains("outboxer schema migrate", ex.Message, StringComparison.Ordinal);
        Assert.Contains("outboxer schema script --from 1", ex.Message, StringComparison.Ordinal);
        Assert.False(ex.IsTransient);
        await Assert.ThrowsAsync<OutboxException>(() => store.AddWithinTransactionAsync(NewMessage("refused"), null, Ct));
        Assert.Equal(before, await ReadRowsAsync());
    }

    [Fact]
    public async Task A_table_of_a_newer_version_is_refused_by_every_operation_and_nothing_is_written()
    {
        var latest = (await CreateStore(migrate: true).MigrateAsync(Ct)).LatestVersion;
        await using (var connection = await OpenConnectionAsync())
        {
            await ExecuteAsync(connection, MarkVersionSql(latest + 1));
        }

        var before = await ReadRowsAsync();
        foreach (var migrate in new[] { true, false })
        {
            var store = CreateStore(migrate);
            var status = await store.GetSchemaStatusAsync(Ct);
            Assert.True(status.IsNewer);
            Assert.Equal(latest + 1, status.Version);

            var ex = await Assert.ThrowsAsync<OutboxException>(() => store.AddWithinTransactionAsync(NewMessage("refused"), null, Ct));
            Assert.Contains($"layout version {(latest + 1).ToString(CultureInfo.InvariantCulture)}, newer than version {latest.ToString(CultureInfo.InvariantCulture)}", ex.Message, StringComparison.Ordinal);
            Assert.Contains(store.TableDisplayName, ex.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<OutboxException>(() => store.MigrateAsync(Ct));
            await Assert.ThrowsAsync<OutboxException>(() => store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        }

        Assert.Equal(before, await ReadRowsAsync());
    }

    [Fact]
    public async Task Stores_migrating_one_version_1_table_at_once_apply_each_step_once_and_all_succeed()
    {
        await CreateVersion1TableWithRowsAsync();
        var before = await ReadRowsAsync();

        var statuses = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Task.Run(() => CreateStore(migrate: true).MigrateAsync(Ct), Ct)));

        Assert.All(statuses, s => Assert.True(s.IsCurrent));
        Assert.Equal(before, await ReadRowsAsync());
        Assert.True((await CreateStore(migrate: false).GetSchemaStatusAsync(Ct)).IsCurrent);
    }

    [Fact]
    public async Task The_migration_script_from_version_1_applied_by_hand_makes_the_table_current_for_a_store_that_does_not_migrate()
    {
        await CreateVersion1TableWithRowsAsync();
        var before = await ReadRowsAsync();
        var store = CreateStore(migrate: false);
        var script = store.GetMigrationScript(1);
        Assert.DoesNotContain("-- version 1:", script, StringComparison.Ordinal);
        Assert.Contains($"-- version {store.LatestVersion.ToString(CultureInfo.InvariantCulture)}:", script, StringComparison.Ordinal);
        Assert.Empty(store.GetMigrationScript(store.LatestVersion));

        await using (var connection = await OpenConnectionAsync())
        {
            await ExecuteAsync(connection, script);
        }

        Assert.True((await store.GetSchemaStatusAsync(Ct)).IsCurrent);
        Assert.Equal(before, await ReadRowsAsync());
        var message = NewMessage("after the script");
        message.Destination = "orders";
        await store.AddWithinTransactionAsync(message, null, Ct);
        Assert.Equal("orders", Assert.Single(await store.GetDestinationStatisticsAsync(Ct), d => d.Destination is not null).Destination);
    }

    /// <summary>Runs statements.</summary>
    protected static async Task ExecuteAsync(DbConnection connection, string sql)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(Ct);
    }

    private static OutboxMessage NewMessage(string payload) => new(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = T0 };

    /// <summary>Creates the version 1 table from its DDL and fills it, as 0.1.0-preview.1 would have, with a row in every state.</summary>
    private async Task<IReadOnlyList<Version1Row>> CreateVersion1TableWithRowsAsync()
    {
        Version1Row[] rows =
        [
            new("pending", Pending: true),
            new("leased", Pending: true, Attempts: 1, LockedUntil: T0.AddSeconds(30)),
            new("retried", Pending: true, Attempts: 2, LockedUntil: T0.AddMinutes(-1), LastError: "broker down"),
            new("dead", Pending: false, Attempts: 20, LastError: "unroutable", DeadLetteredAt: T0.AddMinutes(-2)),
            new("ordered 1", Pending: true, OrderingKey: "key"),
            new("ordered 2", Pending: true, OrderingKey: "key"),
            new("dispatched", Pending: false, Attempts: 1, DispatchedAt: T0.AddMinutes(-3)),
        ];

        await using var connection = await OpenConnectionAsync();
        await ExecuteAsync(connection, Version1Script);
        const string Columns = "message_id, payload, options, headers, created_at, dispatched, dispatched_at, attempts, locked_until, last_error, ordering_key, dead_lettered_at";
        var values = string.Join(", ", Columns.Split(", ").Select(ValueOf));
        foreach (var row in rows)
        {
            await using var insert = connection.CreateCommand();
            insert.CommandText = $"INSERT INTO {Table} ({Columns}) VALUES ({values})";
            Add(insert, "message_id", row.MessageId.ToString("D"));
            Add(insert, "payload", Encoding.UTF8.GetBytes(row.Payload));
            Add(insert, "options", """{"exchange.name":"direct","routing_key":"orders"}""");
            Add(insert, "headers", """{"attempt-note":7}""");
            Add(insert, "created_at", Timestamp(T0.AddMinutes(-10)));
            Add(insert, "dispatched", row.DispatchedAt is not null);
            Add(insert, "dispatched_at", row.DispatchedAt is { } at ? Timestamp(at) : null);
            Add(insert, "attempts", row.Attempts);
            Add(insert, "locked_until", row.LockedUntil is { } until ? Timestamp(until) : null);
            Add(insert, "last_error", row.LastError);
            Add(insert, "ordering_key", row.OrderingKey);
            Add(insert, "dead_lettered_at", row.DeadLetteredAt is { } dead ? Timestamp(dead) : null);
            await insert.ExecuteNonQueryAsync(Ct);
        }

        return rows;
    }

    /// <summary>Every column of every row that 0.1.0-preview.1 had, as text, in id order.</summary>
    private async Task<IReadOnlyList<string>> ReadRowsAsync()
    {
        await using var connection = await OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT id, message_id, payload, created_at, dispatched, dispatched_at, attempts, locked_until, last_error, ordering_key, dead_lettered_at FROM {Table} ORDER BY id";
        var rows = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            var fields = new string[reader.FieldCount];
            for (var i = 0; i < fields.Length; i++)
            {
                fields[i] = reader.GetValue(i) switch
                {
                    DBNull => "null",
                    byte[] bytes => Convert.ToHexString(bytes),
                    DateTime time => time.ToString("O", CultureInfo.InvariantCulture),
                    DateTimeOffset time => time.UtcDateTime.ToString("O", CultureInfo.InvariantCulture),
                    var value => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "null",
                };
            }

            rows.Add(string.Join(" | ", fields));
        }

        return rows;
    }

    private static void Add(DbCommand command, string name, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = "@" + name;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
    }

    private sealed record Version1Row(
        string Payload,
        bool Pending,
        int Attempts = 0,
        DateTimeOffset? LockedUntil = null,
        string? LastError = null,
        DateTimeOffset? DeadLetteredAt = null,
        string? OrderingKey = null,
        DateTimeOffset? DispatchedAt = null)
    {
        public Guid MessageId { get; } = Guid.CreateVersion7();
    }
}
