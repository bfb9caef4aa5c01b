using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Outboxer.PubSub;

namespace Outboxer;

/// <summary>Chooses Google Cloud Pub/Sub as the event stream of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class PubSubOutboxBuilderExtensions
{
    /// <summary>
    /// Publishes the outbox's messages to Pub/Sub with the given settings. The publisher is created when the outbox is first resolved:
    /// at once with <see cref="PubSubPublisherOptions.EmulatorHost"/> or <see cref="PubSubPublisherOptions.Credential"/> set, otherwise
    /// after loading the application default credentials (once, from the environment, a file or the metadata server).
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Sets the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IOutboxBuilder UsePubSub(this IOutboxBuilder builder, Action<PubSubPublisherOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        return builder.UsePublisher(sp =>
        {
            var options = new PubSubPublisherOptions();
            configure(options);

            // Service factories are synchronous; the only asynchronous step is loading default credentials, once, at start-up.
            return PubSubPublisher.CreateAsync(options, sp.GetService<ILoggerFactory>()).GetAwaiter().GetResult();
        });
    }
}
