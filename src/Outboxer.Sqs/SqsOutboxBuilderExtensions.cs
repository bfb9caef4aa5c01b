using Amazon.SQS;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Outboxer.Sqs;

namespace Outboxer;

/// <summary>Chooses Amazon SQS as the event stream of an outbox registered with <c>AddOutboxer</c>.</summary>
public static class SqsOutboxBuilderExtensions
{
    /// <summary>
    /// Publishes the outbox's messages with the <see cref="IAmazonSQS"/> client registered in the container (for example with
    /// AWSSDK.Extensions.NETCore.Setup's <c>AddAWSService&lt;IAmazonSQS&gt;()</c>), which the application owns.
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Changes to the publisher's settings.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseSqs(this IOutboxBuilder builder, Action<SqsPublisherOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.UsePublisher(sp =>
        {
            var options = new SqsPublisherOptions();
            configure?.Invoke(options);
            return new SqsPublisher(sp.GetRequiredService<IAmazonSQS>(), options, sp.GetService<ILogger<SqsPublisher>>());
        });
    }
}
