using System.Data.Common;
using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

public sealed class EnqueueOnlyOutboxTests
{
    [Fact]
    public async Task An_outbox_without_a_publisher_enqueues_and_starts_only_the_cleanup()
    {
        var store = new InMemoryOutboxStore();
        await using var outbox = new Outbox(store);

        var id = await outbox.SendAsync(new OutboxMessage([1]), TestContext.Current.CancellationToken);
        await outbox.StartAsync(TestContext.Current.CancellationToken);

        Assert.True(id > 0);
        Assert.Equal(1, store.PendingCount);
        Assert.False(outbox.CanDispatch);
        Assert.False(outbox.IsDispatcherRunning);
        Assert.Same(store, outbox.Store);
        Assert.Same(store, outbox.Writer);
        Assert.Equal(1, (await outbox.GetStatisticsAsync(TestContext.Current.CancellationToken)).Pending);
    }

    [Fact]
    public async Task An_outbox_without_a_publisher_refuses_to_dispatch_and_says_why()
    {
        await using var outbox = new Outbox(new InMemoryOutboxStore());

        var start = Assert.Throws<InvalidOperationException>(outbox.StartDispatcher);
        var dispatch = await Assert.ThrowsAsync<InvalidOperationException>(() => outbox.DispatchPendingAsync(TestContext.Current.CancellationToken));

        Assert.Contains("without a publisher", start.Message, StringComparison.Ordinal);
        Assert.Equal(start.Message, dispatch.Message);
    }

    [Fact]
    public async Task An_outbox_over_a_writer_that_is_not_a_store_only_enqueues()
    {
        var writer = new ListWriter();
        await using var outbox = new Outbox(writer);

        await outbox.SendAsync(new OutboxMessage([7]), TestContext.Current.CancellationToken);
        await outbox.StartAsync(TestContext.Current.CancellationToken);

        var message = Assert.Single(writer.Messages);
        Assert.Equal(new byte[] { 7 }, message.Payload);
        Assert.NotEqual(Guid.Empty, message.MessageId);
        Assert.Same(writer, outbox.Writer);
        Assert.Null(outbox.Administration);
        Assert.Contains(nameof(ListWriter), Assert.Throws<InvalidOperationException>(() => outbox.Store).Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(outbox.StartCleanup);
        await Assert.ThrowsAsync<InvalidOperationException>(() => outbox.CleanupAsync(TestContext.Current.CancellationToken));
        await Assert.ThrowsAsync<NotSupportedException>(() => outbox.GetStatisticsAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public void An_outbox_needs_a_writer()
    {
        var ex = Assert.Throws<ArgumentNullException>(() => new Outbox((IOutboxWriter)null!));

        Assert.Equal("writer", ex.ParamName);
    }

    /// <summary>A writer that keeps what it is given: the smallest thing that only enqueues.</summary>
    private sealed class ListWriter : IOutboxWriter
    {
        public List<OutboxMessage> Messages { get; } = [];

        public ValueTask<long> AddAsync(DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default) =>
            throw new NotSupportedException();

        public Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default)
        {
            Messages.Add(message);
            return Task.FromResult((long)Messages.Count);
        }
    }
}
