using System.Data;
using System.Data.Common;
using System.Diagnostics.CodeAnalysis;
using System.Transactions;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

/// <summary>
/// Messages enqueued in an ambient <see cref="TransactionScope"/> while the dispatcher runs are written already claimed and published
/// from memory once the ambient transaction commits. Over the in-memory store, which adds a row when the ambient transaction commits
/// and never when it aborts (the relational stores run the same path against real databases in their own tests).
/// </summary>
public sealed class TransactionScopeSendAfterCommitTests : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly InMemoryOutboxStore _store = new();
    private readonly RecordingPublisher _publisher = new();
    private readonly List<Outbox> _outboxes = [];
    private readonly NoDatabase _connection = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask DisposeAsync()
    {
        _publisher.Release();
        foreach (var outbox in _outboxes)
        {
            await outbox.DisposeAsync();
        }

        await _connection.DisposeAsync();
    }

    [Fact]
    public async Task A_message_enqueued_in_a_completed_scope_is_published_after_the_commit_without_a_claim()
    {
        var outbox = Create(_publisher);
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await WaitForFirstClaimAsync();
        var claims = _store.Claims;

        var message = new OutboxMessage("in a scope");
        using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await outbox.EnqueueAsync(_connection, message, Ct);
            Assert.Equal(0, _store.Count);
            scope.Complete();
        }

        var notification = await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(message.Id, notification.Id);
        Assert.Equal(1, _store.LeasedWrites);
        Assert.Equal(claims, _store.Claims);
        var published = Assert.Single(_publisher.Published);
        Assert.Equal(message.MessageId, published.MessageId);
        Assert.Equal(message.LeaseToken, published.LeaseToken);
        Assert.Equal(0, _store.PendingCount);
    }

    [Fact]
    public async Task A_scope_that_does_not_complete_writes_and_publishes_nothing()
    {
        var outbox = Create(_publisher);
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await WaitForFirstClaimAsync();

        using (new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await outbox.EnqueueAsync(_connection, new OutboxMessage("rolled back"), Ct);
        }

        // A later send after commit goes through the same queue: once it is published, the aborted one would have been too.
        var later = new OutboxMessage("sent later");
        await outbox.SendAsync(later, Ct);
        await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);

        Assert.Equal([later.MessageId], _publisher.Published.Select(m => m.MessageId));
        Assert.Equal(1, _store.Count);
    }

    [Fact]
    public async Task Without_a_running_dispatcher_a_message_of_a_completed_scope_is_written_pending()
    {
        var producer = Create(_publisher);
        using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await producer.EnqueueAsync(_connection, new OutboxMessage("for whoever dispatches"), Ct);
            scope.Complete();
        }

        var now = _time.GetUtcNow();
        Assert.Equal(0, _store.LeasedWrites);
        Assert.Single(await _store.ClaimAsync(10, now, now.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task A_message_with_an_ordering_key_in_a_completed_scope_is_claimed_once_the_commit_wakes_the_dispatcher()
    {
        var outbox = Create(_publisher);
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        await WaitForFirstClaimAsync();
        var claims = _store.Claims;

        var message = new OutboxMessage("keyed") { OrderingKey = "order-1" };
        using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await outbox.EnqueueAsync(_connection, message, Ct);
            scope.Complete();
        }

        Assert.Equal(message.Id, (await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct)).Id);
        Assert.Equal(0, _store.LeasedWrites);
        Assert.True(_store.Claims > claims);
    }

    [Fact]
    public async Task A_message_whose_sender_stopped_before_sending_is_claimed_once_after_the_lease()
    {
        var options = new OutboxOptions { CheckInterval = TimeSpan.FromHours(1), LeaseDuration = TimeSpan.FromSeconds(30), PublishTimeout = TimeSpan.FromSeconds(10) };
        var sender = Create(_publisher, options);
        sender.StartDispatcher();
        await WaitForFirstClaimAsync();

        // Written already claimed, then the sender's dispatcher ends before the commit hands the message over (as if its process died).
        var message = new OutboxMessage("committed, never sent");
        using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await sender.EnqueueAsync(_connection, message, Ct);
            await sender.StopAsync(Ct);
            scope.Complete();
        }

        var otherPublisher = new RecordingPublisher();
        var other = Create(otherPublisher);
        Assert.Equal(0, await other.DispatchPendingAsync(Ct));
        _time.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal(1, await other.DispatchPendingAsync(Ct));
        Assert.Equal(0, await other.DispatchPendingAsync(Ct));

        Assert.Equal(message.MessageId, Assert.Single(otherPublisher.Published).MessageId);
        Assert.Empty(_publisher.Published);
        Assert.Equal(0, _store.PendingCount);
    }

    private Outbox Create(RecordingPublisher publisher, OutboxOptions? options = null)
    {
        options ??= new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) };
        options.RetryJitter = 0;
        var outbox = new Outbox(_store, publisher, options, timeProvider: _time);
        _outboxes.Add(outbox);
        return outbox;
    }

    private async Task WaitForFirstClaimAsync()
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        bound.CancelAfter(Bound);
        while (_store.Claims == 0)
        {
            await Task.Delay(10, bound.Token);
        }
    }

    /// <summary>The connection the in-memory store is handed and ignores: it has no database behind it.</summary>
    private sealed class NoDatabase : DbConnection
    {
        [AllowNull]
        public override string ConnectionString { get; set; } = string.Empty;

        public override string Database => "in-memory";

        public override string DataSource => "in-memory";

        public override string ServerVersion => "0";

        public override ConnectionState State => ConnectionState.Open;

        public override void ChangeDatabase(string databaseName) => throw new NotSupportedException();

        public override void Close()
        {
        }

        public override void Open()
        {
        }

        protected override DbTransaction BeginDbTransaction(System.Data.IsolationLevel isolationLevel) => throw new NotSupportedException();

        protected override DbCommand CreateDbCommand() => throw new NotSupportedException();
    }
}
