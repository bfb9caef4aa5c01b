using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.EntityFrameworkCore.Tests;

/// <summary>AddOutboxer().UseEntityFrameworkCore&lt;TContext&gt;() with AddDbContext and AddDbContextPool.</summary>
public sealed class DependencyInjectionTests : IAsyncLifetime
{
    private readonly SqliteTestDatabase _database = new();
    private readonly RecordingPublisher _publisher = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => await _database.InitializeAsync();

    public async ValueTask DisposeAsync() => await _database.DisposeAsync();

    [Fact]
    public async Task A_context_registered_with_AddDbContext_writes_to_the_registered_outbox()
    {
        using var host = BuildHost(s => s.AddDbContext<ShopContext>(o => o.UseSqlite(_database.ConnectionString)));

        await using (var scope = host.Services.CreateAsyncScope())
        {
            var context = scope.ServiceProvider.GetRequiredService<ShopContext>();
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(new OutboxMessage("order 1"));
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(1, await host.Services.GetRequiredService<Outbox>().DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task A_keyed_outbox_is_the_one_its_context_writes_to()
    {
        using var host = BuildHost(s => s.AddDbContext<ShopContext>(o => o.UseSqlite(_database.ConnectionString)), name: "shop");

        await using (var scope = host.Services.CreateAsyncScope())
        {
            var context = scope.ServiceProvider.GetRequiredService<ShopContext>();
            context.AddOutboxMessage(new OutboxMessage("order 1"));
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(1, await host.Services.GetRequiredKeyedService<Outbox>("shop").DispatchPendingAsync(Ct));
    }

    [Fact]
    public async Task A_pooled_context_starts_every_lease_without_the_previous_lease_s_messages()
    {
        using var host = BuildHost(s => s.AddDbContextPool<ShopContext>(o => o.UseSqlite(_database.ConnectionString), poolSize: 1));

        ShopContext first;
        await using (var scope = host.Services.CreateAsyncScope())
        {
            first = scope.ServiceProvider.GetRequiredService<ShopContext>();
            first.AddOutboxMessage(new OutboxMessage("abandoned"));
        }

        await using (var scope = host.Services.CreateAsyncScope())
        {
            var context = scope.ServiceProvider.GetRequiredService<ShopContext>();
            Assert.Same(first, context);
            Assert.Empty(context.GetPendingOutboxMessages());
            context.AddOutboxMessage(new OutboxMessage("order 1"));
            await context.SaveChangesAsync(Ct);
        }

        Assert.Equal(1, await host.Services.GetRequiredService<Outbox>().DispatchPendingAsync(Ct));
        Assert.Equal("order 1", System.Text.Encoding.UTF8.GetString(Assert.Single(_publisher.Published).Payload));
    }

    /// <summary>A host in the Development environment, which validates scopes and registrations when it is built.</summary>
    private IHost BuildHost(Action<IServiceCollection> addContext, string name = "")
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { EnvironmentName = Environments.Development });
        builder.Services.AddOutboxer(name)
            .UseEntityFrameworkCore<ShopContext>()
            .UseSqlite(_database.ConnectionString)
            .UsePublisher(_ => _publisher);
        addContext(builder.Services);
        return builder.Build();
    }
}
