using Google.Apis.Auth.OAuth2;

namespace Outboxer.PubSub;

/// <summary>
/// Settings of a <see cref="PubSubPublisher"/> that apply to every message. Per-message routing comes from the message's
/// <see cref="OutboxMessage.Options"/> (see <see cref="PubSubOptionKeys"/>). The values are copied and validated when the publisher is
/// created.
/// </summary>
public sealed class PubSubPublisherOptions
{
    /// <summary>The address of the global Pub/Sub service, the default <see cref="Endpoint"/>.</summary>
    public const string DefaultEndpoint = "https://pubsub.googleapis.com";

    /// <summary>
    /// Gets or sets the Google Cloud project of topics given by id only (a <see cref="PubSubOptionKeys.TopicName"/> or
    /// <see cref="DefaultTopicName"/> without <c>projects/.../topics/</c>).
    /// </summary>
    /// <value>The default value is <see langword="null"/>: every topic must then be a full name. When set, it must not be empty or contain a slash.</value>
    public string? ProjectId { get; set; }

    /// <summary>
    /// Gets or sets the <c>host:port</c> of a Pub/Sub emulator. When set, <see cref="PubSubPublisher.CreateAsync"/> connects to it over
    /// plain-text HTTP/2 without credentials, and <see cref="Endpoint"/> and <see cref="Credential"/> are not used.
    /// </summary>
    /// <value>
    /// The default value is <see langword="null"/>: the real service. The <c>PUBSUB_EMULATOR_HOST</c> environment variable is not read
    /// on purpose, so that a stray variable cannot send production messages to an emulator; to honour it, set
    /// <c>EmulatorHost = Environment.GetEnvironmentVariable("PUBSUB_EMULATOR_HOST")</c>.
    /// </value>
    public string? EmulatorHost { get; set; }

    /// <summary>Gets or sets the address of the Pub/Sub service, used when <see cref="EmulatorHost"/> is not set.</summary>
    /// <value>
    /// The default value is <see cref="DefaultEndpoint"/>. Must be an absolute <c>https</c> address; a locational endpoint such as
    /// <c>https://us-east1-pubsub.googleapis.com</c> keeps publishes with ordering keys in one region.
    /// </value>
    public Uri Endpoint { get; set; } = new(DefaultEndpoint);

    /// <summary>Gets or sets the topic of messages whose options have no <see cref="PubSubOptionKeys.TopicName"/>.</summary>
    /// <value>
    /// The default value is <see langword="null"/>: such messages fail with a non-transient <see cref="OutboxException"/>. When set, it is
    /// a full topic name or a topic id combined with <see cref="ProjectId"/>.
    /// </value>
    public string? DefaultTopicName { get; set; }

    /// <summary>
    /// Gets or sets the credential used against the real service. It is scoped to Pub/Sub when it needs a scope.
    /// </summary>
    /// <value>
    /// The default value is <see langword="null"/>: <see cref="PubSubPublisher.CreateAsync"/> loads the application default credentials
    /// (<c>GOOGLE_APPLICATION_CREDENTIALS</c>, the gcloud user credentials, or the metadata server on Google Cloud).
    /// </value>
    public GoogleCredential? Credential { get; set; }

    /// <summary>Checks every value and throws for the first one that is invalid.</summary>
    /// <exception cref="ArgumentException">A value is invalid; the message names the property and its value.</exception>
    public void Validate()
    {
        if (ProjectId is not null && !TopicNames.IsValidProjectId(ProjectId))
        {
            throw Invalid(nameof(ProjectId), $"must not be empty or contain a slash or white space, but it is '{ProjectId}'.");
        }

        if (EmulatorHost is not null && !TryParseEmulatorHost(EmulatorHost, out _))
        {
            throw Invalid(nameof(EmulatorHost), $"must be host:port (for example 127.0.0.1:8085), but it is '{EmulatorHost}'.");
        }

        if (Endpoint is null)
        {
            throw Invalid(nameof(Endpoint), "must not be null.");
        }

        if (!Endpoint.IsAbsoluteUri || Endpoint.Scheme != Uri.UriSchemeHttps)
        {
            throw Invalid(nameof(Endpoint), $"must be an absolute https address (credentials are never sent in plain text; use {nameof(EmulatorHost)} for an emulator), but it is '{Endpoint}'.");
        }

        if (DefaultTopicName is not null && !TopicNames.TryResolve(DefaultTopicName, ProjectId, out _, out var error))
        {
            throw Invalid(nameof(DefaultTopicName), $"is not a usable topic, '{DefaultTopicName}': {error}.");
        }
    }

    internal PubSubPublisherOptions Clone() => (PubSubPublisherOptions)MemberwiseClone();

    /// <summary>Parses <c>host:port</c> (or <c>http://host:port</c>) into the plain-text address of the emulator.</summary>
    internal static bool TryParseEmulatorHost(string value, out Uri address)
    {
        address = null!;
        var text = value.Trim();
        if (text.Length == 0 || text.Length != value.Length)
        {
            return false;
        }

        if (!text.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
        {
            text = "http://" + text;
        }

        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Host.Length == 0 || uri.AbsolutePath != "/" ||
            uri.Query.Length > 0 || uri.Fragment.Length > 0 || uri.UserInfo.Length > 0)
        {
            return false;
        }

        address = new Uri(uri.GetLeftPart(UriPartial.Authority));
        return true;
    }

    private static ArgumentException Invalid(string property, string problem)
    {
        var name = $"{nameof(PubSubPublisherOptions)}.{property}";
        return new ArgumentException($"{name} {problem}", name);
    }
}
