using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.EntityFrameworkCore.Tests;

/// <summary>
/// What a DbContext configured with <c>UseOutboxer</c> guarantees, run against every database the package supports: a message added
/// to the context is published exactly when the transaction of its SaveChanges commits, and never after a failure or a rollback.
/// </summary>
public abstract class EntityFrameworkCoreOutboxTests<TDatabase> : IAsyncLifetime
    where TDatabase : TestDatabase, new()
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly RecordingPublisher _publisher = new();
    private readonly List<Outbox> _started = [];

    protected TDatabase Database { get; } = new();

    protected Outbox Outbox { get; private set; } = null!;

    protected IReadOnlyList<OutboxMessage> Published => _publisher.Published;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        await Database.InitializeAsync();
        Outbox = new Outbox(Database.CreateStore(), _publisher);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var outbox in _started)
        {
            await outbox.DisposeAsync();
        }

        await Outbox.DisposeAsync();
        await Database.DisposeAsync();
    }

    [Fact]
    public async Task A_message_added_to_the_context_is_published_after_SaveChanges_commits_with_the_row()
    {
        var message = OrderPlaced(1);
        await using (var context = NewContext())
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1", Total = 10m });
            context.AddOutboxMessage(message);
            Assert.Equal(1, await context.SaveChangesAsync(Ct));
            Assert.Empty(context.GetPendingOutboxMessages());
        }

        Assert.Equal(1, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(message.MessageId, Assert.Single(Published).MessageId);
        Assert.Equal("OrderPlaced", Published[0].Headers["event-type"]);
        Assert.Equal(1, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task Many_messages_and_many_rows_of_one_SaveChanges_are_all_published()
    {
        await using (var context = NewContext())
        {
            for (var i = 1; i <= 50; i++)
            {
                context.Orders.Add(new Order { Id = i, Number = $"A-{i}", Total = i });
            }

            context.AddOutboxMessages(Enumerable.Range(1, 50).Select(OrderPlaced));
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(50, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(Enumerable.Range(1, 50).Select(i => $"order {i}").Order(StringComparer.Ordinal), Published.Select(m => System.Text.Encoding.UTF8.GetString(m.Payload)).Order(StringComparer.Ordinal));
        Assert.Equal(50, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_SaveChanges_with_only_messages_writes_them_in_a_transaction_of_their_own()
    {
        await using (var context = NewContext())
        {
            context.AddOutboxMessage(OrderPlaced(1));
            Assert.Equal(0, await context.SaveChangesAsync(Ct));
            Assert.Empty(context.GetPendingOutboxMessages());
        }

        Assert.Equal(1, await Outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task The_same_message_added_twice_is_written_once()
    {
        var message = OrderPlaced(1);
        await using (var context = NewContext())
        {
            context.AddOutboxMessage(message);
            context.AddOutboxMessages([message, message]);
            Assert.Single(context.GetPendingOutboxMessages());
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(1, await Outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task A_SaveChanges_that_violates_a_key_writes_neither_its_rows_nor_its_messages()
    {
        await SeedOrderAsync(1, "A-1");
        await using (var context = NewContext())
        {
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            context.Orders.Add(new Order { Id = 1, Number = "A-1-again" });
            context.AddOutboxMessage(OrderPlaced(2));

            await Assert.ThrowsAsync<DbUpdateException>(() => context.SaveChangesAsync(Ct));
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(1, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_failing_single_statement_SaveChanges_writes_no_message()
    {
        // EF runs one statement without a transaction of its own; the outbox makes it take one.
        await SeedOrderAsync(1, "A-1");
        await using (var context = NewContext())
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1-again" });
            context.AddOutboxMessage(OrderPlaced(1));

            await Assert.ThrowsAsync<DbUpdateException>(() => context.SaveChangesAsync(Ct));
            Assert.Equal(AutoTransactionBehavior.WhenNeeded, context.Database.AutoTransactionBehavior);
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task Messages_of_a_failed_SaveChanges_wait_for_the_retry_like_its_changes()
    {
        await SeedOrderAsync(1, "A-1");
        var message = OrderPlaced(2);
        await using (var context = NewContext())
        {
            var duplicate = new Order { Id = 1, Number = "A-1-again" };
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            context.Orders.Add(duplicate);
            context.AddOutboxMessage(message);
            await Assert.ThrowsAsync<DbUpdateException>(() => context.SaveChangesAsync(Ct));
            Assert.Same(message, Assert.Single(context.GetPendingOutboxMessages()));

            context.Entry(duplicate).State = EntityState.Detached;
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(1, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(message.MessageId, Assert.Single(Published).MessageId);
        Assert.Equal(2, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_database_failure_writing_the_messages_rolls_back_the_row_of_a_single_statement_SaveChanges()
    {
        await Assert.IsAssignableFrom<Outboxer.Providers.IOutboxSchema>(Outbox.Store).MigrateAsync(Ct);
        await Database.DropOutboxTableAsync();
        await using (var context = NewContext())
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(OrderPlaced(1));

            await Assert.ThrowsAsync<OutboxException>(() => context.SaveChangesAsync(Ct));
            Assert.Single(context.GetPendingOutboxMessages());
        }

        Assert.Equal(0, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_database_failure_writing_the_messages_in_an_explicit_transaction_leaves_the_transaction_usable()
    {
        await Assert.IsAssignableFrom<Outboxer.Providers.IOutboxSchema>(Outbox.Store).MigrateAsync(Ct);
        await Database.DropOutboxTableAsync();
        await using (var context = NewContext())
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(OrderPlaced(1));
            await Assert.ThrowsAsync<OutboxException>(() => context.SaveChangesAsync(Ct));

            context.ClearOutboxMessages();
            await context.SaveChangesAsync(Ct);
            await transaction.CommitAsync(Ct);
        }

        Assert.Equal(1, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_message_whose_header_cannot_be_stored_fails_SaveChanges_before_anything_is_written()
    {
        await using (var context = NewContext())
        {
            var bad = OrderPlaced(1);
            bad.Headers["stream"] = new MemoryStream();
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessages([OrderPlaced(2), bad]);

            var ex = await Assert.ThrowsAsync<ArgumentException>(() => context.SaveChangesAsync(Ct));
            Assert.Contains("stream", ex.Message, StringComparison.Ordinal);
            Assert.Equal(EntityState.Added, context.ChangeTracker.Entries<Order>().Single().State);
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(0, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_message_whose_header_cannot_be_stored_fails_SaveChanges_in_an_explicit_transaction_and_the_transaction_stays_usable()
    {
        await using (var context = NewContext())
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            var bad = OrderPlaced(1);
            bad.Headers["stream"] = new MemoryStream();
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(bad);

            await Assert.ThrowsAsync<ArgumentException>(() => context.SaveChangesAsync(Ct));

            context.ClearOutboxMessages();
            context.AddOutboxMessage(OrderPlaced(2));
            await context.SaveChangesAsync(Ct);
            await transaction.CommitAsync(Ct);
        }

        Assert.Equal(1, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal("order 2", System.Text.Encoding.UTF8.GetString(Assert.Single(Published).Payload));
        Assert.Equal(1, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task An_explicit_transaction_rolled_back_after_SaveChanges_publishes_nothing()
    {
        await using (var context = NewContext())
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(OrderPlaced(1));
            await context.SaveChangesAsync(Ct);
            await transaction.RollbackAsync(Ct);

            // Nothing of the rolled-back unit of work comes out later either.
            context.ChangeTracker.Clear();
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(1, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_rollback_discards_the_messages_still_waiting_for_a_SaveChanges()
    {
        await SeedOrderAsync(1, "A-1");
        await using (var context = NewContext())
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 1, Number = "A-1-again" });
            context.AddOutboxMessage(OrderPlaced(1));
            await Assert.ThrowsAsync<DbUpdateException>(() => context.SaveChangesAsync(Ct));
            await transaction.RollbackAsync(Ct);
            Assert.Empty(context.GetPendingOutboxMessages());

            context.ChangeTracker.Clear();
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task An_explicit_transaction_committed_after_SaveChanges_publishes_the_message_once()
    {
        var message = OrderPlaced(1);
        await using (var context = NewContext())
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(message);
            await context.SaveChangesAsync(Ct);
            await transaction.CommitAsync(Ct);
        }

        Assert.Equal(1, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(message.MessageId, Assert.Single(Published).MessageId);
        Assert.Equal(1, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task Two_SaveChanges_in_one_explicit_transaction_publish_both_messages_only_after_the_commit()
    {
        await using (var context = NewContext())
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(OrderPlaced(1));
            await context.SaveChangesAsync(Ct);
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            context.AddOutboxMessage(OrderPlaced(2));
            await context.SaveChangesAsync(Ct);

            if (Database.DispatchesBesideAnOpenTransaction)
            {
                Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
            }

            await transaction.CommitAsync(Ct);
        }

        Assert.Equal(2, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(["order 1", "order 2"], Published.Select(m => System.Text.Encoding.UTF8.GetString(m.Payload)).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_failed_SaveChanges_inside_an_explicit_transaction_takes_its_messages_out_of_the_transaction()
    {
        await SeedOrderAsync(1, "A-1");
        await using (var context = NewContext())
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            context.AddOutboxMessage(OrderPlaced(2));
            await context.SaveChangesAsync(Ct);

            var duplicate = new Order { Id = 1, Number = "A-1-again" };
            context.Orders.Add(duplicate);
            context.AddOutboxMessage(OrderPlaced(1));
            await Assert.ThrowsAsync<DbUpdateException>(() => context.SaveChangesAsync(Ct));

            // The application gives up on the failed save but keeps the transaction: only the first save's message commits.
            context.Entry(duplicate).State = EntityState.Detached;
            context.ClearOutboxMessages();
            await transaction.CommitAsync(Ct);
        }

        Assert.Equal(1, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal("order 2", System.Text.Encoding.UTF8.GetString(Assert.Single(Published).Payload));
        Assert.Equal(2, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task With_savepoints_off_a_transaction_whose_SaveChanges_failed_after_writing_messages_refuses_to_commit()
    {
        await SeedOrderAsync(1, "A-1");
        await using (var context = NewContext())
        {
            context.Database.AutoSavepointsEnabled = false;
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 1, Number = "A-1-again" });
            context.AddOutboxMessage(OrderPlaced(1));
            await Assert.ThrowsAsync<DbUpdateException>(() => context.SaveChangesAsync(Ct));

            var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => transaction.CommitAsync(Ct));
            Assert.Contains("Roll the transaction back", ex.Message, StringComparison.Ordinal);
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task A_concurrency_failure_inside_an_explicit_transaction_takes_its_messages_out_of_the_transaction()
    {
        await using (var context = NewContext())
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Update(new Order { Id = 99, Number = "missing" });
            context.AddOutboxMessage(OrderPlaced(99));
            await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => context.SaveChangesAsync(Ct));
            Assert.Single(context.GetPendingOutboxMessages());

            await transaction.CommitAsync(Ct);
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task A_concurrency_failure_without_a_transaction_writes_no_message_and_keeps_it_for_the_retry()
    {
        await using (var context = NewContext())
        {
            var order = new Order { Id = 99, Number = "missing" };
            context.Orders.Update(order);
            context.AddOutboxMessage(OrderPlaced(99));
            await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => context.SaveChangesAsync(Ct));
            Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
            Assert.Equal(AutoTransactionBehavior.WhenNeeded, context.Database.AutoTransactionBehavior);

            // The usual resolution: the row is gone, so insert it instead.
            context.Entry(order).State = EntityState.Added;
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(1, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(1, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_synchronous_SaveChanges_writes_its_messages_in_its_transaction()
    {
        using (var context = NewContext())
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(OrderPlaced(1));
            context.SaveChanges();

            using var transaction = context.Database.BeginTransaction();
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            context.AddOutboxMessage(OrderPlaced(2));
            context.SaveChanges();
            transaction.Commit();

            context.AddOutboxMessage(OrderPlaced(3));
            context.SaveChanges();
        }

        Assert.Equal(3, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(2, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_synchronous_SaveChanges_that_fails_or_is_rolled_back_publishes_nothing()
    {
        await SeedOrderAsync(1, "A-1");
        using (var context = NewContext())
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1-again" });
            context.AddOutboxMessage(OrderPlaced(1));
            Assert.Throws<DbUpdateException>(() => context.SaveChanges());
            context.ChangeTracker.Clear();
            context.ClearOutboxMessages();

            using var transaction = context.Database.BeginTransaction();
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            context.AddOutboxMessage(OrderPlaced(2));
            context.SaveChanges();
            transaction.Rollback();
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(1, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task The_running_dispatcher_publishes_a_message_soon_after_SaveChanges_commits()
    {
        await using var outbox = new Outbox(Database.CreateStore(), _publisher, new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) });
        var dispatched = outbox.Dispatched;
        await Assert.IsAssignableFrom<Outboxer.Providers.IOutboxSchema>(outbox.Store).MigrateAsync(Ct);
        outbox.StartDispatcher();

        var message = OrderPlaced(1);
        await using (var context = NewContext(outbox))
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(message);
            await context.SaveChangesAsync(Ct);
        }

        var sent = await dispatched.ReadAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal(message.MessageId, sent.MessageId);
    }

    [Fact]
    public async Task While_the_dispatcher_runs_a_saved_message_is_published_right_after_the_commit_without_a_claim()
    {
        var (outbox, proxy) = await StartWithCountedClaimsAsync(new FakeTimeProvider(T0));
        var dispatched = outbox.Dispatched;

        var message = OrderPlaced(1);
        await using (var context = NewContext(outbox))
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(message);
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(message.MessageId, (await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct)).MessageId);
        Assert.False(proxy.Claims.Reader.TryRead(out _));
        var published = Assert.Single(Published);
        Assert.NotEqual(0, published.LeaseToken);
        Assert.Equal(message.LeaseToken, published.LeaseToken);
        Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task While_the_dispatcher_runs_messages_saved_in_an_explicit_transaction_are_published_after_its_commit_and_not_after_its_rollback()
    {
        var (outbox, proxy) = await StartWithCountedClaimsAsync(new FakeTimeProvider(T0));
        var dispatched = outbox.Dispatched;

        await using (var context = NewContext(outbox))
        {
            await using (var rolledBack = await context.Database.BeginTransactionAsync(Ct))
            {
                context.Orders.Add(new Order { Id = 1, Number = "A-1" });
                context.AddOutboxMessage(OrderPlaced(1));
                await context.SaveChangesAsync(Ct);
                await rolledBack.RollbackAsync(Ct);
            }

            context.ChangeTracker.Clear();
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 2, Number = "A-2" });
            context.AddOutboxMessage(OrderPlaced(2));
            await context.SaveChangesAsync(Ct);
            context.AddOutboxMessage(OrderPlaced(3));
            await context.SaveChangesAsync(Ct);
            Assert.Empty(Published);
            await transaction.CommitAsync(Ct);
        }

        await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        if (Published.Count < 2)
        {
            await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        }

        Assert.Equal(["order 2", "order 3"], Published.Select(m => System.Text.Encoding.UTF8.GetString(m.Payload)).Order(StringComparer.Ordinal));
        Assert.False(proxy.Claims.Reader.TryRead(out _));
        Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task A_message_whose_sender_stopped_before_sending_is_claimed_once_by_another_dispatcher_after_the_lease()
    {
        // A short lease on the real clock: a store may keep leases on the database server's clock, which no fake clock moves.
        var options = new OutboxOptions { CheckInterval = TimeSpan.FromHours(1), LeaseDuration = TimeSpan.FromSeconds(1), PublishTimeout = TimeSpan.FromMilliseconds(500) };
        var (sender, _) = await StartWithCountedClaimsAsync(TimeProvider.System, options);

        var message = OrderPlaced(1);
        await using (var context = NewContext(sender))
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(message);
            await context.SaveChangesAsync(Ct);

            // The sender's dispatcher ends between the write and the commit, as if its process died right after committing.
            await sender.StopAsync(Ct);
            await transaction.CommitAsync(Ct);
        }

        Assert.NotEqual(0, message.LeaseToken);
        var otherPublisher = new RecordingPublisher();
        await using var other = new Outbox(Database.CreateStore(), otherPublisher);
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        bound.CancelAfter(Bound);
        while (await other.DispatchPendingAsync(bound.Token) == 0)
        {
            await Task.Delay(100, bound.Token);
        }

        Assert.Equal(0, await other.DispatchPendingAsync(Ct));
        Assert.Equal(message.MessageId, Assert.Single(otherPublisher.Published).MessageId);
        Assert.Equal(2, otherPublisher.Published[0].Attempts);
        Assert.Empty(Published);
    }

    [Fact]
    public async Task A_message_with_an_ordering_key_saved_while_the_dispatcher_runs_still_goes_through_a_claim()
    {
        var (outbox, proxy) = await StartWithCountedClaimsAsync(new FakeTimeProvider(T0));
        var dispatched = outbox.Dispatched;

        var message = OrderPlaced(1);
        message.OrderingKey = "order-1";
        await using (var context = NewContext(outbox))
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(message);
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(message.MessageId, (await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct)).MessageId);
        Assert.True(proxy.Claims.Reader.TryRead(out var claimed));
        Assert.Equal(1, claimed);
    }

    [Fact]
    public async Task AutoTransactionBehavior_Never_without_a_transaction_is_refused_before_anything_is_written()
    {
        await using (var context = NewContext())
        {
            context.Database.AutoTransactionBehavior = AutoTransactionBehavior.Never;
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(OrderPlaced(1));

            var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => context.SaveChangesAsync(Ct));
            Assert.Contains("AutoTransactionBehavior", ex.Message, StringComparison.Ordinal);
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(0, await Database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_context_without_UseOutboxer_refuses_messages_and_says_how_to_configure_it()
    {
        await using var context = new ShopContext(Database.UseProvider(new DbContextOptionsBuilder<ShopContext>()).Options);

        var ex = Assert.Throws<InvalidOperationException>(() => context.AddOutboxMessage(OrderPlaced(1)));

        Assert.Contains("UseOutboxer", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Starts an outbox whose dispatcher runs over a store that counts its claims (and cannot LISTEN, so with time standing still
    /// only this process's wake-ups and sends make it act), after its first, empty claim.
    /// </summary>
    protected async Task<(Outbox Outbox, StoreProxy Proxy)> StartWithCountedClaimsAsync(TimeProvider time, OutboxOptions? options = null)
    {
        var real = Database.CreateStore();
        await Assert.IsAssignableFrom<Outboxer.Providers.IOutboxSchema>(real).MigrateAsync(Ct);
        var (store, proxy) = StoreProxy.WrapLeased(real);
        var outbox = new Outbox(store, _publisher, options ?? new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) }, timeProvider: time);
        _started.Add(outbox);
        outbox.StartDispatcher();
        Assert.Equal(0, await proxy.Claims.Reader.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct));
        return (outbox, proxy);
    }

    protected static OutboxMessage OrderPlaced(int orderId)
    {
        var message = new OutboxMessage($"order {orderId}");
        message.Headers["event-type"] = "OrderPlaced";
        return message;
    }

    protected ShopContext NewContext(Outbox? outbox = null, Action<DbContextOptionsBuilder<ShopContext>>? configure = null)
    {
        var builder = Database.UseProvider(new DbContextOptionsBuilder<ShopContext>()).UseOutboxer(outbox ?? Outbox);
        configure?.Invoke(builder);
        return new ShopContext(builder.Options);
    }

    private async Task SeedOrderAsync(int id, string number)
    {
        await using var context = NewContext();
        context.Orders.Add(new Order { Id = id, Number = number });
        await context.SaveChangesAsync(Ct);
    }
}

public sealed class PostgreSqlEntityFrameworkCoreOutboxTests : EntityFrameworkCoreOutboxTests<PostgreSqlTestDatabase>;

