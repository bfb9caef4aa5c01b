using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Outboxer.Redis;
using StackExchange.Redis;

namespace Outboxer;

/// <summary>Chooses Redis Streams as the event stream of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class RedisOutboxBuilderExtensions
{
    /// <summary>
    /// Appends the outbox's messages to Redis Streams on the server <paramref name="configuration"/> names. The publisher connects on its
    /// first publish (so the application starts even while Redis is down) and the container closes the connection.
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configuration">A StackExchange.Redis configuration string, for example <c>localhost:6379</c>.</param>
    /// <param name="configure">Changes to the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseRedis(this IOutboxBuilder builder, string configuration, Action<RedisPublisherOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configuration);
        return builder.UsePublisher(sp => new RedisPublisher(configuration, Configure(configure), sp.GetService<ILoggerFactory>()));
    }

    /// <summary>Appends the outbox's messages over the <see cref="IConnectionMultiplexer"/> registered in the container, which the application owns.</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseRedis(this IOutboxBuilder builder) => UseRedis(builder, static _ => { });

    /// <summary>Appends the outbox's messages over the <see cref="IConnectionMultiplexer"/> registered in the container, which the application owns.</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Changes to the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseRedis(this IOutboxBuilder builder, Action<RedisPublisherOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        return builder.UsePublisher(sp => new RedisPublisher(sp.GetRequiredService<IConnectionMultiplexer>(), Configure(configure), sp.GetService<ILogger<RedisPublisher>>()));
    }

    private static RedisPublisherOptions Configure(Action<RedisPublisherOptions>? configure)
    {
        var options = new RedisPublisherOptions();
        configure?.Invoke(options);
        return options;
    }
}
