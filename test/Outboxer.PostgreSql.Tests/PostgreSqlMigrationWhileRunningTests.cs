using System.Collections.Concurrent;
using Npgsql;
using NpgsqlTypes;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.PostgreSql.Tests;

/// <summary>
/// A table is migrated while a process of the previous version (0.1.0-preview.1's own statements, verbatim from a fixture) goes on
/// enqueuing, claiming and marking on it: migrations only add, so the old process keeps working, and nothing is lost or published twice.
/// </summary>
public sealed class PostgreSqlMigrationWhileRunningTests : IAsyncLifetime
{
    private const string TableName = "outbox_messages";
    private readonly string _schema = $"outboxer_live_{Guid.NewGuid():N}"[..40];
    private readonly NpgsqlDataSource _dataSource = PostgreSqlServer.CreateDataSource();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private string Table => $"\"{_schema}\".\"{TableName}\"";

    public async ValueTask InitializeAsync()
    {
        var ddl = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "layout-v1.sql"))
            .Replace("{schema}", _schema, StringComparison.Ordinal).Replace("{table}", TableName, StringComparison.Ordinal);
        await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
        await using var command = new NpgsqlCommand(ddl, connection);
        await command.ExecuteNonQueryAsync(Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await using (var connection = await PostgreSqlServer.OpenAsync(_dataSource))
        await using (var command = new NpgsqlCommand($"DROP SCHEMA IF EXISTS \"{_schema}\" CASCADE", connection))
        {
            await command.ExecuteNonQueryAsync(Ct);
        }

        await _dataSource.DisposeAsync();
    }

    [Fact]
    public async Task A_dispatcher_of_the_previous_version_keeps_enqueuing_and_dispatching_during_the_migration_and_nothing_is_lost_or_doubled()
    {
        var statements = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "dispatch-v1.sql")).Replace("{table}", Table, StringComparison.Ordinal);
        var claimSql = Between(statements, "WITH fresh", "-- mark").Replace("LIMIT @limit", "LIMIT 3", StringComparison.Ordinal);
        var markSql = Between(statements, "UPDATE", "-- insert", after: "-- mark");
        var insertSql = statements[statements.IndexOf("INSERT INTO", StringComparison.Ordinal)..].Trim();

        var enqueued = new ConcurrentBag<Guid>();
        var publishedByOld = new ConcurrentBag<Guid>();
        using var stop = new CancellationTokenSource();
        var rounds = 0;
        var old = Task.Run(async () =>
        {
            // The old process: enqueue a transaction of 5, claim up to 3, "publish", mark; until told to stop, and at least 30 rounds. It falls
            // behind on purpose, so that the new version's dispatcher has messages of the old process to publish too.
            while (!stop.IsCancellationRequested || rounds < 30)
            {
                await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
                await using (var transaction = await connection.BeginTransactionAsync(Ct))
                {
                    for (var i = 0; i < 5; i++)
                    {
                        var id = Guid.CreateVersion7();
                        await using var insert = new NpgsqlCommand(insertSql, connection, transaction);
                        insert.Parameters.AddWithValue("message_id", id);
                        insert.Parameters.AddWithValue("payload", id.ToByteArray());
                        insert.Parameters.Add(new NpgsqlParameter("options", NpgsqlDbType.Jsonb) { Value = """{"routing_key":"orders"}""" });
                        insert.Parameters.Add(new NpgsqlParameter("headers", NpgsqlDbType.Jsonb) { Value = DBNull.Value });
                        insert.Parameters.AddWithValue("created_at", TimeProvider.System.GetUtcNow());
                        insert.Parameters.Add(new NpgsqlParameter("ordering_key", NpgsqlDbType.Text) { Value = i == 0 ? "key" : DBNull.Value });
                        await insert.ExecuteScalarAsync(Ct);
                        enqueued.Add(id);
                    }

                    await transaction.CommitAsync(Ct);
                }

                var claimed = new List<(long Id, Guid MessageId)>();
                await using (var claim = new NpgsqlCommand(claimSql, connection))
                {
                    claim.Parameters.AddWithValue("now", TimeProvider.System.GetUtcNow());
                    claim.Parameters.AddWithValue("lease_until", TimeProvider.System.GetUtcNow().AddMinutes(5));
                    await using var reader = await claim.ExecuteReaderAsync(Ct);
                    while (await reader.ReadAsync(Ct))
                    {
                        claimed.Add((reader.GetInt64(0), reader.GetGuid(1)));
                    }
                }

                foreach (var (_, messageId) in claimed)
                {
                    publishedByOld.Add(messageId);
                }

                await using (var mark = new NpgsqlCommand(markSql, connection))
                {
                    mark.Parameters.AddWithValue("at", TimeProvider.System.GetUtcNow());
                    mark.Parameters.AddWithValue("ids", "{" + string.Join(",", claimed.Select(c => c.Id)) + "}");
                    await mark.ExecuteNonQueryAsync(Ct);
                }

                Interlocked.Increment(ref rounds);
            }
        }, Ct);

        // The new version migrates the table while the old process runs, then its own dispatcher runs beside it.
        var started = TimeProvider.System.GetTimestamp();
        while (Volatile.Read(ref rounds) < 10 && !old.IsCompleted && TimeProvider.System.GetElapsedTime(started) < TimeSpan.FromMinutes(1))
        {
            await Task.Delay(10, Ct);
        }

        Assert.False(old.IsFaulted, old.Exception?.ToString());

        var store = new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = _schema, TableName = TableName });
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

    private static string Between(string text, string start, string end, string? after = null)
    {
        var from = after is null ? 0 : text.IndexOf(after, StringComparison.Ordinal) + after.Length;
        var i = text.IndexOf(start, from, StringComparison.Ordinal);
        return text[i..text.IndexOf(end, i, StringComparison.Ordinal)].Trim();
    }
}
