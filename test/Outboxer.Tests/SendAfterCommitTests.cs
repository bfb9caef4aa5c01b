using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

/// <summary>
/// Messages the outbox commits itself (SendAsync, SendWithinTransactionAsync) while its dispatcher runs are written already claimed
/// and published from memory right after the commit. Over the in-memory store, with time moved by hand.
/// </summary>
public sealed class SendAfterCommitTests : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly InMemoryOutboxStore _store = new();
    private readonly RecordingPublisher _publisher = new();
    private readonly List<Outbox> _outboxes = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        // A held publish would keep its outbox's stop waiting (a graceful stop lets the batch in flight finish).
        _publisher.Release();
        foreach (var outbox in _outboxes)
        {
            await outbox.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_message_sent_while_the_dispatcher_runs_is_published_after_the_commit_without_a_claim()
    {
        var outbox = Create(_publisher);
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await WaitForFirstClaimAsync();
        var claims = _store.Claims;

        var message = new OutboxMessage("sent");
        await outbox.SendAsync(message, Ct);
        var notification = await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);

        Assert.Equal(message.Id, notification.Id);
        Assert.Equal(1, _store.LeasedWrites);
        Assert.Equal(claims, _store.Claims);
        Assert.Equal(message.MessageId, Assert.Single(_publisher.Published).MessageId);
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task A_message_changed_by_the_caller_after_sending_is_published_as_it_was_committed()
    {
        var outbox = Create(_publisher);
        var dispatched = outbox.Dispatched;
        _publisher.Hold();
        outbox.StartDispatcher();
        await WaitForFirstClaimAsync();

        var message = new OutboxMessage("as committed");
        message.Headers["state"] = "committed";
        await outbox.SendAsync(message, Ct);
        message.Headers["state"] = "changed later";
        _publisher.Release();
        await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);

        Assert.Equal("committed", Assert.Single(_publisher.Published).Headers["state"]);
    }

    [Fact]
    public async Task A_graceful_stop_publishes_the_messages_committed_just_before_it()
    {
        var outbox = Create(_publisher);
        outbox.StartDispatcher();
        await WaitForFirstClaimAsync();

        for (var i = 0; i < 20; i++)
        {
            await outbox.SendAsync(new OutboxMessage($"m{i}"), Ct);
        }

        await outbox.StopAsync(Ct);

        Assert.Equal(20, _publisher.Published.Count);
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task A_message_with_an_ordering_key_still_goes_through_a_claim()
    {
        var outbox = Create(_publisher);
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await WaitForFirstClaimAsync();

        await outbox.SendAsync(new OutboxMessage("keyed") { OrderingKey = "k" }, Ct);
        await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);

        Assert.Equal(0, _store.LeasedWrites);
    }

    [Fact]
    public async Task Without_a_running_dispatcher_a_sent_message_is_written_pending_for_any_dispatcher_to_claim()
    {
        var producer = Create(_publisher);
        await producer.SendAsync(new OutboxMessage("for whoever dispatches"), Ct);

        var now = _time.GetUtcNow();
        Assert.Equal(0, _store.LeasedWrites);
        Assert.Single(await _store.ClaimAsync(10, now, now.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task A_message_whose_process_died_before_publishing_is_claimed_by_another_dispatcher_after_the_lease()
    {
        // The first process commits and then never publishes (its publisher hangs and its clock stands still, as a process that
        // died would).
        var dying = Create(_publisher, new OutboxOptions { LeaseDuration = TimeSpan.FromSeconds(30), PublishTimeout = TimeSpan.FromSeconds(10) }, new FakeTimeProvider(_time.GetUtcNow()));
        _publisher.Hold();
        dying.StartDispatcher();
        await WaitForFirstClaimAsync();
        var message = new OutboxMessage("committed, not yet published");
        await dying.SendAsync(message, Ct);
        await _publisher.Waiting.Task.WaitAsync(Bound, Ct);

        // Another process: nothing to claim while the lease holds, the message once it ran out.
        var otherPublisher = new RecordingPublisher();
        var other = Create(otherPublisher);
        Assert.Equal(0, await other.DispatchPendingAsync(Ct));
        _time.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal(1, await other.DispatchPendingAsync(Ct));

        Assert.Equal(message.MessageId, Assert.Single(otherPublisher.Published).MessageId);
        Assert.Equal(0, _store.PendingCount);
    }

    private Outbox Create(RecordingPublisher publisher, OutboxOptions? options = null, TimeProvider? time = null)
    {
        options ??= new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) };
        options.RetryJitter = 0;
        var outbox = new Outbox(_store, publisher, options, timeProvider: time ?? _time);
        _outboxes.Add(outbox);
        return outbox;
    }

    /// <summary>Waits (in real time, bounded) until the loop's first claim has run: from then on it waits for wake-ups.</summary>
    private async Task WaitForFirstClaimAsync()
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        bound.CancelAfter(Bound);
        while (_store.Claims == 0)
        {
            await Task.Delay(10, bound.Token);
        }
    }
}
