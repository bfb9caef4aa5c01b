using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Outboxer.RabbitMQ;
using RabbitMQ.Client;

namespace Outboxer;

/// <summary>Chooses RabbitMQ as the event stream of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class RabbitMQOutboxBuilderExtensions
{
    /// <summary>
    /// Publishes the outbox's messages to the RabbitMQ broker at <paramref name="uri"/>. The publisher connects on its first publish
    /// (so the application starts even while the broker is down) and the container closes the connection.
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="uri">The broker address, for example <c>amqp://user:password@localhost:5672/</c>.</param>
    /// <param name="configure">Changes to the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseRabbitMQ(this IOutboxBuilder builder, Uri uri, Action<RabbitMQPublisherOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(uri);
        return builder.UsePublisher(sp => new RabbitMQPublisher(uri, Configure(configure), sp.GetService<ILoggerFactory>()));
    }

    /// <summary>Publishes the outbox's messages over the <see cref="IConnection"/> registered in the container, which the application owns.</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Changes to the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseRabbitMQ(this IOutboxBuilder builder, Action<RabbitMQPublisherOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.UsePublisher(sp => new RabbitMQPublisher(sp.GetRequiredService<IConnection>(), Configure(configure), sp.GetService<ILogger<RabbitMQPublisher>>()));
    }

    private static RabbitMQPublisherOptions Configure(Action<RabbitMQPublisherOptions>? configure)
    {
        var options = new RabbitMQPublisherOptions();
        configure?.Invoke(options);
        return options;
    }
}
