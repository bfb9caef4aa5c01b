using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Outboxer.Providers;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;

namespace Outboxer.RabbitMQ;

/// <summary>
/// Publishes outbox messages to RabbitMQ (AMQP 0-9-1) with publisher confirms: <see cref="PublishAsync"/> completes only when the
/// broker confirmed the message. The counterpart of the Go outboxer's <c>amqp</c> event stream, reading the same option keys
/// (<see cref="RabbitMQOptionKeys"/>).
/// </summary>
/// <remarks>
/// <para>
/// All publishes share one channel with confirmation tracking, so a batch published concurrently is pipelined. A channel that the
/// broker closed (for example after a publish to a missing exchange) is replaced on the next publish. Exchanges are declared on a
/// second channel, once each, so that a declaration the broker refuses does not fail the messages in flight. After a lost connection,
/// RabbitMQ.Client's automatic recovery reconnects; until then publishes fail with a transient <see cref="OutboxException"/> and the
/// outbox retries them. A message whose confirm was lost with its channel or connection fails with
/// <see cref="OutboxException.IsOutcomeUnknown"/> set: the broker may have it.
/// </para>
/// <para>
/// Messages are published as mandatory and persistent by default, with the message id, the creation time (as the AMQP timestamp),
/// a content type, and the message's <see cref="OutboxMessage.Headers"/> as AMQP headers. Safe for concurrent use.
/// </para>
/// </remarks>
public sealed class RabbitMQPublisher : IOutboxPublisher, IAsyncDisposable
{
    private const string ClientName = "Outboxer";
    private const string DefaultExchangeType = "topic";

    private static readonly CreateChannelOptions s_confirmingChannel = new(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true);

    private readonly Func<CancellationToken, Task<IConnection>>? _connect;
    private readonly bool _ownsConnection;
    private IConnection? _connection;
    private DnsEndPoint? _serverEndPoint;
    private readonly ILogger _logger;
    private readonly RabbitMQPublisherOptions _options;
    private readonly SemaphoreSlim _channelLock = new(1, 1);
    private readonly SemaphoreSlim _declareLock = new(1, 1);
    private readonly ConcurrentDictionary<ExchangeKey, bool> _declared = new();
    private readonly AsyncEventHandler<ShutdownEventArgs> _onPublishChannelShutdown;
    private IChannel? _publishChannel;
    private IChannel? _declareChannel;
    private int _disposed;

    /// <summary>Initializes a publisher over an open connection, which the caller keeps owning and disposes after the publisher.</summary>
    /// <param name="connection">
    /// An open connection. Create it with <see cref="ConnectionFactory.AutomaticRecoveryEnabled"/> (the default) so that publishing
    /// resumes after the broker restarts.
    /// </param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="logger">The logger; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public RabbitMQPublisher(IConnection connection, RabbitMQPublisherOptions? options = null, ILogger<RabbitMQPublisher>? logger = null)
        : this(connection ?? throw new ArgumentNullException(nameof(connection)), ValidatedCopy(options), logger, ownsConnection: false)
    {
    }

    /// <summary>
    /// Initializes a publisher that connects to <paramref name="uri"/> on its first publish (with automatic recovery, client name
    /// <c>Outboxer</c>), owns the connection and closes it when disposed. Until the broker answers, publishes fail with a transient
    /// <see cref="OutboxException"/> and the outbox retries them, so an application can start while the broker is down.
    /// </summary>
    /// <param name="uri">The broker address, for example <c>amqp://user:password@localhost:5672/</c>; <c>amqps://</c> uses TLS.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="loggerFactory">The logger factory; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="uri"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public RabbitMQPublisher(Uri uri, RabbitMQPublisherOptions? options = null, ILoggerFactory? loggerFactory = null)
        : this(null, ValidatedCopy(options), (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<RabbitMQPublisher>(), ownsConnection: true)
    {
        ArgumentNullException.ThrowIfNull(uri);
        _connect = ct => OpenConnectionAsync(uri, _logger, ct);
        if (uri.IsAbsoluteUri && uri.Host.Length > 0)
        {
            _serverEndPoint = new DnsEndPoint(uri.Host, uri.Port > 0 ? uri.Port : string.Equals(uri.Scheme, "amqps", StringComparison.OrdinalIgnoreCase) ? 5671 : 5672);
        }
    }

    private RabbitMQPublisher(IConnection? connection, RabbitMQPublisherOptions options, ILogger? logger, bool ownsConnection)
    {
        _connection = connection;
        _options = options;
        _ownsConnection = ownsConnection;
        _logger = logger ?? NullLogger.Instance;
        _onPublishChannelShutdown = OnPublishChannelShutdownAsync;
    }

    /// <summary>
    /// Connects to RabbitMQ with automatic recovery (client name <c>Outboxer</c>) and returns a publisher that owns the connection and
    /// closes it when disposed.
    /// </summary>
    /// <param name="uri">The broker address, for example <c>amqp://user:password@localhost:5672/</c>; <c>amqps://</c> uses TLS.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults.</param>
    /// <param name="loggerFactory">The logger factory; <see langword="null"/> for no logging.</param>
    /// <param name="cancellationToken">A token to cancel connecting.</param>
    /// <returns>The connected publisher.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="uri"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid, or <paramref name="uri"/> is not an AMQP address.</exception>
    /// <exception cref="OutboxException">
    /// The broker could not be reached (<see cref="OutboxException.IsTransient"/> is <see langword="true"/>) or refused the credentials
    /// (<see langword="false"/>).
    /// </exception>
    public static async Task<RabbitMQPublisher> ConnectAsync(Uri uri, RabbitMQPublisherOptions? options = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(uri);
        var validated = ValidatedCopy(options);
        var logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<RabbitMQPublisher>();
        var connection = await OpenConnectionAsync(uri, logger, cancellationToken).ConfigureAwait(false);
        return new RabbitMQPublisher(connection, validated, logger, ownsConnection: true);
    }

    private static async Task<IConnection> OpenConnectionAsync(Uri uri, ILogger logger, CancellationToken cancellationToken)
    {
        var factory = new ConnectionFactory
        {
            Uri = uri,
            AutomaticRecoveryEnabled = true,
            TopologyRecoveryEnabled = true,

            // RabbitMQ.Client waits 5 s between reconnection attempts by default; an outbox wants its messages flowing again sooner.
            NetworkRecoveryInterval = TimeSpan.FromSeconds(1),
            ClientProvidedName = ClientName,
        };

        var endpoint = uri.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);
        IConnection connection;
        try
        {
            connection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (BrokerUnreachableException ex)
        {
            // Refused credentials stay refused; an unreachable or starting broker may answer later.
            var refused = ex.InnerException is AuthenticationFailureException or PossibleAuthenticationFailureException;
            throw new OutboxException($"Could not connect to RabbitMQ at {endpoint}: {ex.InnerException?.Message ?? ex.Message}", isTransient: !refused, ex);
        }

        Log.Connected(logger, endpoint, ClientName);
        return connection;
    }

    /// <summary>
    /// Publishes <paramref name="message"/> to the exchange and with the routing key its <see cref="OutboxMessage.Options"/> name,
    /// declaring the exchange first when needed, and completes when the broker confirmed it.
    /// </summary>
    /// <param name="message">The message to publish.</param>
    /// <param name="cancellationToken">A token to stop waiting; the broker may still receive the message.</param>
    /// <returns>A task that completes when the broker confirmed the message.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OutboxException">
    /// The message was not confirmed. <see cref="OutboxException.IsTransient"/> is <see langword="false"/> when retrying cannot help:
    /// an option or header of a wrong type, an unroutable message, an exchange that exists with other settings; and
    /// <see langword="true"/> when the connection or channel was lost or the broker refused the message (a nack).
    /// <see cref="OutboxException.IsOutcomeUnknown"/> is <see langword="true"/> when the broker may have the message although no confirm
    /// came: the connection was lost, or the channel or connection was closed (by the broker, the client library, or disposing this
    /// publisher) after the message was handed to the connection; it is <see langword="false"/> for a nack, a return, a channel the broker
    /// closed because of this message (its exchange, its size), and any failure before the message was handed to the connection.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

        var route = ReadRoute(message);
        var properties = CreateProperties(message, route.ContentType);

        // Whether the message may have been written to the connection: from the publish call on, a failure without the broker's
        // answer (a nack, a return, a channel error about this message) leaves the outcome unknown.
        var sent = false;
        try
        {
            if (route.Declare)
            {
                await DeclareOnceAsync(route.Exchange, cancellationToken).ConfigureAwait(false);
            }

            var channel = await GetChannelAsync(publishing: true, cancellationToken).ConfigureAwait(false);
            sent = true;
            await channel.BasicPublishAsync(route.Exchange.Name, route.RoutingKey, _options.Mandatory, properties, message.Payload.AsMemory(), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (!(ex is OperationCanceledException && cancellationToken.IsCancellationRequested) && (sent || Volatile.Read(ref _disposed) == 0))
        {
            var failure = ex as OutboxException ?? TranslatePublishFailure(ex, message, route, sent);
            if (failure is null)
            {
                throw;
            }

            Log.PublishFailed(_logger, failure, message.MessageId, route.Exchange.Name, route.RoutingKey);
            if (ReferenceEquals(failure, ex))
            {
                throw;
            }

            throw failure;
        }
    }

    /// <summary>Gets the <c>messaging.system</c> value of this publisher's telemetry: <c>rabbitmq</c>.</summary>
    public string MessagingSystem => "rabbitmq";

    /// <summary>Gets the broker's host and port (from the URI, or the connection's endpoint), for the <c>server.address</c> and <c>server.port</c> attributes of the outbox's telemetry.</summary>
    public DnsEndPoint? ServerEndPoint => _serverEndPoint ??= _connection?.Endpoint is { HostName.Length: > 0 } endpoint
        ? new DnsEndPoint(endpoint.HostName, endpoint.Port > 0 ? endpoint.Port : 5672)
        : null;

    /// <summary>
    /// Gets the place <paramref name="message"/> goes to: the exchange its <see cref="RabbitMQOptionKeys.ExchangeName"/> option names, or,
    /// when that is the default exchange (empty), the queue its <see cref="RabbitMQOptionKeys.RoutingKey"/> names. Sends nothing.
    /// </summary>
    /// <param name="message">The message.</param>
    /// <returns>
    /// The exchange name, or the routing key for the default exchange; <see langword="null"/> when both are empty, or when an option is
    /// of a wrong type or invalid (publishing the message fails then).
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    public string? GetDestinationName(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        Route route;
        try
        {
            route = ReadRoute(message);
        }
        catch (OutboxException)
        {
            return null;
        }

        var destination = route.Exchange.Name.Length > 0 ? route.Exchange.Name : route.RoutingKey;
        return destination.Length > 0 ? destination : null;
    }

    /// <summary>Closes the channels, and the connection when the publisher opened it (<see cref="ConnectAsync"/>). Calling it again does nothing.</summary>
    /// <returns>A task that completes when the channels (and the owned connection) are closed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _channelLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_publishChannel is { } publishChannel)
            {
                publishChannel.ChannelShutdownAsync -= _onPublishChannelShutdown;
                await CloseQuietlyAsync(publishChannel).ConfigureAwait(false);
                _publishChannel = null;
            }

            if (_declareChannel is { } declareChannel)
            {
                await CloseQuietlyAsync(declareChannel).ConfigureAwait(false);
                _declareChannel = null;
            }
        }
        finally
        {
            _channelLock.Release();
        }

        if (_ownsConnection && _connection is not null)
        {
            try
            {
                await _connection.CloseAsync().ConfigureAwait(false);
            }
#pragma warning disable CA1031 // Closing is best effort: the connection may already be gone; dispose it anyway.
            catch (Exception)
#pragma warning restore CA1031
            {
            }

            await _connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static RabbitMQPublisherOptions ValidatedCopy(RabbitMQPublisherOptions? options)
    {
        var copy = (options ?? new RabbitMQPublisherOptions()).Clone();
        copy.Validate();
        return copy;
    }

    private Route ReadRoute(OutboxMessage message)
    {
        var options = message.Options;
        var name = options.GetString(RabbitMQOptionKeys.ExchangeName, string.Empty) ?? string.Empty;
        var type = options.GetString(RabbitMQOptionKeys.ExchangeType, DefaultExchangeType);
        var durable = options.GetBoolean(RabbitMQOptionKeys.ExchangeDurable, true);
        var autoDelete = options.GetBoolean(RabbitMQOptionKeys.ExchangeAutoDelete, false);
        var isInternal = options.GetBoolean(RabbitMQOptionKeys.ExchangeInternal, false);
        _ = options.GetBoolean(RabbitMQOptionKeys.ExchangeNoWait, false);
        var routingKey = options.GetString(RabbitMQOptionKeys.RoutingKey, string.Empty) ?? string.Empty;
        var contentType = options.GetString(RabbitMQOptionKeys.ContentType);
        if (string.IsNullOrEmpty(contentType))
        {
            contentType = _options.DefaultContentType;
        }

        if (string.IsNullOrEmpty(type))
        {
            type = DefaultExchangeType;
        }

        CheckShortString(RabbitMQOptionKeys.ExchangeName, name);
        CheckShortString(RabbitMQOptionKeys.RoutingKey, routingKey);
        CheckShortString(RabbitMQOptionKeys.ContentType, contentType);
        if (isInternal)
        {
            throw new OutboxException(
                $"The exchange '{name}' is marked internal ({RabbitMQOptionKeys.ExchangeInternal} = true): RabbitMQ refuses publishes to internal exchanges. Remove the option or set it to false.",
                isTransient: false);
        }

        var declare = _options.DeclareExchanges && name.Length > 0 && !name.StartsWith("amq.", StringComparison.Ordinal);
        if (declare && !IsKnownExchangeType(type))
        {
            // An unknown type is a connection-level error in RabbitMQ (COMMAND_INVALID): it would close every channel.
            throw new OutboxException(
                $"The value of '{RabbitMQOptionKeys.ExchangeType}' for exchange '{name}' is '{type}', which is not an exchange type: use direct, fanout, topic, headers, or a plugin type starting with 'x-'.",
                isTransient: false);
        }

        return new Route(new ExchangeKey(name, type, durable, autoDelete), routingKey, contentType, declare);
    }

    private static bool IsKnownExchangeType(string type) =>
        type is "direct" or "fanout" or "topic" or "headers" || type.StartsWith("x-", StringComparison.Ordinal);

    private static void CheckShortString(string key, string value)
    {
        if (Encoding.UTF8.GetByteCount(value) > 255)
        {
            throw new OutboxException($"The value of '{key}' is longer than 255 bytes in UTF-8, the limit of an AMQP short string: '{value}'.", isTransient: false);
        }
    }

    private BasicProperties CreateProperties(OutboxMessage message, string contentType)
    {
        var properties = new BasicProperties
        {
            ContentType = contentType,
            DeliveryMode = _options.Persistent ? DeliveryModes.Persistent : DeliveryModes.Transient,
            Headers = AmqpHeaders.Convert(message.Headers),
        };

        if (message.MessageId != Guid.Empty)
        {
            properties.MessageId = message.MessageId.ToString();
        }

        if (message.CreatedAt != default)
        {
            properties.Timestamp = new AmqpTimestamp(message.CreatedAt.ToUnixTimeSeconds());
        }

        return properties;
    }

    private async ValueTask DeclareOnceAsync(ExchangeKey exchange, CancellationToken cancellationToken)
    {
        if (_declared.ContainsKey(exchange))
        {
            return;
        }

        await _declareLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_declared.ContainsKey(exchange))
            {
                return;
            }

            var channel = await GetChannelAsync(publishing: false, cancellationToken).ConfigureAwait(false);
            try
            {
                await channel.ExchangeDeclareAsync(exchange.Name, exchange.Type, exchange.Durable, exchange.AutoDelete, arguments: null, passive: false, noWait: false, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationInterruptedException ex) when (ex.ShutdownReason is { Initiator: ShutdownInitiator.Peer } reason && IsChannelError(reason.ReplyCode))
            {
                var failure = new OutboxException(
                    $"Could not declare RabbitMQ exchange '{exchange.Name}' (type {exchange.Type}, durable {exchange.Durable}, auto-delete {exchange.AutoDelete}): {reason.ReplyText}. " +
                    "An exchange that exists with other settings must be published to with matching exchange.* options.",
                    isTransient: false,
                    ex);
                Log.ExchangeDeclareFailed(_logger, failure, exchange.Name);
                throw failure;
            }

            _declared[exchange] = true;
            Log.ExchangeDeclared(_logger, exchange.Name, exchange.Type, exchange.Durable, exchange.AutoDelete);
        }
        finally
        {
            _declareLock.Release();
        }
    }

    private static bool IsChannelError(ushort replyCode) =>
        replyCode is Constants.AccessRefused or Constants.NotFound or Constants.ResourceLocked or Constants.PreconditionFailed;

    /// <summary>Returns the open publishing (or declaring) channel, opening a new one when it was closed while the connection is up.</summary>
    private async ValueTask<IChannel> GetChannelAsync(bool publishing, CancellationToken cancellationToken)
    {
        var current = Volatile.Read(ref publishing ? ref _publishChannel : ref _declareChannel);
        if (current is { IsOpen: true })
        {
            return current;
        }

        await _channelLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            current = publishing ? _publishChannel : _declareChannel;
            if (current is { IsOpen: true })
            {
                return current;
            }

            if (_connection is null && _connect is not null)
            {
                _connection = await _connect(cancellationToken).ConfigureAwait(false);
            }

            if (_connection is not { IsOpen: true })
            {
                // Automatic recovery reopens the connection and its channels; opening one now would only fail.
                throw new OutboxException($"The RabbitMQ connection is closed ({Describe(_connection?.CloseReason)}); the message will be retried.", isTransient: true);
            }

            var channel = await _connection.CreateChannelAsync(publishing ? s_confirmingChannel : null, cancellationToken).ConfigureAwait(false);
            var purpose = publishing ? "publishing" : "declaring";
            if (publishing)
            {
                channel.ChannelShutdownAsync += _onPublishChannelShutdown;
                Volatile.Write(ref _publishChannel, channel);
            }
            else
            {
                Volatile.Write(ref _declareChannel, channel);
            }

            if (current is null)
            {
                Log.ChannelOpened(_logger, purpose, channel.ChannelNumber);
            }
            else
            {
                Log.ChannelRecreated(_logger, purpose, channel.ChannelNumber, Describe(current.CloseReason));
                if (publishing)
                {
                    current.ChannelShutdownAsync -= _onPublishChannelShutdown;
                }

                await CloseQuietlyAsync(current).ConfigureAwait(false);
            }

            return channel;
        }
        finally
        {
            _channelLock.Release();
        }
    }

    private Task OnPublishChannelShutdownAsync(object sender, ShutdownEventArgs reason)
    {
        // Whatever closed the channel (a lost connection, a broker restart, a channel error) may have taken non-durable exchanges
        // with it: declare each exchange again before its next publish. Declaring is idempotent.
        _declared.Clear();
        if (Volatile.Read(ref _disposed) == 0 && reason.Initiator != ShutdownInitiator.Application)
        {
            Log.ChannelClosed(_logger, Describe(reason));
        }

        return Task.CompletedTask;
    }

    private OutboxException? TranslatePublishFailure(Exception ex, OutboxMessage message, Route route, bool sent)
    {
        var target = $"exchange '{route.Exchange.Name}' with routing key '{route.RoutingKey}'";
        switch (ex)
        {
            case PublishException { IsReturn: true }:
                return new OutboxException(
                    $"RabbitMQ returned message {message.MessageId} as unroutable: no queue is bound to {target}. Bind a queue, or fix the {RabbitMQOptionKeys.ExchangeName} and {RabbitMQOptionKeys.RoutingKey} options.",
                    isTransient: false,
                    ex);
            case PublishException:
                return new OutboxException($"RabbitMQ refused (nacked) message {message.MessageId} published to {target}; it will be retried.", isTransient: true, ex);
            case OperationInterruptedException { ShutdownReason: { } reason }:
                return TranslateShutdown(ex, reason, message, route, target, sent);
            case RabbitMQClientException or IOException or SocketException or TimeoutException or ObjectDisposedException or OperationCanceledException:
                return sent
                    ? OutcomeUnknown(ex, message, target, $"the publish failed after the message was handed to the connection and before the broker answered ({ex.Message})")
                    : new OutboxException($"Publishing message {message.MessageId} to RabbitMQ {target} failed: {ex.Message}", isTransient: true, ex);
            default:
                return null;
        }
    }

    /// <summary>
    /// Tells a channel the broker closed because of this message (known: the broker did not take it) from a channel or connection that
    /// closed while the message was on its way or awaited its confirm (unknown: the broker may have it).
    /// </summary>
    private OutboxException TranslateShutdown(Exception ex, ShutdownEventArgs reason, OutboxMessage message, Route route, string target, bool sent)
    {
        if (_connection is { IsOpen: true } && reason.Initiator == ShutdownInitiator.Peer)
        {
            // A channel error names what it is about: this message's exchange (missing, refused, other settings), or its size. The
            // broker closes the channel on such a publish and takes no message of it afterwards, so this one was not taken.
            var aboutThisExchange = route.Exchange.Name.Length > 0 && reason.ReplyText.Contains($"exchange '{route.Exchange.Name}'", StringComparison.Ordinal);
            if (aboutThisExchange && reason.ReplyCode == Constants.NotFound)
            {
                // Declaring again (the cache was cleared when the channel closed) fixes it, unless declaring is switched off.
                return new OutboxException(
                    $"RabbitMQ could not publish message {message.MessageId}: the exchange '{route.Exchange.Name}' does not exist ({reason.ReplyText}).",
                    isTransient: _options.DeclareExchanges,
                    ex);
            }

            if (aboutThisExchange && reason.ReplyCode is Constants.AccessRefused or Constants.PreconditionFailed)
            {
                return new OutboxException($"RabbitMQ refused message {message.MessageId} for {target}: {reason.ReplyText}.", isTransient: false, ex);
            }

            if (reason.ReplyCode == Constants.PreconditionFailed
                && reason.ReplyText.Contains($"message size {message.Payload.Length} is larger than", StringComparison.Ordinal))
            {
                return new OutboxException(
                    $"RabbitMQ refused message {message.MessageId} for {target}: its payload of {message.Payload.Length} bytes is larger than the broker's max_message_size ({reason.ReplyText}).",
                    isTransient: false,
                    ex);
            }
        }

        if (sent)
        {
            // A lost connection, a broker that closed the connection (shutting down, a forced close), the library or this publisher
            // closing it, or a channel error caused by another message published on the same channel: the message may have been
            // routed before the channel closed, and its confirm is lost.
            return OutcomeUnknown(ex, message, target, $"the channel or connection closed after the message was handed to the connection and before the broker confirmed it ({Describe(reason)})");
        }

        return new OutboxException(
            $"The RabbitMQ channel or connection closed before message {message.MessageId} to {target} was sent ({Describe(reason)}); it will be retried.",
            isTransient: true,
            ex);
    }

    private static OutboxException OutcomeUnknown(Exception ex, OutboxMessage message, string target, string what) =>
        new($"The outcome of publishing message {message.MessageId} to RabbitMQ {target} is unknown: {what}. The broker may have it; it will be retried.", isTransient: true, ex)
        {
            IsOutcomeUnknown = true,
        };

    private static string Describe(ShutdownEventArgs? reason) =>
        reason is null ? "no reason given" : $"{reason.ReplyCode} {reason.ReplyText}, initiated by {reason.Initiator}";

    private static async ValueTask CloseQuietlyAsync(IChannel channel)
    {
        try
        {
            // Aborting a channel the broker already closed returns at once, and unregisters it from automatic recovery.
            await channel.AbortAsync().ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Best effort: the channel or its connection may be gone already.
        catch (Exception)
#pragma warning restore CA1031
        {
        }

        try
        {
            await channel.DisposeAsync().ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Best effort, as above.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    /// <summary>The settings an exchange is declared with; a publisher declares each distinct one once.</summary>
    private readonly record struct ExchangeKey(string Name, string Type, bool Durable, bool AutoDelete);

    /// <summary>Where and how one message is published, read from its options.</summary>
    private readonly record struct Route(ExchangeKey Exchange, string RoutingKey, string ContentType, bool Declare);
}
