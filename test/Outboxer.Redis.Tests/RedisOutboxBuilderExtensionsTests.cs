using Microsoft.Extensions.DependencyInjection;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using StackExchange.Redis;
using Xunit;

namespace Outboxer.Redis.Tests;

/// <summary>An outbox registered with <c>UseRedis</c> dispatches into a real Redis, over a registered connection or one of its own.</summary>
public sealed class RedisOutboxBuilderExtensionsTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_outbox_registered_with_UseRedis_appends_its_messages_once_each(bool registeredConnection)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await RedisServer.ConnectAsync();
        var db = connection.GetDatabase();
        var stream = $"outboxer-test:di:{Guid.NewGuid():N}";
        var services = new ServiceCollection();
        var builder = services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore());
        if (registeredConnection)
        {
            services.AddSingleton<IConnectionMultiplexer>(connection);
            builder.UseRedis(o => o.DefaultStream = stream);
        }
        else
        {
            builder.UseRedis(RedisServer.Url, o => o.DefaultStream = stream);
        }

        var ids = new List<Guid>();
        await using (var provider = services.BuildServiceProvider())
        {
            var outbox = provider.GetRequiredService<Outbox>();
            for (var i = 0; i < 5; i++)
            {
                var message = new OutboxMessage($"through UseRedis {i}");
                await outbox.SendAsync(message, ct);
                ids.Add(message.MessageId);
            }

            Assert.Equal(5, await outbox.DispatchPendingAsync(ct));
        }

        Assert.True(connection.IsConnected, "The registered connection belongs to the application and stays open.");
        var entries = await db.StreamRangeAsync(stream);
        Assert.Equal(ids.Select(id => id.ToString()), entries.Select(e => e["message-id"].ToString()));
        await db.KeyDeleteAsync(stream);
        foreach (var id in ids)
        {
            await db.KeyDeleteAsync($"outboxer:dedup:{{{stream}}}:{id}");
        }
    }
}
