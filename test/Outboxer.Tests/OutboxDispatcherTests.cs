using System.Text;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

/// <summary>The dispatcher loop, over the in-memory store, with time moved by hand.</summary>
public sealed class OutboxDispatcherTests : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly InMemoryOutboxStore _store = new();
    private readonly RecordingPublisher _publisher = new();
    private Outbox? _outbox;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        if (_outbox is not null)
        {
            await _outbox.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_message_sent_by_this_process_is_dispatched_at_once_without_waiting_for_the_interval()
    {
        var outbox = Create(new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) });
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await IdleAsync();

        var message = new OutboxMessage("now");
        await outbox.SendAsync(message, Ct);

        var notification = await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(message.Id, notification.Id);
        Assert.Equal(message.MessageId, notification.MessageId);
        Assert.Equal(_time.GetUtcNow(), notification.DispatchedAt);
    }

    [Fact]
    public async Task A_message_written_by_another_process_is_dispatched_at_the_next_check_interval()
    {
        var outbox = Create(new OutboxOptions { CheckInterval = TimeSpan.FromSeconds(10) });
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await IdleAsync();

        // Written straight into the store, as another process would: no wake-up.
        await _store.AddWithinTransactionAsync(new OutboxMessage("elsewhere") { MessageId = Guid.NewGuid() }, null, Ct);
        await Task.Yield();
        Assert.Empty(_publisher.Published);

        var claimsBefore = _store.Claims;
        await AdvanceUntilAsync(dispatched.ReadAsync(Ct).AsTask(), TimeSpan.FromSeconds(10));
        Assert.Single(_publisher.Published);
        Assert.True(_store.Claims > claimsBefore);
    }

    [Fact]
    public async Task Without_push_wake_ups_a_dispatcher_that_just_found_messages_looks_again_within_milliseconds()
    {
        // The in-memory store cannot tell the dispatcher about other processes' commits, like PostgreSQL with NotifyOnCommit off.
        var outbox = Create(new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) });
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await IdleAsync();
        await outbox.SendAsync(new OutboxMessage("here"), Ct);
        await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);

        var started = _time.GetUtcNow();
        await _store.AddWithinTransactionAsync(new OutboxMessage("elsewhere, just after") { MessageId = Guid.NewGuid() }, null, Ct);
        await AdvanceUntilAsync(dispatched.ReadAsync(Ct).AsTask(), TimeSpan.FromMilliseconds(1));

        Assert.Equal(2, _publisher.Published.Count);
        Assert.InRange(_time.GetUtcNow() - started, TimeSpan.Zero, TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public async Task The_dispatcher_drains_every_batch_while_messages_are_pending()
    {
        var outbox = Create(new OutboxOptions { MessageBatchSize = 10, CheckInterval = TimeSpan.FromHours(1) });
        for (var i = 0; i < 95; i++)
        {
            await _store.AddWithinTransactionAsync(new OutboxMessage($"m{i}") { MessageId = Guid.NewGuid() }, null, Ct);
        }

        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        for (var i = 0; i < 95; i++)
        {
            await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        }

        Assert.Equal(95, _publisher.Published.Count);
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task A_failing_message_is_reported_with_its_ids_and_does_not_stop_the_batch()
    {
        var outbox = Create(new OutboxOptions { RetryDelay = TimeSpan.FromSeconds(5) });
        var poison = new OutboxMessage("poison");
        _publisher.Fail = m => Encoding.UTF8.GetString(m.Payload) == "poison" ? new InvalidOperationException("broker says no") : null;
        await outbox.SendAsync(new OutboxMessage("before"), Ct);
        await outbox.SendAsync(poison, Ct);
        await outbox.SendAsync(new OutboxMessage("after"), Ct);
        var errors = outbox.Errors;

        Assert.Equal(3, await outbox.DispatchPendingAsync(Ct));

        Assert.Equal(["before", "after"], _publisher.Published.Select(m => Encoding.UTF8.GetString(m.Payload)));
        var error = await errors.ReadAsync(Ct);
        Assert.Equal(OutboxOperation.Publish, error.Operation);
        Assert.Equal(poison.Id, error.Id);
        Assert.Equal(poison.MessageId, error.MessageId);
        Assert.Equal("broker says no", error.Exception.Message);
        Assert.Equal("InvalidOperationException: broker says no", _store.LastError(poison.Id));
        Assert.Equal(1, _store.PendingCount);
    }

    [Fact]
    public async Task A_failed_message_is_retried_after_the_retry_delay_and_not_before()
    {
        var outbox = Create(new OutboxOptions { RetryDelay = TimeSpan.FromSeconds(5) });
        var fail = true;
        _publisher.Fail = _ => fail ? new InvalidOperationException("down") : null;
        await outbox.SendAsync(new OutboxMessage("flaky"), Ct);
        await outbox.DispatchPendingAsync(Ct);
        fail = false;

        _time.Advance(TimeSpan.FromSeconds(4));
        Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));

        Assert.Equal(2, Assert.Single(_publisher.Published).Attempts);
    }

    [Fact]
    public async Task The_retry_delay_doubles_with_each_failed_attempt_up_to_the_maximum()
    {
        var outbox = Create(new OutboxOptions { RetryDelay = TimeSpan.FromSeconds(5), MaxRetryDelay = TimeSpan.FromSeconds(30) });
        _publisher.Fail = _ => new InvalidOperationException("still down");
        await outbox.SendAsync(new OutboxMessage("flaky"), Ct);

        var waits = new List<int>();
        Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));
        for (var attempt = 2; attempt <= 6; attempt++)
        {
            var seconds = 0;
            while (await outbox.DispatchPendingAsync(Ct) == 0)
            {
                _time.Advance(TimeSpan.FromSeconds(1));
                seconds++;
            }

            waits.Add(seconds);
        }

        Assert.Equal([5, 10, 20, 30, 30], waits);
    }

    [Fact]
    public async Task A_batch_publisher_gets_each_claimed_batch_in_one_call_and_a_failed_message_fails_alone()
    {
        var publisher = new RecordingBatchPublisher();
        publisher.Inner.Fail = m => m.Id == 2 ? new OutboxException("too big", isTransient: false) : null;
        _outbox = new Outbox(_store, publisher, new OutboxOptions { MessageBatchSize = 3 }, timeProvider: _time);
        for (var i = 0; i < 7; i++)
        {
            await _outbox.SendAsync(new OutboxMessage($"m{i}"), Ct);
        }

        Assert.Equal(7, await _outbox.DispatchPendingAsync(Ct));

        Assert.Equal([3, 3, 1], publisher.Batches);
        Assert.Equal([1L, 3, 4, 5, 6, 7], publisher.Inner.Published.Select(m => m.Id));
        Assert.Equal(1, _store.PendingCount);
    }

    [Fact]
    public async Task A_batch_call_that_throws_fails_every_message_of_the_batch_for_a_retry()
    {
        var publisher = new RecordingBatchPublisher { ThrowForBatch = new OutboxException("throttled") };
        _outbox = new Outbox(_store, publisher, timeProvider: _time);
        var errors = _outbox.Errors;
        await _outbox.SendAsync(new OutboxMessage("a"), Ct);
        await _outbox.SendAsync(new OutboxMessage("b"), Ct);

        Assert.Equal(2, await _outbox.DispatchPendingAsync(Ct));

        Assert.Equal(2, _store.PendingCount);
        Assert.True(errors.TryRead(out var first));
        Assert.True(errors.TryRead(out var second));
        Assert.Equal([1L, 2L], new[] { first.Id!.Value, second.Id!.Value });
        Assert.Equal("throttled", first.Exception.Message);
    }

    [Fact]
    public async Task Retry_delays_vary_within_the_jitter_so_messages_that_failed_together_spread_out()
    {
        var outbox = Create(new OutboxOptions { RetryDelay = TimeSpan.FromSeconds(10), MessageBatchSize = 50 }, jitter: 0.5);
        var fail = true;
        _publisher.Fail = _ => fail ? new OutboxException("down") : null;
        for (var i = 0; i < 50; i++)
        {
            await outbox.SendAsync(new OutboxMessage($"m{i}"), Ct);
        }

        await outbox.DispatchPendingAsync(Ct);
        fail = false;
        _time.Advance(TimeSpan.FromSeconds(4.9));
        Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));

        var retriedAt = new List<int>();
        for (var second = 5; second <= 15; second++)
        {
            _time.Advance(second == 5 ? TimeSpan.FromSeconds(0.1) : TimeSpan.FromSeconds(1));
            var retried = await outbox.DispatchPendingAsync(Ct);
            retriedAt.AddRange(Enumerable.Repeat(second, retried));
        }

        Assert.Equal(50, retriedAt.Count);
        Assert.True(retriedAt.Distinct().Count() > 3, string.Join(",", retriedAt));
    }

    [Fact]
    public async Task A_message_that_cannot_succeed_is_dead_lettered_at_once_and_can_be_requeued_or_purged()
    {
        var outbox = Create();
        var unroutable = true;
        _publisher.Fail = m => unroutable && Encoding.UTF8.GetString(m.Payload) != "fine" ? new OutboxException("unroutable", isTransient: false) : null;
        var poison = new OutboxMessage("poison");
        var other = new OutboxMessage("other poison");
        await outbox.SendAsync(poison, Ct);
        await outbox.SendAsync(other, Ct);
        await outbox.SendAsync(new OutboxMessage("fine"), Ct);

        Assert.Equal(3, await outbox.DispatchPendingAsync(Ct));
        _time.Advance(TimeSpan.FromDays(1));
        Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));

        var dead = await outbox.GetDeadLettersAsync(cancellationToken: Ct);
        Assert.Equal([poison.Id, other.Id], dead.Select(m => m.Id));
        Assert.Equal("OutboxException: unroutable", dead[0].LastError);
        Assert.Equal(_time.GetUtcNow().AddDays(-1), dead[0].DeadLetteredAt);
        Assert.Equal([other.Id], (await outbox.GetDeadLettersAsync(10, afterId: poison.Id, Ct)).Select(m => m.Id));

        unroutable = false;
        Assert.Equal(1, await outbox.RequeueDeadLettersAsync([poison.Id], Ct));
        Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));
        Assert.Contains(_publisher.Published, m => m.Id == poison.Id);
        Assert.Equal(1, await outbox.PurgeDeadLettersAsync(cancellationToken: Ct));
        Assert.Empty(await outbox.GetDeadLettersAsync(cancellationToken: Ct));
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task A_message_is_dead_lettered_after_its_last_allowed_attempt()
    {
        var outbox = Create(new OutboxOptions { MaxAttempts = 3, RetryDelay = TimeSpan.FromSeconds(1), MaxRetryDelay = TimeSpan.FromSeconds(1) });
        _publisher.Fail = _ => new InvalidOperationException("broker down");
        var errors = outbox.Errors;
        await outbox.SendAsync(new OutboxMessage("flaky"), Ct);

        for (var attempt = 1; attempt <= 3; attempt++)
        {
            Assert.Empty(await outbox.GetDeadLettersAsync(cancellationToken: Ct));
            Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));
            _time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));
        var dead = Assert.Single(await outbox.GetDeadLettersAsync(cancellationToken: Ct));
        Assert.Equal(3, dead.Attempts);
        Assert.Equal("InvalidOperationException: broker down", dead.LastError);
        Assert.Equal(3, _publisher.Attempts);
        var reported = 0;
        while (errors.TryRead(out var error))
        {
            Assert.Equal(OutboxOperation.Publish, error.Operation);
            reported++;
        }

        Assert.Equal(3, reported);
    }

    [Fact]
    public async Task Messages_with_one_ordering_key_go_one_at_a_time_in_order_and_a_failing_key_pauses_only_itself()
    {
        var outbox = Create(new OutboxOptions { RetryDelay = TimeSpan.FromSeconds(5) });
        var failFirstA = true;
        _publisher.Fail = m => failFirstA && Encoding.UTF8.GetString(m.Payload) == "a1" ? new InvalidOperationException("a1 failed") : null;
        foreach (var (key, payload) in new[] { ("a", "a1"), ("b", "b1"), ("a", "a2"), ((string?)null, "n1"), ("b", "b2"), ("a", "a3") })
        {
            await outbox.SendAsync(new OutboxMessage(payload) { OrderingKey = key }, Ct);
        }

        await outbox.DispatchPendingAsync(Ct);
        Assert.Equal(["b1", "n1", "b2"], Payloads());

        failFirstA = false;
        _time.Advance(TimeSpan.FromSeconds(5));
        await outbox.DispatchPendingAsync(Ct);
        Assert.Equal(["b1", "n1", "b2", "a1", "a2", "a3"], Payloads());

        List<string> Payloads() => [.. _publisher.Published.Select(m => Encoding.UTF8.GetString(m.Payload))];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public async Task The_dispatcher_publishes_up_to_MaxBatchesInFlight_batches_while_earlier_ones_wait_for_confirmation(int inFlight)
    {
        var outbox = Create(new OutboxOptions { MessageBatchSize = 1, MaxBatchesInFlight = inFlight, CheckInterval = TimeSpan.FromHours(1) });
        for (var i = 0; i < 5; i++)
        {
            await _store.AddWithinTransactionAsync(new OutboxMessage($"m{i}") { MessageId = Guid.NewGuid() }, null, Ct);
        }

        _publisher.Hold();
        var drained = ReadDispatchedAsync(outbox, 5);
        outbox.StartDispatcher();
        await EventuallyAsync(() => _publisher.Attempts == inFlight);

        // Every slot is taken by a batch waiting for its confirmation: nothing more is claimed, however long they wait.
        var claims = _store.Claims;
        for (var i = 0; i < 100; i++)
        {
            await Task.Yield();
        }

        Assert.Equal(inFlight, _publisher.Attempts);
        Assert.Equal(claims, _store.Claims);

        _publisher.Release();
        await drained.WaitAsync(Bound, Ct);
        Assert.Equal(5, _publisher.Published.Count);
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task With_batches_in_flight_different_keys_go_side_by_side_and_a_keys_next_message_waits_for_the_previous()
    {
        var outbox = Create(new OutboxOptions { MessageBatchSize = 1, MaxBatchesInFlight = 4, CheckInterval = TimeSpan.FromHours(1) });
        foreach (var (key, payload) in new[] { ("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3"), ("b", "b2") })
        {
            await _store.AddWithinTransactionAsync(new OutboxMessage(payload) { MessageId = Guid.NewGuid(), OrderingKey = key }, null, Ct);
        }

        _publisher.Hold();
        var drained = ReadDispatchedAsync(outbox, 5);
        outbox.StartDispatcher();
        await EventuallyAsync(() => _publisher.Attempts == 2);
        for (var i = 0; i < 100; i++)
        {
            await Task.Yield();
        }

        // a1 and b1 are in flight; a2, a3 and b2 wait for them although two slots are free.
        Assert.Equal(2, _publisher.Attempts);

        _publisher.Release();
        await drained.WaitAsync(Bound, Ct);
        var published = _publisher.Published.Select(m => Encoding.UTF8.GetString(m.Payload)).ToList();
        Assert.Equal(["a1", "a2", "a3"], published.Where(p => p[0] == 'a'));
        Assert.Equal(["b1", "b2"], published.Where(p => p[0] == 'b'));
        Assert.Equal(5, _publisher.Attempts);
    }

    [Theory]
    [InlineData("")]
    [InlineData(null)]
    public void An_ordering_key_must_have_one_to_255_characters(string? tooShort)
    {
        var message = new OutboxMessage("x") { OrderingKey = "k" };
        message.OrderingKey = null;
        if (tooShort is not null)
        {
            Assert.Throws<ArgumentException>(() => message.OrderingKey = tooShort);
        }

        Assert.Throws<ArgumentException>(() => message.OrderingKey = new string('k', 256));
        message.OrderingKey = new string('k', 255);
    }

    [Fact]
    public async Task A_publish_that_is_never_confirmed_times_out_as_a_transient_failure()
    {
        var outbox = Create(new OutboxOptions { PublishTimeout = TimeSpan.FromSeconds(10) });
        _publisher.Hold();
        await outbox.SendAsync(new OutboxMessage("stuck"), Ct);
        var errors = outbox.Errors;

        var dispatching = outbox.DispatchPendingAsync(Ct);
        await _publisher.Waiting.Task.WaitAsync(Bound, Ct);
        _time.Advance(TimeSpan.FromSeconds(10));
        var error = await errors.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        _publisher.Release();
        await dispatching.WaitAsync(Bound, Ct);

        var timeout = Assert.IsType<OutboxException>(error.Exception);
        Assert.True(timeout.IsTransient);
        Assert.Contains("within 00:00:10", timeout.Message, StringComparison.Ordinal);
        Assert.Empty(_publisher.Published);
    }

    [Fact]
    public async Task A_store_outage_is_reported_and_the_loop_carries_on_after_the_interval()
    {
        var outbox = Create(new OutboxOptions { CheckInterval = TimeSpan.FromSeconds(1) });
        _store.ClaimFailure = new OutboxException("database down");
        var errors = outbox.Errors;
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();

        var error = await errors.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(OutboxOperation.Claim, error.Operation);
        Assert.Null(error.Id);

        _store.ClaimFailure = null;
        await outbox.SendAsync(new OutboxMessage("after the outage"), Ct);
        _time.Advance(TimeSpan.FromSeconds(1));
        await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Single(_publisher.Published);
    }

    [Fact]
    public async Task When_a_whole_batch_fails_the_dispatcher_pauses_instead_of_failing_the_rest_of_the_backlog()
    {
        var outbox = Create(new OutboxOptions { MessageBatchSize = 2, RetryDelay = TimeSpan.FromSeconds(5), CheckInterval = TimeSpan.FromHours(1) });
        var brokerDown = true;
        _publisher.Fail = _ => brokerDown ? new OutboxException("connection refused") : null;
        for (var i = 0; i < 6; i++)
        {
            await _store.AddWithinTransactionAsync(new OutboxMessage($"m{i}") { MessageId = Guid.NewGuid() }, null, Ct);
        }

        var errors = outbox.Errors;
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await errors.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await errors.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        for (var i = 0; i < 100; i++)
        {
            await Task.Yield();
        }

        // Only the first batch was tried; the other four messages kept their attempts.
        Assert.Equal(2, _publisher.Attempts);

        brokerDown = false;
        var all = Task.Run(
            async () =>
            {
                for (var i = 0; i < 6; i++)
                {
                    await dispatched.ReadAsync(Ct);
                }
            },
            Ct);
        await AdvanceUntilAsync(all, TimeSpan.FromSeconds(5));
        Assert.Equal(6, _publisher.Published.Count);
        Assert.Equal(8, _publisher.Attempts);
    }

    [Fact]
    public async Task Waiting_until_drained_returns_once_the_dispatcher_has_published_everything()
    {
        var outbox = Create(new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) });
        for (var i = 0; i < 25; i++)
        {
            await _store.AddWithinTransactionAsync(new OutboxMessage($"m{i}") { MessageId = Guid.NewGuid() }, null, Ct);
        }

        var drained = outbox.WaitUntilDrainedAsync(TimeSpan.FromSeconds(1), Ct);
        Assert.False(drained.IsCompleted);
        outbox.StartDispatcher();
        await AdvanceUntilAsync(drained, TimeSpan.FromSeconds(1));

        Assert.Equal(25, _publisher.Published.Count);
        await outbox.WaitUntilDrainedAsync(cancellationToken: Ct);
    }

    [Fact]
    public async Task Stopping_lets_the_batch_in_flight_finish_and_mark_its_messages()
    {
        var outbox = Create();
        _publisher.Hold();
        await outbox.SendAsync(new OutboxMessage("in flight"), Ct);
        outbox.StartDispatcher();
        await _publisher.Waiting.Task.WaitAsync(Bound, Ct);

        var stopping = outbox.StopAsync(Ct);
        await Task.Yield();
        Assert.False(stopping.IsCompleted);
        _publisher.Release();
        await stopping.WaitAsync(Bound, Ct);

        Assert.Single(_publisher.Published);
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task Concurrent_stops_all_wait_for_the_batch_in_flight_and_the_dispatcher_counts_as_running_until_it_ends()
    {
        var outbox = Create();
        _publisher.Hold();
        await outbox.SendAsync(new OutboxMessage("in flight"), Ct);
        outbox.StartDispatcher();
        await _publisher.Waiting.Task.WaitAsync(Bound, Ct);

        var first = outbox.StopAsync(Ct);
        var second = outbox.StopAsync(Ct);
        var disposing = outbox.DisposeAsync().AsTask();
        var disposingAgain = outbox.DisposeAsync().AsTask();
        await Task.Yield();

        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted);
        Assert.False(disposing.IsCompleted);
        Assert.False(disposingAgain.IsCompleted);
        Assert.True(outbox.IsDispatcherRunning);

        _publisher.Release();
        await Task.WhenAll(first, second, disposing, disposingAgain).WaitAsync(Bound, Ct);
        Assert.False(outbox.IsDispatcherRunning);
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task Disposing_during_a_stop_completes_the_notifications_only_after_the_last_mark()
    {
        var outbox = Create(new OutboxOptions { MessageBatchSize = 50, NotificationCapacity = 1000 });
        var dispatched = outbox.Dispatched;
        for (var i = 0; i < 250; i++)
        {
            await _store.AddWithinTransactionAsync(new OutboxMessage($"m{i}") { MessageId = Guid.NewGuid() }, null, Ct);
        }

        _publisher.Hold();
        outbox.StartDispatcher();
        await _publisher.Waiting.Task.WaitAsync(Bound, Ct);

        var stopping = outbox.StopAsync(Ct);
        var disposing = outbox.DisposeAsync().AsTask();
        _publisher.Release();
        await Task.WhenAll(stopping, disposing).WaitAsync(Bound, Ct);

        var notified = 0;
        await foreach (var _ in dispatched.ReadAllAsync(Ct))
        {
            notified++;
        }

        Assert.Equal(250 - _store.PendingCount, notified);
        Assert.True(notified > 0);
    }

    [Fact]
    public async Task Stopping_twice_and_stopping_what_never_started_are_harmless()
    {
        var outbox = Create();
        await outbox.StopAsync(Ct);
        await outbox.StartAsync(Ct);
        await outbox.StopAsync(Ct);
        await outbox.StopAsync(Ct);
        await outbox.DisposeAsync();
        await outbox.DisposeAsync();
        await outbox.StopAsync(Ct);
    }

    [Fact]
    public async Task Starting_twice_runs_one_dispatcher()
    {
        var log = new CountingLoggerFactory();
        _outbox = new Outbox(_store, _publisher, new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) }, log, _time);
        for (var i = 0; i < 20; i++)
        {
            await _store.AddWithinTransactionAsync(new OutboxMessage($"m{i}") { MessageId = Guid.NewGuid() }, null, Ct);
        }

        var dispatched = _outbox.Dispatched;
        _outbox.StartDispatcher();
        _outbox.StartDispatcher();
        await _outbox.StartAsync(Ct);
        for (var i = 0; i < 20; i++)
        {
            await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        }

        await _outbox.StopAsync(Ct);
        Assert.Equal(1, log.Count(OutboxEventIds.DispatcherStarted));
        Assert.Equal(1, log.Count(OutboxEventIds.DispatcherStopped));
        Assert.Equal(1, log.Count(OutboxEventIds.CleanupStarted));
        Assert.Equal(20, _publisher.Attempts);
    }

    [Fact]
    public async Task The_outbox_can_be_started_again_after_a_stop()
    {
        var outbox = Create(new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) });
        var dispatched = outbox.Dispatched;
        await outbox.StartAsync(Ct);
        await outbox.StopAsync(Ct);
        await outbox.StartAsync(Ct);

        await outbox.SendAsync(new OutboxMessage("second run"), Ct);

        await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
    }

    [Fact]
    public async Task Starting_a_disposed_outbox_throws()
    {
        var outbox = Create();
        await outbox.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(outbox.StartDispatcher);
    }

    [Fact]
    public async Task Nobody_reading_notifications_never_blocks_dispatch_and_keeps_memory_bounded()
    {
        var outbox = Create(new OutboxOptions { NotificationCapacity = 16, MessageBatchSize = 100 });
        var dispatched = outbox.Dispatched;
        for (var i = 0; i < 500; i++)
        {
            await outbox.SendAsync(new OutboxMessage($"m{i}"), Ct);
        }

        Assert.Equal(500, await outbox.DispatchPendingAsync(Ct));

        Assert.Equal(16, dispatched.Count);
        var newest = new List<DispatchedMessage>();
        while (dispatched.TryRead(out var item))
        {
            newest.Add(item);
        }

        Assert.Equal(500, newest[^1].Id);
    }

    [Fact]
    public async Task Invalid_arguments_are_rejected_before_anything_is_written()
    {
        var outbox = Create();

        await Assert.ThrowsAsync<ArgumentNullException>(() => outbox.SendAsync(null!, Ct));
        await Assert.ThrowsAsync<ArgumentNullException>(async () => await outbox.EnqueueAsync((System.Data.Common.DbTransaction)null!, new OutboxMessage("x"), Ct));
        await Assert.ThrowsAsync<ArgumentNullException>(async () => await outbox.EnqueueAsync((System.Data.IDbTransaction)null!, new OutboxMessage("x"), Ct));
        await Assert.ThrowsAsync<ArgumentNullException>(async () => await outbox.EnqueueAsync((System.Data.Common.DbConnection)null!, new OutboxMessage("x"), Ct));
        await Assert.ThrowsAsync<ArgumentNullException>(async () => await outbox.EnqueueManyAsync(null!, [new OutboxMessage("x")], Ct));
        await Assert.ThrowsAsync<ArgumentNullException>(() => outbox.SendWithinTransactionAsync(new OutboxMessage("x"), null!, Ct));
        Assert.Throws<ArgumentNullException>(() => new OutboxMessage((byte[])null!));
        Assert.Throws<ArgumentNullException>(() => new OutboxMessage("x").Payload = null!);
        var unstorable = new OutboxMessage("x");
        unstorable.Headers["socket"] = new object();
        await Assert.ThrowsAsync<ArgumentException>(() => outbox.SendAsync(unstorable, Ct));

        Assert.Equal(0, _store.Count);
    }

    [Fact]
    public async Task Sending_assigns_a_version_7_message_id_and_the_creation_time_unless_given()
    {
        var outbox = Create();
        var generated = new OutboxMessage("a");
        var given = new OutboxMessage("b") { MessageId = Guid.NewGuid(), CreatedAt = _time.GetUtcNow().AddDays(-1) };
        var givenId = given.MessageId;

        await outbox.SendAsync(generated, Ct);
        await outbox.SendAsync(given, Ct);

        Assert.Equal(7, generated.MessageId.Version);
        Assert.Equal(_time.GetUtcNow(), generated.CreatedAt);
        Assert.Equal(givenId, given.MessageId);
        Assert.Equal(_time.GetUtcNow().AddDays(-1), given.CreatedAt);
    }

    // Exact retry times unless a test asks for jitter.
    private Outbox Create(OutboxOptions? options = null, double jitter = 0)
    {
        options ??= new OutboxOptions();
        options.RetryJitter = jitter;
        return _outbox = new Outbox(_store, _publisher, options, timeProvider: _time);
    }

    /// <summary>
    /// Moves the clock one step at a time until <paramref name="until"/> completes. The loop registers its timer asynchronously,
    /// so a single step could land before the timer exists; each further step fires it at most once more.
    /// </summary>
    private async Task AdvanceUntilAsync(Task until, TimeSpan step)
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        bound.CancelAfter(Bound);
        while (!until.IsCompleted)
        {
            _time.Advance(step);
            await Task.WhenAny(until, Task.Delay(TimeSpan.FromMilliseconds(50), bound.Token));
            bound.Token.ThrowIfCancellationRequested();
        }

        await until;
    }

    /// <summary>Reads <paramref name="count"/> notifications from <see cref="Outbox.Dispatched"/>.</summary>
    private static Task ReadDispatchedAsync(Outbox outbox, int count)
    {
        var dispatched = outbox.Dispatched;
        return Task.Run(
            async () =>
            {
                for (var i = 0; i < count; i++)
                {
                    await dispatched.ReadAsync(Ct);
                }
            },
            Ct);
    }

    /// <summary>Waits (in real time, bounded) until <paramref name="condition"/> holds: for states reached on other threads without a notification.</summary>
    private static async Task EventuallyAsync(Func<bool> condition)
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        bound.CancelAfter(Bound);
        while (!condition())
        {
            await Task.Delay(TimeSpan.FromMilliseconds(5), bound.Token);
        }
    }

    /// <summary>Waits until the dispatcher has made one empty claim, i.e. it is idle and waiting.</summary>
    private async Task IdleAsync()
    {
        var idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _store.Claimed += count =>
        {
            if (count == 0)
            {
                idle.TrySetResult();
            }
        };
        if (_store.Claims == 0)
        {
            await idle.Task.WaitAsync(Bound, Ct);
        }
    }
}
