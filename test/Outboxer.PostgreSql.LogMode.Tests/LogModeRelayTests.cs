using System.Collections.Concurrent;
using Npgsql;
using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.PostgreSql.LogMode.Tests;

/// <summary>The relay side of the log mode: resuming, ordering, failures, dead letters and standbys, against the real server.</summary>
public sealed class LogModeRelayTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_restarted_relay_resumes_from_the_slot_and_loses_nothing_committed_meanwhile()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var first = new RecordingPublisher();
        var relay = await world.StartRelayAsync(first);
        long lastId = 0;
        for (var i = 0; i < 20; i++)
        {
            lastId = await world.Outbox.SendAsync(LogModeWorld.Message($"before-{i}"), Ct);
        }

        await LogModeWorld.WaitUntilAsync(() => first.Published.Count == 20, "the first relay published the first 20");
        await LogModeWorld.WaitUntilAsync(() => (long)(ulong)relay.AcknowledgedPosition > lastId, "the first relay acknowledged them");
        await relay.StopAsync(Ct);

        // Committed while no relay runs: the slot keeps them.
        for (var i = 0; i < 30; i++)
        {
            await world.Outbox.SendAsync(LogModeWorld.Message($"meanwhile-{i}"), Ct);
        }

        var status = await world.Setup.GetStatusAsync(Ct);
        Assert.False(status.Active);
        Assert.True(status.LagBytes > 0, $"the slot is behind while no relay runs (lag {status.LagBytes})");

        var second = new RecordingPublisher();
        await world.StartRelayAsync(second);
        await LogModeWorld.WaitUntilAsync(() => second.Published.Count(m => ((string)m.Headers["name"]!).StartsWith("meanwhile", StringComparison.Ordinal)) == 30, "the second relay published the 30 committed meanwhile");
        var all = first.Published.Concat(second.Published).Select(m => (string)m.Headers["name"]!).ToHashSet();
        Assert.Equal(50, all.Count);

        // The first relay acknowledged what it published before it stopped: the second one does not publish it again.
        Assert.DoesNotContain(second.Published, m => ((string)m.Headers["name"]!).StartsWith("before", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Messages_of_one_ordering_key_are_first_published_in_commit_order_despite_transient_failures(bool batchPublisher)
    {
        await using var world = await LogModeWorld.CreateAsync();
        var confirmed = new ConcurrentQueue<OutboxMessage>();
        var attempts = new ConcurrentDictionary<Guid, int>();
        var flaky = new FlakyPublisher(confirmed, attempts);
        IOutboxPublisher publisher = batchPublisher ? new FlakyBatchPublisher(flaky) : flaky;
        await world.StartRelayAsync(publisher, LogModeWorld.FastRelayOptions(batchSize: 50));

        // Four producers at once, each with its own keys (so each key's order is its producer's commit order), plus unkeyed messages.
        const int Producers = 4, Transactions = 40;
        var producers = Enumerable.Range(0, Producers).Select(p => Task.Run(async () =>
        {
            var sequences = new int[3];
            await using var connection = await world.DataSource.OpenConnectionAsync(Ct);
            for (var t = 0; t < Transactions; t++)
            {
                await using var transaction = await connection.BeginTransactionAsync(Ct);
                var messages = new List<OutboxMessage>();
                for (var m = 0; m < 1 + (t % 4); m++)
                {
                    var k = (t + m) % 4;
                    messages.Add(k == 3 ? LogModeWorld.Message($"p{p}-t{t}-m{m}") : LogModeWorld.Message($"p{p}-t{t}-m{m}", $"p{p}-k{k}", ++sequences[k]));
                }

                await world.Outbox.EnqueueManyAsync(transaction, messages, Ct);
                await transaction.CommitAsync(Ct);
            }
        })).ToArray();
        await Task.WhenAll(producers);
        var expected = Producers * Enumerable.Range(0, Transactions).Sum(t => 1 + (t % 4));

        await LogModeWorld.WaitUntilAsync(() => confirmed.Select(m => m.MessageId).Distinct().Count() == expected, $"all {expected} messages are confirmed", TimeSpan.FromSeconds(60));
        Assert.True(attempts.Values.Any(a => a > 1), "some publishes failed transiently and were retried");

        var seen = new HashSet<Guid>();
        var last = new Dictionary<string, int>();
        foreach (var message in confirmed)
        {
            if (!seen.Add(message.MessageId) || message.OrderingKey is not { } key)
            {
                continue;
            }

            var sequence = Convert.ToInt32(message.Headers["seq"], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(!last.TryGetValue(key, out var previous) || sequence > previous, $"key {key}: sequence {sequence} first confirmed after {previous}");
            last[key] = sequence;
        }
    }

    [Fact]
    public async Task A_message_the_broker_refuses_for_good_goes_to_the_dead_letters_and_the_stream_moves_on_and_a_requeue_publishes_it()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var publisher = new RecordingPublisher();
        var poisoned = true;
        publisher.Fail = m => poisoned && (string)m.Headers["name"]! == "poison" ? new OutboxException("the exchange does not exist", isTransient: false) : null;
        var relay = await world.StartRelayAsync(publisher);

        await world.Outbox.SendAsync(LogModeWorld.Message("before", "k", 1), Ct);
        var poison = LogModeWorld.Message("poison", "k", 2);
        await world.Outbox.SendAsync(poison, Ct);
        await world.Outbox.SendAsync(LogModeWorld.Message("after", "k", 3), Ct);

        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 2 && relay.DeadLettered == 1, "the healthy messages are published and the poison one dead-lettered");
        Assert.Equal(["before", "after"], publisher.Published.Select(m => (string)m.Headers["name"]!));
        Assert.Equal(1, relay.DeadLettered);

        var status = await world.Setup.GetStatusAsync(Ct);
        Assert.Equal(1, status.DeadLetters);
        await using (var command = world.DataSource.CreateCommand($"SELECT message_id, error FROM \"{world.Options.SchemaName}\".\"{world.Options.DeadLetterTableName}\""))
        await using (var reader = await command.ExecuteReaderAsync(Ct))
        {
            Assert.True(await reader.ReadAsync(Ct));
            Assert.Equal(poison.MessageId, reader.GetGuid(0));
            Assert.Contains("the exchange does not exist", reader.GetString(1), StringComparison.Ordinal);
        }

        // Fixed: the requeue writes it back into the log, and the relay publishes it, whole.
        poisoned = false;
        Assert.Equal(1, await world.Setup.RequeueDeadLettersAsync(cancellationToken: Ct));
        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 3, "the requeued message is published");
        var requeued = publisher.Published[2];
        Assert.Equal(poison.MessageId, requeued.MessageId);
        Assert.Equal("k", requeued.OrderingKey);
        Assert.Equal(0, (await world.Setup.GetStatusAsync(Ct)).DeadLetters);
    }

    [Fact]
    public async Task A_broker_outage_pauses_the_relay_and_dead_letters_nothing()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var publisher = new RecordingPublisher();
        var down = true;
        publisher.Fail = _ => down ? new OutboxException("connection refused", isTransient: true) : null;
        var relay = await world.StartRelayAsync(publisher);
        for (var i = 0; i < 10; i++)
        {
            await world.Outbox.SendAsync(LogModeWorld.Message($"m{i}", "k", i), Ct);
        }

        await LogModeWorld.WaitUntilAsync(() => publisher.Attempts > 20, "the relay retries while the broker is down");
        Assert.Empty(publisher.Published);
        down = false;
        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 10, "every message is published once the broker is back");
        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"m{i}"), publisher.Published.Select(m => (string)m.Headers["name"]!));
        Assert.Equal(0, relay.DeadLettered);
    }

    [Fact]
    public async Task A_second_relay_stands_by_and_takes_over_when_the_active_one_stops()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var firstPublisher = new RecordingPublisher();
        var secondPublisher = new RecordingPublisher();
        var first = await world.StartRelayAsync(firstPublisher);
        await LogModeWorld.WaitUntilAsync(() => first.IsActive, "the first relay is active");
        var second = await world.StartRelayAsync(secondPublisher);

        await world.Outbox.SendAsync(LogModeWorld.Message("one"), Ct);
        await LogModeWorld.WaitUntilAsync(() => firstPublisher.Published.Count == 1, "the active relay publishes");
        await Task.Delay(500, Ct);
        Assert.False(second.IsActive);
        Assert.Empty(secondPublisher.Published);

        await first.StopAsync(Ct);
        await LogModeWorld.WaitUntilAsync(() => second.IsActive, "the standby takes over");
        await world.Outbox.SendAsync(LogModeWorld.Message("two"), Ct);
        await LogModeWorld.WaitUntilAsync(() => secondPublisher.Published.Any(m => (string)m.Headers["name"]! == "two"), "the new active relay publishes");
        Assert.Single(firstPublisher.Published);
    }

    [Fact]
    public async Task Setup_reports_what_is_missing_creates_it_and_status_reports_the_slots_lag()
    {
        await using var world = await LogModeWorld.CreateAsync(setup: false);
        var before = await world.Setup.GetStatusAsync(Ct);
        Assert.Equal("logical", before.WalLevel);
        Assert.True(before.CanReplicate);
        Assert.False(before.SlotExists);
        Assert.Equal(3, before.Problems.Count);
        Assert.Contains(before.Problems, p => p.Contains(world.Options.SlotName, StringComparison.Ordinal) && p.Contains("outboxer logmode setup", StringComparison.Ordinal));
        var refused = await Assert.ThrowsAsync<OutboxException>(() => world.Setup.CheckAsync(Ct));
        Assert.False(refused.IsTransient);
        Assert.Contains("publication", refused.Message, StringComparison.Ordinal);

        var after = await world.Setup.SetupAsync(Ct);
        Assert.Empty(after.Problems);
        Assert.True(after.SlotExists && after.PublicationExists && after.DeadLetterTableExists);
        Assert.Empty((await world.Setup.SetupAsync(Ct)).Problems);

        await world.Outbox.SendAsync(LogModeWorld.Message("waiting"), Ct);
        var lagging = await world.Setup.CheckAsync(Ct);
        Assert.True(lagging.LagBytes > 0);
        Assert.True(lagging.RetainedWalBytes >= lagging.LagBytes);
        Assert.Equal("reserved", lagging.WalStatus);
        Assert.False(lagging.Active);
    }

    [Fact]
    public async Task A_relay_without_its_slot_keeps_trying_and_starts_once_setup_ran()
    {
        await using var world = await LogModeWorld.CreateAsync(setup: false);
        var publisher = new RecordingPublisher();
        var relay = await world.StartRelayAsync(publisher, LogModeWorld.FastRelayOptions());
        await Task.Delay(300, Ct);
        Assert.False(relay.IsActive);

        await world.Setup.SetupAsync(Ct);
        await world.Outbox.SendAsync(LogModeWorld.Message("after-setup"), Ct);
        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 1, "the relay publishes once the slot exists");
    }

    /// <summary>Confirms after a random short delay, and fails a fifth of the first attempts transiently.</summary>
    private sealed class FlakyPublisher(ConcurrentQueue<OutboxMessage> confirmed, ConcurrentDictionary<Guid, int> attempts) : IOutboxPublisher
    {
        public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
        {
            var attempt = attempts.AddOrUpdate(message.MessageId, 1, (_, a) => a + 1);
            await Task.Delay(Random.Shared.Next(0, 3), cancellationToken);
            if (attempt == 1 && message.MessageId.GetHashCode() % 5 == 0)
            {
                throw new OutboxException("the broker is busy", isTransient: true);
            }

            confirmed.Enqueue(message);
        }
    }

    /// <summary>The same behind a batch API: settles the batch in order, as a broker's ordered batch request does.</summary>
    private sealed class FlakyBatchPublisher(FlakyPublisher inner) : IOutboxBatchPublisher
    {
        public ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default) => inner.PublishAsync(message, cancellationToken);

        public async Task<IReadOnlyList<Exception?>> PublishBatchAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
        {
            var results = new Exception?[messages.Count];
            for (var i = 0; i < messages.Count; i++)
            {
                try
                {
                    await inner.PublishAsync(messages[i], cancellationToken);
                }
                catch (OutboxException ex)
                {
                    results[i] = ex;
                }
            }

            return results;
        }
    }
}

/// <summary>The log mode beside the table mode: switching an outbox over without losing a pending message, and the slot's heartbeat.</summary>
public sealed class LogModeOperationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Switching_an_outbox_from_table_mode_to_log_mode_loses_no_pending_message()
    {
        await using var world = await LogModeWorld.CreateAsync(setup: false);
        var schema = world.Options.SchemaName + "_table";
        var publisher = new RecordingPublisher();
        var store = new PostgreSqlOutboxStore(world.DataSource, new PostgreSqlOutboxStoreOptions { SchemaName = schema });
        try
        {
            // Table mode: messages pending in the table, no dispatcher running yet.
            await using (var table = new Outbox(store, publisher))
            {
                for (var i = 0; i < 5; i++)
                {
                    await table.SendAsync(LogModeWorld.Message($"table-{i}", "k", i), Ct);
                }
            }

            // 1. The slot first; 2. writers switch to the log while the table still has pending messages.
            Assert.Empty((await world.Setup.SetupAsync(Ct)).Problems);
            for (var i = 5; i < 10; i++)
            {
                await world.Outbox.SendAsync(LogModeWorld.Message($"log-{i}", "k", i), Ct);
            }

            // 3. The table's dispatcher drains the table; then the relay starts and publishes what waited in the log.
            await using (var dispatcher = new Outbox(store, publisher))
            {
                Assert.Equal(5, await dispatcher.DispatchPendingAsync(Ct));
                Assert.Equal(0, (await dispatcher.GetStatisticsAsync(Ct)).Pending);
            }

            await world.StartRelayAsync(publisher);
            await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 10, "every message of both modes is published");
            Assert.Equal(Enumerable.Range(0, 10), publisher.Published.Select(m => Convert.ToInt32(m.Headers["seq"], System.Globalization.CultureInfo.InvariantCulture)));
        }
        finally
        {
            await using var drop = world.DataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task The_health_check_is_unhealthy_without_a_slot_degraded_without_a_relay_and_healthy_with_one()
    {
        await using var world = await LogModeWorld.CreateAsync(setup: false);
        var check = new PostgreSqlLogHealthCheck(world.Setup);
        var context = new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext();

        var missing = await check.CheckHealthAsync(context, Ct);
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Unhealthy, missing.Status);
        Assert.Contains("outboxer logmode setup", missing.Description, StringComparison.Ordinal);

        await world.Setup.SetupAsync(Ct);
        var idle = await check.CheckHealthAsync(context, Ct);
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Degraded, idle.Status);
        Assert.Contains("no relay consumes the slot", idle.Description, StringComparison.Ordinal);

        var relay = await world.StartRelayAsync(new RecordingPublisher());
        await LogModeWorld.WaitUntilAsync(() => relay.IsActive, "the relay is active");
        var healthy = await check.CheckHealthAsync(context, Ct);
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy, healthy.Status);
        Assert.True((bool)healthy.Data["active"]);
    }

    [Fact]
    public async Task An_idle_relay_keeps_acknowledging_with_heartbeats_so_the_slot_retains_little()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var relay = await world.StartRelayAsync(new RecordingPublisher());
        await LogModeWorld.WaitUntilAsync(() => relay.IsActive, "the relay is active");

        // Write-ahead log the slot does not decode (no outbox message): only heartbeats let the slot move past it.
        long written;
        await using (var command = world.DataSource.CreateCommand($"CREATE TABLE \"{world.Options.SchemaName}\".filler AS SELECT g FROM generate_series(1, 20000) AS g; SELECT pg_current_wal_insert_lsn()"))
        {
            written = (long)(ulong)(NpgsqlTypes.NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync(Ct))!;
        }

        await LogModeWorld.WaitUntilAsync(() => (long)(ulong)relay.AcknowledgedPosition > written, "a heartbeat after the filler is acknowledged", TimeSpan.FromSeconds(20));
        var status = await world.Setup.GetStatusAsync(Ct);
        Assert.True(status.Active);
        Assert.True(status.LagBytes < 1_000_000, $"the slot is {status.LagBytes} bytes behind");
    }
}
