using System.Net;
using System.Runtime.ExceptionServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using Outboxer.Providers;

namespace Outboxer.Nats;

/// <summary>
/// Publishes outbox messages to NATS JetStream and completes only when the stream acknowledged that it stored them. Each message
/// carries <see cref="OutboxMessage.MessageId"/> as <c>Nats-Msg-Id</c>, so a message published twice (after a relay crash between the
/// acknowledgement and the mark) is stored once while the stream's duplicate window remembers it.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="PublishBatchAsync"/> publishes a claimed batch concurrently over one connection, so the acknowledgements are pipelined:
/// one round trip for the batch, not one per message. Messages with the same <see cref="OutboxMessage.OrderingKey"/> are published one
/// after the other, each after the previous one was acknowledged, so they are stored in batch order; when one fails transiently, the
/// batch's later messages with its key are not published (they fail transiently too) and are retried after it.
/// </para>
/// <para>
/// The payload is sent as it is, with the message's <see cref="OutboxMessage.Headers"/> (the trace context the outbox adds among them)
/// as NATS headers. A message JetStream cannot take (no stream stores its subject, larger than the server's <c>max_payload</c>, an
/// invalid subject or header, a different stream than <see cref="NatsOptionKeys.ExpectedStream"/>) fails with a non-transient
/// <see cref="OutboxException"/>; a lost connection or a missing acknowledgement fails transiently, with
/// <see cref="OutboxException.IsOutcomeUnknown"/> set when the stream may have stored the message. Safe for concurrent use.
/// </para>
/// </remarks>
public sealed class NatsPublisher : IOutboxBatchPublisher, IAsyncDisposable
{
    private const string ConnectionName = "Outboxer";

    /// <summary>How long the publisher waits for JetStream to list the streams of a subject that got no acknowledgement.</summary>
    private static readonly TimeSpan s_streamLookupTimeout = TimeSpan.FromSeconds(5);

    private readonly INatsConnection _connection;
    private readonly NatsConnection? _ownedConnection;
    private readonly NatsJSContext _jetStream;
    private readonly NatsPublisherOptions _options;
    private readonly ILogger _logger;
    private readonly bool _asciiHeaders;
    private int _disposed;

    /// <summary>Initializes a publisher over a connection, which the caller keeps owning and disposes after the publisher.</summary>
    /// <param name="connection">
    /// The connection. Create it with <c>HeaderEncoding = Encoding.UTF8</c> in its <see cref="NatsOpts"/> to send header values with
    /// non-ASCII characters; with the client's default (ASCII) such a message fails.
    /// </param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="logger">The logger; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; the message names it and its value.</exception>
    public NatsPublisher(INatsConnection connection, NatsPublisherOptions? options = null, ILogger<NatsPublisher>? logger = null)
        : this(connection ?? throw new ArgumentNullException(nameof(connection)), null, ValidatedCopy(options), logger)
    {
    }

    /// <summary>
    /// Creates a publisher with a connection of its own to <paramref name="url"/> (connection name <c>Outboxer</c>, UTF-8 headers),
    /// which it closes when disposed. The connection is opened on the first publish and reconnects by itself; until the server answers,
    /// publishes fail with a transient <see cref="OutboxException"/> and the outbox retries them, so an application can start while
    /// NATS is down.
    /// </summary>
    /// <param name="url">The server address, for example <c>nats://localhost:4222</c>, or several separated by commas.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="loggerFactory">The logger factory, also given to the NATS client; <see langword="null"/> for no logging.</param>
    /// <returns>The publisher, not yet connected.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="url"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="url"/> is empty, or an option is invalid.</exception>
    public static NatsPublisher Create(string url, NatsPublisherOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(url);
        var validated = ValidatedCopy(options);
        return new NatsPublisher(CreateConnection(url, loggerFactory), validated, loggerFactory);
    }

    private NatsPublisher(NatsConnection connection, NatsPublisherOptions options, ILoggerFactory? loggerFactory)
        : this(connection, connection, options, (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<NatsPublisher>())
    {
        Log.Created(_logger, Redact(connection.Opts.Url), ConnectionName);
    }

    private NatsPublisher(INatsConnection connection, NatsConnection? ownedConnection, NatsPublisherOptions options, ILogger? logger)
    {
        _connection = connection;
        _ownedConnection = ownedConnection;
        _jetStream = new NatsJSContext(connection);
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _asciiHeaders = connection.Opts.HeaderEncoding.CodePage == Encoding.ASCII.CodePage;
    }

    /// <summary>
    /// Publishes <paramref name="message"/> to the subject its <see cref="OutboxMessage.Options"/> name and completes when the stream
    /// acknowledged it; a message the stream already had (the same <c>Nats-Msg-Id</c> within its duplicate window) counts as
    /// acknowledged.
    /// </summary>
    /// <param name="message">The message to publish.</param>
    /// <param name="cancellationToken">A token to stop waiting; the stream may still store the message.</param>
    /// <returns>A task that completes when the stream acknowledged the message.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OutboxException">
    /// The message was not acknowledged. <see cref="OutboxException.IsTransient"/> is <see langword="false"/> when retrying cannot help
    /// (no stream stores the subject, the message is larger than the server's <c>max_payload</c>, an invalid subject, option or header,
    /// a stream other than the expected one, another refusal of JetStream as a bad request) and <see langword="true"/> otherwise (the
    /// connection lost or not yet open, no acknowledgement in time from a stream that exists, the stream unavailable or full).
    /// <see cref="OutboxException.IsOutcomeUnknown"/> is <see langword="true"/> when no acknowledgement came from a stream that stores the
    /// subject (or the streams could not be listed), or the client failed otherwise after the message may have been sent: JetStream may
    /// have stored it, and the retry is deduplicated within the stream's duplicate window.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (await PublishOneAsync(message, cancellationToken).ConfigureAwait(false) is { } failure)
        {
            ExceptionDispatchInfo.Throw(failure);
        }
    }

    /// <summary>
    /// Publishes <paramref name="messages"/> concurrently with pipelined acknowledgements, the messages of each ordering key one after
    /// the other in batch order, and completes when JetStream answered for every message.
    /// </summary>
    /// <param name="messages">The batch, oldest first.</param>
    /// <param name="cancellationToken">A token to stop waiting; the streams may still store some messages.</param>
    /// <returns>
    /// One entry per message, at the same index: <see langword="null"/> when the stream acknowledged it, otherwise the
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
        var tasks = new List<Task>();
        var keyed = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i].OrderingKey is { Length: > 0 } key)
            {
                if (!keyed.TryGetValue(key, out var indexes))
                {
                    keyed[key] = indexes = [];
                }

                indexes.Add(i);
            }
            else
            {
                tasks.Add(PublishAtAsync(messages, i, results, cancellationToken));
            }
        }

        foreach (var (key, indexes) in keyed)
        {
            tasks.Add(indexes.Count == 1
                ? PublishAtAsync(messages, indexes[0], results, cancellationToken)
                : PublishInOrderAsync(messages, key, indexes, results, cancellationToken));
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        return results;
    }

    /// <summary>Gets the <c>messaging.system</c> value of this publisher's telemetry: <c>nats</c> (OpenTelemetry registers no value for NATS).</summary>
    public string MessagingSystem => "nats";

    /// <summary>
    /// Gets the host and port of the one server the connection's URL names, for the <c>server.address</c> and <c>server.port</c>
    /// attributes of the outbox's telemetry; <see langword="null"/> when it names several.
    /// </summary>
    public DnsEndPoint? ServerEndPoint =>
        _connection.Opts.Url is { } url && !url.Contains(',', StringComparison.Ordinal)
        && Uri.TryCreate(url.Contains("://", StringComparison.Ordinal) ? url : "nats://" + url, UriKind.Absolute, out var uri) && uri.Host.Length > 0
            ? new DnsEndPoint(uri.Host, uri.Port > 0 ? uri.Port : 4222)
            : null;

    /// <summary>
    /// Gets the subject <paramref name="message"/> goes to: its <see cref="NatsOptionKeys.Subject"/> option, or
    /// <see cref="NatsPublisherOptions.DefaultSubject"/> when it has none. Sends nothing.
    /// </summary>
    /// <param name="message">The message.</param>
    /// <returns>
    /// The subject; <see langword="null"/> when the message names none and there is no default, or when the option is of a wrong type
    /// or not a subject to publish to (publishing the message fails then).
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    public string? GetDestinationName(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        try
        {
            return ReadSubject(message);
        }
        catch (OutboxException)
        {
            return null;
        }
    }

    /// <summary>Closes the connection when the publisher created it. Calling it again does nothing.</summary>
    /// <returns>A task that completes when the owned connection is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _ownedConnection is not null)
        {
            await _ownedConnection.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static NatsConnection CreateConnection(string url, ILoggerFactory? loggerFactory) => new NatsConnection(new NatsOpts
        {
            Url = url,
            Name = ConnectionName,
            LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance,

            // Header values are text of any language (a tenant's name); the client's default would turn non-ASCII into '?'.
            HeaderEncoding = Encoding.UTF8,

            // While the connection is down, fail a publish after the command timeout (a transient failure the outbox retries) instead
            // of buffering it until the dispatcher's PublishTimeout runs out.
            PublishTimeoutOnDisconnected = true,
        });

    /// <summary>Drops any user name, password or token from each of the comma-separated server addresses, for logs.</summary>
    private static string Redact(string url) =>
        string.Join(",", url.Split(',', StringSplitOptions.TrimEntries).Select(u =>
            Uri.TryCreate(u, UriKind.Absolute, out var uri) ? uri.GetComponents(UriComponents.SchemeAndServer, UriFormat.UriEscaped) : "(an address that is not a URI)"));

    private static NatsPublisherOptions ValidatedCopy(NatsPublisherOptions? options)
    {
        var copy = (options ?? new NatsPublisherOptions()).Clone();
        copy.Validate();
        return copy;
    }

    private async Task PublishAtAsync(IReadOnlyList<OutboxMessage> messages, int index, Exception?[] results, CancellationToken cancellationToken) =>
        results[index] = await PublishOneAsync(messages[index], cancellationToken).ConfigureAwait(false);

    /// <summary>Publishes one ordering key's messages one after the other; after a transient failure, holds back the rest.</summary>
    private async Task PublishInOrderAsync(IReadOnlyList<OutboxMessage> messages, string key, List<int> indexes, Exception?[] results, CancellationToken cancellationToken)
    {
        for (var n = 0; n < indexes.Count; n++)
        {
            var index = indexes[n];
            var failure = await PublishOneAsync(messages[index], cancellationToken).ConfigureAwait(false);
            results[index] = failure;

            // A message that failed for good is not published again, so it cannot be overtaken; one that will be retried can.
            if (failure is OutboxException { IsTransient: false } or null)
            {
                continue;
            }

            if (n + 1 == indexes.Count)
            {
                return;
            }

            for (var m = n + 1; m < indexes.Count; m++)
            {
                var held = messages[indexes[m]];
                results[indexes[m]] = new OutboxException(
                    $"Message {held.MessageId} was not published to NATS: an earlier message of the batch with ordering key '{key}' ({messages[index].MessageId}) failed, and publishing this one now would put it ahead. It will be retried.",
                    isTransient: true);
            }

            Log.HeldBack(_logger, indexes.Count - n - 1, key);
            return;
        }
    }

    /// <summary>Publishes one message and returns <see langword="null"/> when acknowledged, or the failure; throws only for cancellation.</summary>
    private async Task<Exception?> PublishOneAsync(OutboxMessage message, CancellationToken cancellationToken)
    {
        string subject;
        NatsHeaders headers;
        try
        {
            subject = ReadSubject(message) ?? throw new OutboxException(
                $"Message {message.MessageId} has no '{NatsOptionKeys.Subject}' option and no {nameof(NatsPublisherOptions)}.{nameof(NatsPublisherOptions.DefaultSubject)} is set: it has no subject to go to.",
                isTransient: false);
            var expectedStream = message.Options.GetString(NatsOptionKeys.ExpectedStream);
            headers = NatsHeaderValues.Convert(message, string.IsNullOrEmpty(expectedStream) ? null : expectedStream, _asciiHeaders);
        }
        catch (OutboxException ex)
        {
            Log.PublishFailed(_logger, ex, message.MessageId, GetDestinationName(message) ?? "(none)");
            return ex;
        }

        try
        {
            var ack = await _jetStream.PublishAsync(subject, message.Payload, headers: headers, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (ack.Error is { } error)
            {
                throw Refused(message, subject, error);
            }

            if (ack.Duplicate)
            {
                Log.Duplicate(_logger, message.MessageId, subject, ack.Stream ?? "?", ack.Seq);
            }

            return null;
        }
        catch (Exception ex) when (!(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            var failure = ex as OutboxException ?? await TranslateAsync(ex, message, subject, cancellationToken).ConfigureAwait(false);
            Log.PublishFailed(_logger, failure, message.MessageId, subject);
            return failure;
        }
    }

    private string? ReadSubject(OutboxMessage message)
    {
        var subject = message.Options.GetString(NatsOptionKeys.Subject);
        if (string.IsNullOrEmpty(subject))
        {
            return _options.DefaultSubject;
        }

        if (NatsSubjects.Check(subject) is { } reason)
        {
            throw new OutboxException($"The value of '{NatsOptionKeys.Subject}', '{subject}', is not a NATS subject to publish to: {reason}.", isTransient: false);
        }

        return subject;
    }

    private static OutboxException Refused(OutboxMessage message, string subject, ApiError error)
    {
        // JetStream answers a request it will never accept with a 400 (an expectation that failed, a message over the stream's
        // max_msg_size); 503 and the rest (storage full, no quorum) may pass.
        var permanent = error.Code is >= 400 and < 500 and not 408 and not 429;
        var hint = error.ErrCode == 10060 ? $" The subject is stored by another stream than the '{NatsOptionKeys.ExpectedStream}' option names." : string.Empty;
        return new OutboxException(
            $"JetStream refused message {message.MessageId} on subject '{subject}': {error.Description} (code {error.Code}, error {error.ErrCode}).{hint}" +
            (permanent ? string.Empty : " It will be retried."),
            isTransient: !permanent);
    }

    private async Task<OutboxException> TranslateAsync(Exception ex, OutboxMessage message, string subject, CancellationToken cancellationToken)
    {
        switch (ex)
        {
            case NatsPayloadTooLargeException:
                return new OutboxException(
                    $"Message {message.MessageId} to NATS subject '{subject}' is too large for the server: {ex.Message}. Raise the server's max_payload, or store large payloads elsewhere and publish a reference.",
                    isTransient: false,
                    ex);
            case NatsJSPublishNoResponseException or NatsNoRespondersException:
                return await NoAcknowledgementAsync(ex, message, subject, cancellationToken).ConfigureAwait(false);
            case NatsException when ex.GetType() == typeof(NatsException) && ex.Message.Contains("invalid", StringComparison.OrdinalIgnoreCase):
                // The client's own checks (a subject or header it would not send) throw the base type before anything is sent.
                return new OutboxException($"The NATS client refused message {message.MessageId} to subject '{subject}': {ex.Message}", isTransient: false, ex);
            case NatsException when ex.GetType() == typeof(NatsException) && ex.Message.StartsWith("can not connect", StringComparison.OrdinalIgnoreCase):
                // The first connection could not be opened: nothing was sent.
                return new OutboxException($"Message {message.MessageId} to NATS subject '{subject}' was not sent: {ex.Message}; it will be retried.", isTransient: true, ex);
            default:
                // Not the caller's token: the client gave up waiting (no answer in time, a connection lost after the message was
                // written or while it waited to be), or the connection failed. The client does not say whether the message left, so
                // JetStream may have stored it; the retry is deduplicated (Nats-Msg-Id) within the stream's duplicate window.
                return new OutboxException(
                    $"The outcome of publishing message {message.MessageId} to NATS subject '{subject}' is unknown: no acknowledgement came ({ex.GetType().Name}: {ex.Message.TrimEnd('.')}; the connection is {_connection.ConnectionState}). JetStream may have stored it; it will be retried.",
                    isTransient: true,
                    ex)
                {
                    IsOutcomeUnknown = true,
                };
        }
    }

    /// <summary>
    /// Tells a subject no stream stores (which fails for good) from a stream that did not answer in time (which may pass), by asking
    /// JetStream which streams store the subject. The client reports an acknowledgement that never came (the request timed out, each
    /// retry too) as it reports "no responders": when a stream stores the subject, or the look-up fails, the message may have been
    /// stored and the outcome is unknown.
    /// </summary>
    private async Task<OutboxException> NoAcknowledgementAsync(Exception ex, OutboxMessage message, string subject, CancellationToken cancellationToken)
    {
        // The server answers "no responders" itself, so a bare one says the message reached no stream; the JetStream exception
        // covers timeouts too.
        var unknown = ex is not NatsNoRespondersException;
        var streams = new List<string>();
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(s_streamLookupTimeout);
            await foreach (var name in _jetStream.ListStreamNamesAsync(subject, timeout.Token).ConfigureAwait(false))
            {
                streams.Add(name);
            }
        }
#pragma warning disable CA1031 // The look-up only explains the failure; when it fails too, the failure may pass.
        catch (Exception lookup) when (!(lookup is OperationCanceledException && cancellationToken.IsCancellationRequested))
#pragma warning restore CA1031
        {
            return new OutboxException(
                $"JetStream did not acknowledge message {message.MessageId} on subject '{subject}' ({ex.Message}), and listing the streams of the subject failed too ({lookup.Message}): JetStream may be unavailable.{(unknown ? " The outcome is unknown: it may have been stored." : string.Empty)} It will be retried.",
                isTransient: true,
                ex)
            {
                IsOutcomeUnknown = unknown,
            };
        }

        if (streams.Count == 0)
        {
            return new OutboxException(
                $"No JetStream stream stores subject '{subject}' (no responders), so message {message.MessageId} cannot be published. Create a stream whose subjects include it, or fix the '{NatsOptionKeys.Subject}' option.",
                isTransient: false,
                ex);
        }

        return new OutboxException(
            $"JetStream stream '{string.Join("', '", streams)}' did not acknowledge message {message.MessageId} on subject '{subject}' in time ({ex.Message}).{(unknown ? " The outcome is unknown: it may have been stored." : string.Empty)} It will be retried.",
            isTransient: true,
            ex)
        {
            IsOutcomeUnknown = unknown,
        };
    }
}
