using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

/// <summary>
/// What the dispatcher does when a stall eats its lease, or when a publish ends without an answer: the cases that can duplicate a
/// message without a crash. Over the in-memory store, with time moved by hand.
/// </summary>
public sealed class DispatcherLeaseTests : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly InMemoryOutboxStore _store = new();
    private readonly RecordingPublisher _publisher = new();
    private readonly CountingLoggerFactory _log = new();
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
    public async Task A_claim_that_comes_back_with_less_than_the_publish_timeout_left_of_its_lease_is_not_published()
    {
        var outbox = Create(new OutboxOptions { LeaseDuration = TimeSpan.FromSeconds(30), PublishTimeout = TimeSpan.FromSeconds(10) });
        await outbox.SendAsync(new OutboxMessage("claimed during a stall"), Ct);

        // The database answers the claim 21 seconds after it was sent: 9 seconds of lease left, less than a publish may take.
        _store.Claimed += _ => _time.Advance(TimeSpan.FromSeconds(21));
        Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));

        Assert.Equal(0, _publisher.Attempts);
        Assert.Equal(1, _log.Count(OutboxEventIds.ClaimTooLate));
        Assert.Equal(1, _store.PendingCount);
    }

    [Fact]
    public async Task A_claim_that_comes_back_in_time_is_published()
    {
        var outbox = Create(new OutboxOptions { LeaseDuration = TimeSpan.FromSeconds(30), PublishTimeout = TimeSpan.FromSeconds(10) });
        await outbox.SendAsync(new OutboxMessage("claimed after a short stall"), Ct);

        _store.Claimed += _ => _time.Advance(TimeSpan.FromSeconds(19));
        Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));

        Assert.Equal(1, _publisher.Attempts);
        Assert.Equal(0, _log.Count(OutboxEventIds.ClaimTooLate));
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task A_mark_after_another_dispatcher_took_the_rows_is_refused_and_logged_as_possible_duplicates()
    {
        var outbox = Create(new OutboxOptions { LeaseDuration = TimeSpan.FromSeconds(30), PublishTimeout = TimeSpan.FromSeconds(10) });
        await outbox.SendAsync(new OutboxMessage("published, then the lease ran out"), Ct);
        _publisher.Hold();
        var dispatching = outbox.DispatchPendingAsync(Ct);
        await _publisher.Waiting.Task.WaitAsync(Bound, Ct);

        // While this dispatcher's confirm is under way, another dispatcher sees its lease as run out (a clock ahead of this one, or
        // a mark stalled in the database: the same row state) and claims the row.
        var now = _time.GetUtcNow().AddSeconds(31);
        var other = Assert.Single(await _store.ClaimAsync(10, now, now.AddSeconds(30), Ct));
        _publisher.Release();
        await dispatching.WaitAsync(Bound, Ct);

        Assert.Equal(1, _log.Count(OutboxEventIds.LeaseLost));
        Assert.Equal(1, _store.PendingCount);
        Assert.Equal(1, await _store.MarkDispatchedAsync([other.Id], other.LeaseToken, now, Ct));
    }

    [Fact]
    public async Task A_publish_without_an_answer_is_retried_as_a_possible_duplicate_and_never_dead_lettered_for_its_attempts()
    {
        var outbox = Create(new OutboxOptions { MaxAttempts = 1, PublishTimeout = TimeSpan.FromSeconds(10), RetryDelay = TimeSpan.FromSeconds(1) });
        await outbox.SendAsync(new OutboxMessage("sent, never confirmed"), Ct);
        _publisher.Hold();
        var dispatching = outbox.DispatchPendingAsync(Ct);
        await _publisher.Waiting.Task.WaitAsync(Bound, Ct);
        _time.Advance(TimeSpan.FromSeconds(10));
        await dispatching.WaitAsync(Bound, Ct);
        _publisher.Release();

        Assert.Empty(await outbox.GetDeadLettersAsync(cancellationToken: Ct));
        Assert.Equal(1, _log.Count(OutboxEventIds.PublishOutcomeUnknown));
        Assert.Equal(0, _log.Count(OutboxEventIds.DeadLettered));
        Assert.Equal(1, (await outbox.GetStatisticsAsync(Ct)).Pending);
        Assert.StartsWith("Outcome unknown (it may have been published)", _store.LastError(1), StringComparison.Ordinal);

        // The next attempt gets an answer: the message is published, not lost to the dead letters.
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task A_publish_that_failed_for_sure_is_still_dead_lettered_after_its_last_attempt()
    {
        var outbox = Create(new OutboxOptions { MaxAttempts = 1 });
        _publisher.Fail = _ => new OutboxException("connection refused", isTransient: true);
        await outbox.SendAsync(new OutboxMessage("never left"), Ct);

        Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));

        Assert.Single(await outbox.GetDeadLettersAsync(cancellationToken: Ct));
        Assert.Equal(0, _log.Count(OutboxEventIds.PublishOutcomeUnknown));
    }

    [Fact]
    public async Task A_publisher_that_knows_its_message_left_marks_the_failure_as_an_unknown_outcome()
    {
        var outbox = Create(new OutboxOptions { MaxAttempts = 1 });
        _publisher.Fail = _ => new OutboxException("connection lost while waiting for the confirm", isTransient: true) { IsOutcomeUnknown = true };
        await outbox.SendAsync(new OutboxMessage("left, then the connection dropped"), Ct);

        Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));

        Assert.Empty(await outbox.GetDeadLettersAsync(cancellationToken: Ct));
        Assert.Equal(1, _log.Count(OutboxEventIds.PublishOutcomeUnknown));
    }

    private Outbox Create(OutboxOptions options)
    {
        options.RetryJitter = 0;
        return _outbox = new Outbox(_store, _publisher, options, _log, _time);
    }
}
