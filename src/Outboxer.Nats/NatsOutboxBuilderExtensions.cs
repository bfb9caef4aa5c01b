using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using Outboxer.Nats;

namespace Outboxer;

/// <summary>Chooses NATS JetStream as the event stream of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class NatsOutboxBuilderExtensions
{
    /// <summary>
    /// Publishes the outbox's messages to NATS JetStream at <paramref name="url"/>. The publisher connects on its first publish (so the
    /// application starts even while NATS is down) and the container closes the connection.
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="url">The server address, for example <c>nats://localhost:4222</c>, or several separated by commas.</param>
    /// <param name="configure">Changes to the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="url"/> is empty or whitespace.</exception>
    public static IOutboxBuilder UseNats(this IOutboxBuilder builder, string url, Action<NatsPublisherOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(url);
        return builder.UsePublisher(sp => NatsPublisher.Create(url, Configure(configure), sp.GetService<ILoggerFactory>()));
    }

    /// <summary>Publishes the outbox's messages over the <see cref="INatsConnection"/> registered in the container, which the application owns.</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseNats(this IOutboxBuilder builder) => UseNats(builder, static _ => { });

    /// <summary>
    /// Publishes the outbox's messages over the <see cref="INatsConnection"/> registered in the container, which the application owns,
    /// with changed settings.
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Changes to the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseNats(this IOutboxBuilder builder, Action<NatsPublisherOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        return builder.UsePublisher(sp => new NatsPublisher(sp.GetRequiredService<INatsConnection>(), Configure(configure), sp.GetService<ILogger<NatsPublisher>>()));
    }

    private static NatsPublisherOptions Configure(Action<NatsPublisherOptions>? configure)
    {
        var options = new NatsPublisherOptions();
        configure?.Invoke(options);
        return options;
    }
}
