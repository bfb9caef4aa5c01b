using System.Collections.Concurrent;
using System.Data;
using MySqlConnector;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.MySql.Tests;

/// <summary>
/// A table is migrated while a process of the previous version (0.1.0-preview.1's own statements, verbatim from a fixture) goes on
/// enqueuing, claiming and marking on it: the migration's ALTER waits for that process's transactions (a metadata lock), and
/// nothing is lost or published twice.
/// </summary>
public sealed class MySqlMigrationWhileRunningTests : IAsyncLifetime
{
    private readonly string _table = $"outbox_live_{Guid.NewGuid():N}"[..36];
    private readonly MySqlDataSource _dataSource = MySqlServer.CreateDataSource();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        var ddl = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "layout-v1.sql")).Replace("{table}", _table, StringComparison.Ordinal);
        await using var connection = await MySqlServer.OpenAsync(_dataSource);
        await using var command = new MySqlCommand(ddl, connection);
        await command.ExecuteNonQueryAsync(Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await using (var connection = await MySqlServer.OpenAsync(_dataSource))
        await using (var command = new MySqlCommand($"DROP TABLE IF EXISTS `{_table}`", connection))
        {
            await command.ExecuteNonQueryAsync(Ct);
        }

        await _dataSource.DisposeAsync();
    }

    [Fact]
    public async Task A_dispatcher_of_the_previous_version_keeps_enqueuing_and_dispatching_during_the_migration_and_nothing_is_lost_or_doubled()
    {
        var statements = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "dispatch-v1.sql")).Replace("{table}", $"`{_table}`", StringComparison.Ordinal);
        var claimSql = Between(statements, "SELECT c.id", "-- lease").Replace("LIMIT @limit", "LIMIT 3", StringComparison.Ordinal);
        var leaseSql = Between(statements, "UPDATE", "-- mark", after: "-- lease");
        var markSql = Between(statements, "UPDATE", "-- insert", after: "-- mark");
        var insertSql = statements[statements.IndexOf("INSERT INTO", StringComparison.Ordinal)..].Trim();

        var enqueued = new ConcurrentBag<Guid>();
        var publishedByOld = new ConcurrentBag<Guid>();
        using var stop = new CancellationTokenSource();
        var rounds = 0;
        var old = Task.Run(async () =>
        {
            // The old process: enqueue a transaction of 5, claim up to 3, "publish", mark; until told to stop, and at least 30 rounds. It
            // falls behind on purpose, so that the new version's dispatcher has messages of the old process to publish too.
            while (!stop.IsCancellationRequested || rounds < 30)
            {
                await using var connection = await MySqlServer.OpenAsync(_dataSource);
                await using (var transaction = await connection.BeginTransactionAsync(Ct))
                {
                    for (var i = 0; i < 5; i++)
                    {
                        var id = Guid.CreateVersion7();
                        await using var insert = new MySqlCommand(insertSql, connection, transaction);
                        insert.Parameters.AddWithValue("@message_id", id.ToString("D"));
                        insert.Parameters.AddWithValue("@payload", id.ToByteArray());
                        insert.Parameters.AddWithValue("@options", """{"routing_key":"orders"}""");
                        insert.Parameters.AddWithValue("@headers", DBNull.Value);
                        insert.Parameters.AddWithValue("@created_at", DateTime.SpecifyKind(TimeProvider.System.GetUtcNow().UtcDateTime, DateTimeKind.Unspecified));
                        insert.Parameters.AddWithValue("@ordering_key", i == 0 ? "key" : DBNull.Value);
                        await insert.ExecuteScalarAsync(Ct);
                        enqueued.Add(id);
                    }

                    await transaction.CommitAsync(Ct);
                }

                var now = DateTime.SpecifyKind(TimeProvider.System.GetUtcNow().UtcDateTime, DateTimeKind.Unspecified);
                var claimed = new List<(long Id, Guid MessageId)>();
                await using (var transaction = await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, Ct))
                {
                    await using (var claim = new MySqlCommand(claimSql, connection, transaction))
                    {
                        claim.Parameters.AddWithValue("@now", now);
                        await using var reader = await claim.ExecuteReaderAsync(Ct);
                        while (await reader.ReadAsync(Ct))
                        {
                            claimed.Add((reader.GetInt64(0), reader.GetGuid(1)));
                        }
                    }

                    if (claimed.Count > 0)
                    {
                        await using var lease = new MySqlCommand(WithIds(leaseSql, claimed.Count), connection, transaction);
                        lease.Parameters.AddWithValue("@lease_until", now.AddMinutes(5));
                        AddIds(lease, claimed);
                        await lease.ExecuteNonQueryAsync(Ct);
                    }

                    await transaction.CommitAsync(Ct);
                }

                if (claimed.Count > 0)
                {
                    foreach (var (_, messageId) in claimed)
                    {
                        publishedByOld.Add(messageId);
                    }

                    await using var mark = new MySqlCommand(WithIds(markSql, claimed.Count), connection);
                    mark.Parameters.AddWithValue("@at", now);
                    AddIds(mark, claimed);
                    await mark.ExecuteNonQueryAsync(Ct);
                }

                Interlocked.Increment(ref rounds);
            }
        }, Ct);

        var started = TimeProvider.System.GetTimestamp();
        while (Volatile.Read(ref rounds) < 10 && !old.IsCompleted && TimeProvider.System.GetElapsedTime(started) < TimeSpan.FromMinutes(1))
        {
            await Task.Delay(10, Ct);
        }

        Assert.False(old.IsFaulted, old.Exception?.ToString());

        var store = new MySqlOutboxStore(_dataSource, new MySqlOutboxStoreOptions { TableName = _table });
        Assert.Equal(1, (await store.GetSchemaStatusAsync(Ct)).Version);
        Assert.True((await store.MigrateAsync(Ct)).IsCurrent);
        var publisher = new RecordingPublisher();
        await using (var outbox = new Outbox(store, publisher))
        {
            outbox.StartDispatcher();
            await stop.CancelAsync();

            // Bounded, so that a defect fails the test instead of hanging the run.
            await old.WaitAsync(TimeSpan.FromMinutes(1), Ct);
            using var drained = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            drained.CancelAfter(TimeSpan.FromMinutes(1));
            await outbox.WaitUntilDrainedAsync(cancellationToken: drained.Token);
        }

        var delivered = publishedByOld.Concat(publisher.Published.Select(m => m.MessageId)).ToList();
        Assert.True(rounds >= 30, $"the old process ran {rounds} rounds");
        Assert.Equal(enqueued.Count, delivered.Count);
        Assert.Equal(enqueued.ToHashSet(), delivered.ToHashSet());
        Assert.NotEmpty(publisher.Published);
    }

    private static string WithIds(string sql, int count) =>
        sql.Replace("{ids}", string.Join(", ", Enumerable.Range(0, count).Select(i => $"@id{i}")), StringComparison.Ordinal);

    private static void AddIds(MySqlCommand command, List<(long Id, Guid MessageId)> claimed)
    {
        for (var i = 0; i < claimed.Count; i++)
        {
            command.Parameters.AddWithValue($"@id{i}", claimed[i].Id);
        }
    }

    private static string Between(string text, string start, string end, string? after = null)
    {
        var from = after is null ? 0 : text.IndexOf(after, StringComparison.Ordinal) + after.Length;
        var i = text.IndexOf(start, from, StringComparison.Ordinal);
        return text[i..text.IndexOf(end, i, StringComparison.Ordinal)].Trim();
    }
}
