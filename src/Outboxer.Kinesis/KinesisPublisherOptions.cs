using Amazon.Runtime;
using Outboxer.Kinesis.Internal;

namespace Outboxer.Kinesis;

/// <summary>
/// Settings of a <see cref="KinesisPublisher"/> that apply to every message. Per-message routing comes from the message's
/// <see cref="OutboxMessage.Options"/> (see <see cref="KinesisOptionKeys"/>). The values are copied and validated when the publisher
/// is created.
/// </summary>
public sealed class KinesisPublisherOptions
{
    /// <summary>
    /// Gets or sets the address of the Kinesis endpoint, for example <c>http://127.0.0.1:4567</c> for an emulator or a VPC endpoint.
    /// </summary>
    /// <value>
    /// The default value is <see langword="null"/>: the regional endpoint <c>https://kinesis.&lt;region&gt;.amazonaws.com</c>
    /// (<c>amazonaws.com.cn</c> in the <c>cn-</c> regions) is used. When set, it must be an absolute <c>http</c> or <c>https</c> address
    /// without a path, query or fragment.
    /// </value>
    public Uri? ServiceUrl { get; set; }

    /// <summary>Gets or sets the AWS region, for example <c>eu-west-1</c>. It names the default endpoint and scopes the signature.</summary>
    /// <value>
    /// The default value is <see langword="null"/>: the region is taken from <see cref="ServiceUrl"/> when it is a regional AWS address,
    /// else from <c>AWS_REGION</c>, <c>AWS_DEFAULT_REGION</c> or the shared config profile (through AWSSDK.Core); with a
    /// <see cref="ServiceUrl"/> and none of those, <c>us-east-1</c>. Without a <see cref="ServiceUrl"/> a region must be found, or
    /// creating the publisher fails.
    /// </value>
    public string? Region { get; set; }

    /// <summary>Gets or sets the stream of messages whose options have no <see cref="KinesisOptionKeys.StreamName"/>.</summary>
    /// <value>
    /// The default value is <see langword="null"/>: such messages fail without retry. When set, 1 to 128 letters, digits, <c>_</c>,
    /// <c>.</c> or <c>-</c>.
    /// </value>
    public string? DefaultStreamName { get; set; }

    /// <summary>Gets or sets the AWS credentials that sign the requests.</summary>
    /// <value>
    /// The default value is <see langword="null"/>: AWSSDK.Core's default credential chain (environment variables, the shared
    /// credentials and config files and their profiles, web identity, SSO, the ECS container or EC2 instance role), resolved at the
    /// first request and refreshed as the SDK refreshes it.
    /// </value>
    public AWSCredentials? Credentials { get; set; }

    /// <summary>
    /// Gets or sets a value indicating whether each record's data is a JSON envelope that carries the message id, the creation time,
    /// the <see cref="OutboxMessage.Headers"/> and the payload (base64), instead of the payload alone.
    /// </summary>
    /// <value>
    /// The default value is <see langword="false"/>: the record's data is the payload, unchanged, as in the Go outboxer. Kinesis records
    /// have no attributes, so headers are then not sent (the publisher logs a warning the first time it drops some), and the message id
    /// reaches consumers only as the default partition key. See the package README for the envelope's format.
    /// </value>
    public bool UseEnvelope { get; set; }

    /// <summary>Gets or sets the clock that dates the signatures (<c>X-Amz-Date</c>).</summary>
    /// <value>The default value is <see cref="TimeProvider.System"/>. Must not be <see langword="null"/>.</value>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Checks every value and throws for the first one that is invalid.</summary>
    /// <exception cref="ArgumentException">A value is invalid; the message names the property and its value.</exception>
    public void Validate()
    {
        if (ServiceUrl is { } url)
        {
            const string name = $"{nameof(KinesisPublisherOptions)}.{nameof(ServiceUrl)}";
            if (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
            {
                throw new ArgumentException($"{name} must be an absolute http or https address, but it is '{url}'.", name);
            }

            if (url.AbsolutePath != "/" || url.Query.Length > 0 || url.Fragment.Length > 0)
            {
                throw new ArgumentException($"{name} must have no path, query or fragment (Kinesis requests are posted to '/'), but it is '{url}'.", name);
            }
        }

        if (Region is not null && !KinesisNames.IsRegion(Region))
        {
            const string name = $"{nameof(KinesisPublisherOptions)}.{nameof(Region)}";
            throw new ArgumentException($"{name} must be an AWS region name such as 'eu-west-1' (lower-case letters, digits and dashes), but it is '{Region}'.", name);
        }

        if (DefaultStreamName is not null && !KinesisNames.IsStreamName(DefaultStreamName))
        {
            const string name = $"{nameof(KinesisPublisherOptions)}.{nameof(DefaultStreamName)}";
            throw new ArgumentException($"{name} must be 1 to 128 letters, digits, '_', '.' or '-', but it is '{DefaultStreamName}'.", name);
        }

        if (TimeProvider is null)
        {
            const string name = $"{nameof(KinesisPublisherOptions)}.{nameof(TimeProvider)}";
            throw new ArgumentException($"{name} must not be null.", name);
        }
    }

    internal KinesisPublisherOptions Clone() => (KinesisPublisherOptions)MemberwiseClone();
}
