using System.Net;
using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using Google.Apis.Auth.OAuth2;
using Google.Cloud.PubSub.V1;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Outboxer.Providers;

namespace Outboxer.PubSub;

/// <summary>
/// Publishes outbox messages to Google Cloud Pub/Sub over gRPC and completes only when Pub/Sub confirmed them. The counterpart of the Go
/// outboxer's <c>pubsub</c> event stream, reading the same option keys (<see cref="PubSubOptionKeys"/>).
/// </summary>
/// <remarks>
/// <para>
/// <see cref="PublishBatchAsync"/> groups a batch by topic and publishes each topic's messages in batch order, in requests of at most
/// 1,000 messages and 10,000,000 bytes, sent one after the other; topics are published concurrently. Messages with the same ordering
/// key therefore reach Pub/Sub in batch order. When a request fails transiently, the later messages of the batch with one of its
/// ordering keys are not sent either (they fail transiently too), so that a retried message cannot be overtaken within the batch.
/// </para>
/// <para>
/// Each message carries its payload as data, its <see cref="OutboxMessage.Headers"/> as attributes, and its
/// <see cref="OutboxMessage.MessageId"/> as the attribute <c>message-id</c> (Pub/Sub assigns its own <c>message_id</c>). Messages Pub/Sub
/// would refuse (over 10,000,000 bytes, attribute limits, a malformed topic) fail alone, before anything is sent, with a non-transient
/// <see cref="OutboxException"/>. Safe for concurrent use.
/// </para>
/// </remarks>
public sealed class PubSubPublisher : IOutboxBatchPublisher, IAsyncDisposable
{
    /// <summary>Pub/Sub's limit of messages in one publish request.</summary>
    internal const int MaxMessagesPerRequest = 1000;

    /// <summary>Pub/Sub's limit of one publish request, in bytes (10 MB); a single message must fit in a request of its own.</summary>
    internal const int MaxRequestBytes = 10_000_000;

    /// <summary>Pub/Sub's limit of an ordering key, in UTF-8 bytes.</summary>
    internal const int MaxOrderingKeyBytes = 1024;

    private readonly Publisher.PublisherClient _client;
    private readonly GrpcChannel? _ownedChannel;
    private readonly PubSubPublisherOptions _options;
    private readonly string? _defaultTopic;
    private readonly ILogger _logger;
    private int _disposed;

    /// <summary>
    /// Initializes a publisher over an existing channel to Pub/Sub (or an emulator), which the caller keeps owning and disposes after the
    /// publisher. Of <paramref name="options"/>, only <see cref="PubSubPublisherOptions.ProjectId"/> and
    /// <see cref="PubSubPublisherOptions.DefaultTopicName"/> are used: the channel carries the address and credentials.
    /// </summary>
    /// <param name="channel">The channel. Create it with <see cref="GrpcChannelOptions.ThrowOperationCanceledOnCancellation"/> for prompt cancellation.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="logger">The logger; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="channel"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public PubSubPublisher(GrpcChannel channel, PubSubPublisherOptions? options = null, ILogger<PubSubPublisher>? logger = null)
        : this((channel ?? throw new ArgumentNullException(nameof(channel))).CreateCallInvoker(), ValidatedCopy(options), logger, ownedChannel: null)
    {
        ServerEndPoint = EndPointOf(channel);
    }

    /// <summary>
    /// Initializes a publisher over a call invoker (for example one with interceptors), which the caller keeps owning. Of
    /// <paramref name="options"/>, only <see cref="PubSubPublisherOptions.ProjectId"/> and <see cref="PubSubPublisherOptions.DefaultTopicName"/>
    /// are used.
    /// </summary>
    /// <param name="callInvoker">The call invoker for the <c>google.pubsub.v1.Publisher</c> service.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="logger">The logger; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="callInvoker"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public PubSubPublisher(CallInvoker callInvoker, PubSubPublisherOptions? options = null, ILogger<PubSubPublisher>? logger = null)
        : this(callInvoker ?? throw new ArgumentNullException(nameof(callInvoker)), ValidatedCopy(options), logger, ownedChannel: null)
    {
    }

    private PubSubPublisher(CallInvoker callInvoker, PubSubPublisherOptions options, ILogger? logger, GrpcChannel? ownedChannel)
    {
        _client = new Publisher.PublisherClient(callInvoker);
        _options = options;
        _ownedChannel = ownedChannel;
        ServerEndPoint = EndPointOf(ownedChannel);
        _logger = logger ?? NullLogger.Instance;
        if (options.DefaultTopicName is { } defaultTopic)
        {
            // Validate() checked that it resolves.
            _ = TopicNames.TryResolve(defaultTopic, options.ProjectId, out _defaultTopic, out _);
        }
    }

    /// <summary>
    /// Creates a publisher with a channel of its own, which it closes when disposed: to <see cref="PubSubPublisherOptions.EmulatorHost"/>
    /// over plain-text HTTP/2 without credentials when that is set, otherwise to <see cref="PubSubPublisherOptions.Endpoint"/> over TLS
    /// with <see cref="PubSubPublisherOptions.Credential"/> or the application default credentials. The channel connects on the first
    /// publish, so an unreachable service shows as a transient failure of that publish.
    /// </summary>
    /// <param name="options">The settings. They are copied and validated here.</param>
    /// <param name="loggerFactory">The logger factory, also used for the gRPC channel's logs; <see langword="null"/> for no logging.</param>
    /// <param name="cancellationToken">A token to cancel loading the credentials.</param>
    /// <returns>The publisher.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    /// <exception cref="OutboxException">
    /// No application default credentials are configured (<see cref="OutboxException.IsTransient"/> is <see langword="false"/>), or loading
    /// them failed on I/O (<see langword="true"/>).
    /// </exception>
    public static async Task<PubSubPublisher> CreateAsync(PubSubPublisherOptions options, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var validated = ValidatedCopy(options);
        loggerFactory ??= NullLoggerFactory.Instance;
        var logger = loggerFactory.CreateLogger<PubSubPublisher>();
        var channelOptions = new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                EnableMultipleHttp2Connections = true,
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                KeepAlivePingDelay = TimeSpan.FromSeconds(60),
                KeepAlivePingTimeout = TimeSpan.FromSeconds(30),
                ConnectTimeout = TimeSpan.FromSeconds(30),
            },
            DisposeHttpClient = true,
            LoggerFactory = loggerFactory,
            ThrowOperationCanceledOnCancellation = true,
        };

        Uri address;
        string authentication;
        if (validated.EmulatorHost is { } emulatorHost)
        {
            _ = PubSubPublisherOptions.TryParseEmulatorHost(emulatorHost, out address);
            channelOptions.Credentials = ChannelCredentials.Insecure;
            authentication = "emulator, plain text, no credentials";
        }
        else
        {
            address = validated.Endpoint;
            var credential = validated.Credential ?? await LoadDefaultCredentialAsync(cancellationToken).ConfigureAwait(false);
            channelOptions.Credentials = ChannelCredentials.Create(ChannelCredentials.SecureSsl, GoogleCallCredentials.Create(credential));
            authentication = validated.Credential is null ? "TLS, application default credentials" : "TLS, configured credential";
        }

        GrpcChannel channel;
        try
        {
            channel = GrpcChannel.ForAddress(address, channelOptions);
        }
        catch
        {
            channelOptions.HttpHandler.Dispose();
            throw;
        }

        Log.Created(logger, address.GetLeftPart(UriPartial.Authority), authentication);
        return new PubSubPublisher(channel.CreateCallInvoker(), validated, logger, channel);
    }

    /// <summary>
    /// Publishes <paramref name="message"/> to the topic its <see cref="OutboxMessage.Options"/> name and completes when Pub/Sub confirmed it.
    /// </summary>
    /// <param name="message">The message to publish.</param>
    /// <param name="cancellationToken">A token to stop waiting; Pub/Sub may still receive the message.</param>
    /// <returns>A task that completes when Pub/Sub confirmed the message.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OutboxException">
    /// The message was not confirmed. <see cref="OutboxException.IsTransient"/> is <see langword="false"/> when retrying cannot help (an
    /// option or header Pub/Sub cannot take, a message over the size limit, a topic that does not exist, a request Pub/Sub refused as
    /// invalid or not permitted) and <see langword="true"/> otherwise (the service unreachable, overloaded, or failing internally).
    /// <see cref="OutboxException.IsOutcomeUnknown"/> is <see langword="true"/> when the request was (or may have been) sent and no answer
    /// came (the connection lost, the deadline passed, <c>UNAVAILABLE</c>, <c>INTERNAL</c>, <c>UNKNOWN</c>): Pub/Sub may have the message.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        var results = await PublishBatchAsync([message], cancellationToken).ConfigureAwait(false);
        if (results[0] is { } failure)
        {
            ExceptionDispatchInfo.Throw(failure);
        }
    }

    /// <summary>Gets the <c>messaging.system</c> value of this publisher's telemetry: <c>gcp_pubsub</c> (the value OpenTelemetry registers for Google Cloud Pub/Sub).</summary>
    public string MessagingSystem => "gcp_pubsub";

    /// <summary>
    /// Gets the host and port of the channel's address (the emulator's, or the service endpoint), for the <c>server.address</c> and
    /// <c>server.port</c> attributes of the outbox's telemetry; <see langword="null"/> for a publisher over a call invoker.
    /// </summary>
    public DnsEndPoint? ServerEndPoint { get; private init; }

    /// <summary>
    /// Gets the topic <paramref name="message"/> goes to, as a full name <c>projects/{project}/topics/{topic}</c>: its
    /// <see cref="PubSubOptionKeys.TopicName"/> option (a topic id is completed with <see cref="PubSubPublisherOptions.ProjectId"/>), or
    /// <see cref="PubSubPublisherOptions.DefaultTopicName"/> when it has none. Sends nothing.
    /// </summary>
    /// <param name="message">The message.</param>
    /// <returns>
    /// The full topic name; <see langword="null"/> when the message names no topic and there is no default, or when the option is of a
    /// wrong type or not a usable topic (publishing the message fails then).
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    public string? GetDestinationName(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        try
        {
            return ResolveTopic(message.Options.GetString(PubSubOptionKeys.TopicName), out _);
        }
        catch (OutboxException)
        {
            // An option of a wrong type: the message names no usable topic.
            return null;
        }
    }

    /// <summary>
    /// Publishes <paramref name="messages"/> grouped by topic, in batch order within each topic, in as few requests as Pub/Sub's limits
    /// allow, and completes when Pub/Sub answered for every message.
    /// </summary>
    /// <param name="messages">The batch, oldest first.</param>
    /// <param name="cancellationToken">A token to stop waiting; Pub/Sub may still receive some messages.</param>
    /// <returns>
    /// One entry per message, at the same index: <see langword="null"/> when Pub/Sub confirmed it, otherwise the
    /// <see cref="OutboxException"/> it failed with (see <see cref="PublishAsync"/> for what is transient).
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> is or contains <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<IReadOnlyList<Exception?>> PublishBatchAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i] is null)
            {
                throw new ArgumentNullException(nameof(messages), $"The message at index {i} is null.");
            }
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var results = new Exception?[messages.Count];
        var prepared = new List<Pending>(messages.Count);
        for (var i = 0; i < messages.Count; i++)
        {
            try
            {
                prepared.Add(Prepare(i, messages[i]));
            }
            catch (OutboxException ex)
            {
                Log.MessageRejected(_logger, ex, messages[i].MessageId);
                results[i] = ex;
            }
        }

        await OrderedBatchSplitter.ForEachDestinationAsync(
            prepared,
            p => p.Topic,
            (topic, pending) => PublishToTopicAsync(topic, pending, results, cancellationToken)).ConfigureAwait(false);
        return results;
    }

    /// <summary>Closes the channel when the publisher created it (<see cref="CreateAsync"/>). Calling it again does nothing.</summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _ownedChannel?.Dispose();
        }

        return ValueTask.CompletedTask;
    }

    private static PubSubPublisherOptions ValidatedCopy(PubSubPublisherOptions? options)
    {
        var copy = (options ?? new PubSubPublisherOptions()).Clone();
        copy.Validate();
        return copy;
    }

    private static async Task<GoogleCredential> LoadDefaultCredentialAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await GoogleCredential.GetApplicationDefaultAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (InvalidOperationException ex)
        {
            throw new OutboxException(
                $"Could not load Google application default credentials: {ex.Message} Set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, " +
                $"or set {nameof(PubSubPublisherOptions)}.{nameof(PubSubPublisherOptions.Credential)}; for the emulator, set {nameof(PubSubPublisherOptions)}.{nameof(PubSubPublisherOptions.EmulatorHost)}.",
                isTransient: false,
                ex);
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException)
        {
            throw new OutboxException($"Could not load Google application default credentials: {ex.Message}", isTransient: true, ex);
        }
    }

    /// <summary>Reads the topic and ordering key, builds the Pub/Sub message and checks it against Pub/Sub's limits.</summary>
    private Pending Prepare(int index, OutboxMessage message)
    {
        var topic = ResolveTopic(message);
        var orderingKey = message.Options.GetString(PubSubOptionKeys.OrderingKey) ?? message.OrderingKey ?? string.Empty;
        var orderingKeyBytes = System.Text.Encoding.UTF8.GetByteCount(orderingKey);
        if (orderingKeyBytes > MaxOrderingKeyBytes)
        {
            throw new OutboxException(
                $"The value of '{PubSubOptionKeys.OrderingKey}' is {orderingKeyBytes} bytes in UTF-8; Pub/Sub allows at most {MaxOrderingKeyBytes}.",
                isTransient: false);
        }

        var pubsubMessage = new PubsubMessage { Data = ByteString.CopyFrom(message.Payload), OrderingKey = orderingKey };
        PubSubAttributes.Add(pubsubMessage.Attributes, message);
        if (pubsubMessage.Data.IsEmpty && pubsubMessage.Attributes.Count == 0)
        {
            throw new OutboxException("The message has neither a payload nor headers (nor a message id); Pub/Sub refuses empty messages.", isTransient: false);
        }

        var size = CodedOutputStream.ComputeTagSize(PublishRequest.MessagesFieldNumber) + CodedOutputStream.ComputeMessageSize(pubsubMessage);
        if (TopicFieldSize(topic) + size > MaxRequestBytes)
        {
            throw new OutboxException(
                $"Message {message.MessageId} takes {size:N0} bytes with its attributes and ordering key; a Pub/Sub publish request may take at most {MaxRequestBytes:N0} bytes. " +
                "Store large payloads elsewhere (for example in Cloud Storage) and publish a reference.",
                isTransient: false);
        }

        return new Pending(index, message.MessageId, topic, pubsubMessage, size);
    }

    private string ResolveTopic(OutboxMessage message) =>
        ResolveTopic(message.Options.GetString(PubSubOptionKeys.TopicName), out var error) ?? throw new OutboxException(error!, isTransient: false);

    /// <summary>
    /// Resolves a <see cref="PubSubOptionKeys.TopicName"/> option's value, or the default topic when it is empty, to a full topic name;
    /// returns <see langword="null"/> with the reason when there is none or it is not a usable topic.
    /// </summary>
    private string? ResolveTopic(string? value, out string? error)
    {
        error = null;
        if (string.IsNullOrEmpty(value))
        {
            if (_defaultTopic is null)
            {
                error = $"The message has no '{PubSubOptionKeys.TopicName}' option and no {nameof(PubSubPublisherOptions)}.{nameof(PubSubPublisherOptions.DefaultTopicName)} is set: it has no topic to go to.";
            }

            return _defaultTopic;
        }

        if (!TopicNames.TryResolve(value, _options.ProjectId, out var topic, out var reason))
        {
            error = $"The value of '{PubSubOptionKeys.TopicName}', '{value}', is not a usable Pub/Sub topic: {reason}.";
        }

        return topic;
    }

    private static int TopicFieldSize(string topic) =>
        CodedOutputStream.ComputeTagSize(PublishRequest.TopicFieldNumber) + CodedOutputStream.ComputeStringSize(topic);

    /// <summary>Publishes one topic's messages in order, in requests within Pub/Sub's limits, one request after the other.</summary>
    private async Task PublishToTopicAsync(string topic, IReadOnlyList<Pending> messages, Exception?[] results, CancellationToken cancellationToken)
    {
        var splitter = new OrderedBatchSplitter(MaxMessagesPerRequest, MaxRequestBytes, requestOverheadBytes: TopicFieldSize(topic));
        foreach (var request in splitter.Split(messages, p => p.Size))
        {
            await SendAsync(topic, request, splitter, results, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Sends one request, first failing the messages whose ordering key already failed transiently in this batch.</summary>
    private async Task SendAsync(string topic, IReadOnlyList<Pending> request, OrderedBatchSplitter splitter, Exception?[] results, CancellationToken cancellationToken)
    {
        var toSend = splitter.FilterHeldBack(request, p => p.Message.OrderingKey, pending => results[pending.Index] = new OutboxException(
            $"Message {pending.MessageId} was not published to Pub/Sub topic '{topic}': an earlier message of the batch with ordering key '{pending.Message.OrderingKey}' failed, and publishing this one now would put it ahead. It will be retried.",
            isTransient: true));
        if (toSend.Count < request.Count)
        {
            Log.HeldBack(_logger, request.Count - toSend.Count, topic);
            if (toSend.Count == 0)
            {
                return;
            }
        }

        await SendRequestAsync(topic, toSend, splitter, results, cancellationToken).ConfigureAwait(false);
    }

    private async Task SendRequestAsync(string topic, IReadOnlyList<Pending> request, OrderedBatchSplitter splitter, Exception?[] results, CancellationToken cancellationToken)
    {
        var publishRequest = new PublishRequest { Topic = topic };
        foreach (var pending in request)
        {
            publishRequest.Messages.Add(pending.Message);
        }

        OutboxException failure;
        try
        {
            // The routing header Google's client libraries send, so the request reaches the topic's region directly.
            var headers = new Metadata { { "x-goog-request-params", $"topic={Uri.EscapeDataString(topic)}" } };
            var response = await _client.PublishAsync(publishRequest, headers, cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false);
            if (response.MessageIds.Count == request.Count)
            {
                foreach (var pending in request)
                {
                    results[pending.Index] = null;
                }

                Log.Published(_logger, request.Count, topic);
                return;
            }

            failure = new OutboxException(
                $"Pub/Sub answered a request of {request.Count} messages to topic '{topic}' with {response.MessageIds.Count} message ids: the outcome of each is unknown (Pub/Sub may have them); the messages will be published again.",
                isTransient: true)
            {
                IsOutcomeUnknown = true,
            };
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.InvalidArgument && request.Count > 1)
        {
            // One invalid message fails the whole request: publish the halves separately (in order) until it stands alone.
            Log.RequestSplit(_logger, request.Count, topic, ex.Status.Detail);
            var half = request.Count / 2;
            await SendAsync(topic, [.. request.Take(half)], splitter, results, cancellationToken).ConfigureAwait(false);
            await SendAsync(topic, [.. request.Skip(half)], splitter, results, cancellationToken).ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && cancellationToken.IsCancellationRequested)
        {
            // A caller's channel without ThrowOperationCanceledOnCancellation reports cancellation as a status.
            throw new OperationCanceledException(ex.Message, ex, cancellationToken);
        }
#pragma warning disable CA1031 // Any failure of the request fails its messages (and only them); the others of the batch go on.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            failure = Translate(ex, topic, request.Count);
        }

        Log.PublishFailed(_logger, failure, request.Count, topic);
        foreach (var pending in request)
        {
            results[pending.Index] = failure;
            if (failure.IsTransient)
            {
                splitter.MarkFailed(pending.Message.OrderingKey);
            }
        }
    }

    /// <summary>
    /// Translates a failed publish request. A status Pub/Sub answered with is a known failure; a request that was (or may have been)
    /// sent without an answer (the connection lost, the deadline passed, an unreadable answer) has an unknown outcome, unless the
    /// connection could not be opened at all.
    /// </summary>
    private static OutboxException Translate(Exception ex, string topic, int count)
    {
        var what = count == 1 ? "the message" : $"{count} messages";
        var noAnswer = ex is not RpcException || ((RpcException)ex).StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Cancelled or StatusCode.Unknown or StatusCode.Internal;
        if (noAnswer && !NeverConnected(ex))
        {
            var reason = ex is RpcException status ? $"{status.StatusCode} ({status.Status.Detail})" : ex.Message;
            return new OutboxException(
                $"The outcome of publishing {what} to Pub/Sub topic '{topic}' is unknown: the request was (or may have been) sent and no answer came: {reason}. Pub/Sub may have them; it will be retried.",
                isTransient: true,
                ex)
            {
                IsOutcomeUnknown = true,
            };
        }

        if (ex is not RpcException rpc)
        {
            return new OutboxException($"Publishing {what} to Pub/Sub topic '{topic}' failed: {ex.Message}", isTransient: true, ex);
        }

        var detail = rpc.Status.Detail;
        return rpc.StatusCode switch
        {
            StatusCode.NotFound => new OutboxException(
                $"The Pub/Sub topic '{topic}' does not exist ({detail}). Create it, or fix the '{PubSubOptionKeys.TopicName}' option.", isTransient: false, ex),
            StatusCode.InvalidArgument => new OutboxException(
                $"Pub/Sub refused {what} to topic '{topic}' as invalid: {detail}", isTransient: false, ex),
            StatusCode.PermissionDenied => new OutboxException(
                $"Pub/Sub refused {what} to topic '{topic}': permission denied ({detail}). The credentials need the pubsub.topics.publish permission (role Pub/Sub Publisher).", isTransient: false, ex),
            StatusCode.FailedPrecondition or StatusCode.Unimplemented or StatusCode.OutOfRange => new OutboxException(
                $"Pub/Sub refused {what} to topic '{topic}': {rpc.StatusCode} ({detail}).", isTransient: false, ex),
            _ => new OutboxException(
                $"Publishing {what} to Pub/Sub topic '{topic}' failed: {rpc.StatusCode} ({detail}); it will be retried.", isTransient: true, ex),
        };
    }

    /// <summary>Tells whether <paramref name="ex"/> (or the exception behind its gRPC status) says the connection could not be opened, so nothing was sent.</summary>
    private static bool NeverConnected(Exception ex)
    {
        for (Exception? current = ex; current is not null; current = current is RpcException rpc ? rpc.Status.DebugException : current.InnerException)
        {
            // HttpClient says so with its error kind; gRPC's subchannels ("Error connecting to subchannel.") with the socket's.
            if (current is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError }
                or SocketException { SocketErrorCode: SocketError.ConnectionRefused or SocketError.HostNotFound or SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.TryAgain or SocketError.AddressNotAvailable })
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>A message ready to publish: its index in the batch, its topic, its Pub/Sub form and its size in a publish request.</summary>
    private readonly record struct Pending(int Index, Guid MessageId, string Topic, PubsubMessage Message, int Size);

    private static DnsEndPoint? EndPointOf(GrpcChannel? channel)
    {
        if (channel is null)
        {
            return null;
        }

        var target = channel.Target.Contains("://", StringComparison.Ordinal) ? channel.Target : "https://" + channel.Target;
        return Uri.TryCreate(target, UriKind.Absolute, out var url) && url.Host.Length > 0 ? new DnsEndPoint(url.Host, url.Port) : null;
    }
}
