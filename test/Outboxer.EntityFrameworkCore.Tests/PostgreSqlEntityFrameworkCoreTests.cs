using System.Transactions;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.EntityFrameworkCore.Tests;

/// <summary>What only PostgreSQL can show: the wake-up after the application's own commit, TransactionScope, and a retrying execution strategy.</summary>
public sealed class PostgreSqlEntityFrameworkCoreTests : IAsyncLifetime
{
    private readonly PostgreSqlTestDatabase _database = new();
    private readonly RecordingPublisher _publisher = new();
    private Outbox _outbox = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        await _database.InitializeAsync();
        _outbox = new Outbox(_database.CreateStore(), _publisher);
    }

    public async ValueTask DisposeAsync()
    {
        await _outbox.DisposeAsync();
        await _database.DisposeAsync();
    }

    [Fact]
    public async Task The_commit_of_an_explicit_transaction_wakes_the_dispatcher()
    {
        // Time stands still and the store cannot LISTEN, so after its first look the dispatcher sleeps until something wakes it.
        var real = _database.CreateStore();
        await Assert.IsAssignableFrom<Outboxer.Providers.IOutboxSchema>(real).MigrateAsync(Ct);
        var (store, proxy) = StoreProxy.Wrap(real);
        await using var outbox = new Outbox(store, _publisher, new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) }, timeProvider: new FakeTimeProvider());
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        Assert.Equal(0, await NextClaimAsync(proxy));

        var message = new OutboxMessage("order 1");
        await using (var context = NewContext(outbox))
        {
            await using var transaction = await context.Database.BeginTransactionAsync(Ct);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(message);
            await context.SaveChangesAsync(Ct);

            // Writing the message woke the dispatcher, which found nothing committed and went back to sleep.
            Assert.Equal(0, await NextClaimAsync(proxy));

            await transaction.CommitAsync(Ct);
        }

        var sent = await dispatched.ReadAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal(message.MessageId, sent.MessageId);
    }

    [Fact]
    public async Task A_message_saved_inside_a_completed_TransactionScope_is_published()
    {
        using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await using var context = NewContext(_outbox);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(new OutboxMessage("order 1"));
            await context.SaveChangesAsync(Ct);
            scope.Complete();
        }

        Assert.Equal(1, await _outbox.DispatchPendingAsync(Ct));
        Assert.Equal(1, await _database.CountOrdersAsync());
    }

    [Fact]
    public async Task While_the_dispatcher_runs_a_message_saved_inside_a_completed_TransactionScope_is_published_after_its_commit_without_a_claim()
    {
        var real = _database.CreateStore();
        await Assert.IsAssignableFrom<Outboxer.Providers.IOutboxSchema>(real).MigrateAsync(Ct);
        var (store, proxy) = StoreProxy.WrapLeased(real);
        await using var outbox = new Outbox(store, _publisher, new OutboxOptions { CheckInterval = TimeSpan.FromHours(1) }, timeProvider: new FakeTimeProvider());
        var dispatched = outbox.Dispatched;
        outbox.StartDispatcher();
        Assert.Equal(0, await NextClaimAsync(proxy));

        var message = new OutboxMessage("order 1");
        using (var scope = new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await using var context = NewContext(outbox);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(message);
            await context.SaveChangesAsync(Ct);
            scope.Complete();
        }

        Assert.Equal(message.MessageId, (await dispatched.ReadAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct)).MessageId);
        Assert.False(proxy.Claims.Reader.TryRead(out _));
        Assert.Equal(message.LeaseToken, Assert.Single(_publisher.Published).LeaseToken);
        Assert.Equal(1, await _database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_message_saved_inside_a_TransactionScope_that_is_not_completed_is_never_published()
    {
        using (new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await using var context = NewContext(_outbox);
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(new OutboxMessage("order 1"));
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(0, await _outbox.DispatchPendingAsync(Ct));
        Assert.Equal(0, await _database.CountOrdersAsync());
    }

    [Fact]
    public async Task A_retrying_execution_strategy_saves_messages_without_an_explicit_transaction()
    {
        await using (var context = NewContext(_outbox, retrying: true))
        {
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(new OutboxMessage("order 1"));
            await context.SaveChangesAsync(Ct);

            context.AddOutboxMessage(new OutboxMessage("no rows"));
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(2, await _outbox.DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task A_retrying_execution_strategy_runs_an_explicit_transaction_inside_ExecuteAsync()
    {
        await using (var context = NewContext(_outbox, retrying: true))
        {
            var strategy = context.Database.CreateExecutionStrategy();
            await strategy.ExecuteAsync(async ct =>
            {
                await using var transaction = await context.Database.BeginTransactionAsync(ct);
                context.Orders.Add(new Order { Id = 1, Number = "A-1" });
                context.AddOutboxMessage(new OutboxMessage("order 1"));
                await context.SaveChangesAsync(ct);
                await transaction.CommitAsync(ct);
            }, Ct);
        }

        Assert.Equal(1, await _outbox.DispatchPendingAsync(Ct));
        Assert.Equal(1, await _database.CountOrdersAsync());
    }

    private static async Task<int> NextClaimAsync(StoreProxy proxy) =>
        await proxy.Claims.Reader.ReadAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct);

    private ShopContext NewContext(Outbox outbox, bool retrying = false)
    {
        var builder = new DbContextOptionsBuilder<ShopContext>()
            .UseNpgsql(_database.ConnectionString, npgsql =>
            {
                if (retrying)
                {
                    npgsql.EnableRetryOnFailure();
                }
            })
            .UseOutboxer(outbox);
        return new ShopContext(builder.Options);
    }
}
