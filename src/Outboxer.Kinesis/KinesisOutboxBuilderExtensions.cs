using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Outboxer.Kinesis;

namespace Outboxer;

/// <summary>Chooses Amazon Kinesis as the event stream of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class KinesisOutboxBuilderExtensions
{
    /// <summary>Publishes the outbox's messages to Kinesis with the given settings (region, stream, credentials from the AWS chain by default).</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Sets the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseKinesis(this IOutboxBuilder builder, Action<KinesisPublisherOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        return builder.UsePublisher(sp =>
        {
            var options = new KinesisPublisherOptions();
            configure(options);
            return new KinesisPublisher(options, null, sp.GetService<ILogger<KinesisPublisher>>());
        });
    }
}
