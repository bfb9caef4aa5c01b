using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using Amazon.SQS;
using Amazon.SQS.Model;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Outboxer.Providers;

namespace Outboxer.Sqs;

/// <summary>
/// Publishes outbox messages to Amazon SQS. The dispatcher hands it whole batches (<see cref="PublishBatchAsync"/>), which it sends
/// with <c>SendMessageBatch</c>: grouped by queue, split into requests of at most 10 messages and
/// <see cref="SqsPublisherOptions.MaxMessageSize"/> bytes, run concurrently. The counterpart of the Go outboxer's <c>sqs</c> event
/// stream, reading the same option keys (<see cref="SqsOptionKeys"/>).
/// </summary>
/// <remarks>
/// <para>
/// The queue is named by the message's <see cref="SqsOptionKeys.QueueName"/> option: a queue URL, or a queue name that is resolved
/// with <c>GetQueueUrl</c> once and cached (a failed resolution is not cached).
/// </para>
/// <para>
/// A payload that is valid UTF-8 made only of characters SQS accepts is sent as the message body unchanged. Any other payload is sent
/// base64-encoded, with the message attribute <c>outboxer-body-encoding</c> set to <c>base64</c>. Every message carries its
/// <see cref="OutboxMessage.MessageId"/> in the attribute <c>message-id</c> (SQS assigns its own message id), and its
/// <see cref="OutboxMessage.Headers"/> as further attributes; SQS accepts at most 10 attributes in all.
/// </para>
/// <para>
/// A message SQS cannot accept (a wrong option, too many or invalid headers, too large) fails alone with a non-transient
/// <see cref="OutboxException"/>, without a request. A request that fails as a whole (network, throttling) fails its own messages
/// only, transiently. Safe for concurrent use. The publisher does not own the <see cref="IAmazonSQS"/> client.
/// </para>
/// </remarks>
public sealed class SqsPublisher : IOutboxBatchPublisher, IAsyncDisposable
{
    private const int MaxBatchEntries = 10;

    private readonly IAmazonSQS _client;
    private readonly SqsPublisherOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Lazy<Task<string>>> _queueUrls = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _lifetime = new();
    private int _disposed;

    /// <summary>Initializes a publisher over an SQS client, which the caller keeps owning and disposes after the publisher.</summary>
    /// <param name="client">
    /// The SQS client, for example <c>new AmazonSQSClient()</c> with the default credential chain and region. Its retry settings
    /// apply to every request.
    /// </param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="logger">The logger; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="client"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public SqsPublisher(IAmazonSQS client, SqsPublisherOptions? options = null, ILogger<SqsPublisher>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        var copy = (options ?? new SqsPublisherOptions()).Clone();
        copy.Validate();
        _client = client;
        _options = copy;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>
    /// Sends <paramref name="message"/> with <c>SendMessage</c> to the queue its <see cref="OutboxMessage.Options"/> name, and completes
    /// when SQS accepted it.
    /// </summary>
    /// <param name="message">The message to publish.</param>
    /// <param name="cancellationToken">A token to stop waiting; SQS may still receive the message.</param>
    /// <returns>A task that completes when SQS accepted the message.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OutboxException">
    /// SQS did not accept the message. <see cref="OutboxException.IsTransient"/> is <see langword="false"/> when retrying cannot help:
    /// an option or header SQS does not accept (the message names it), a missing queue, a message larger than
    /// <see cref="SqsPublisherOptions.MaxMessageSize"/>, or a request SQS refused as the sender's fault; and <see langword="true"/>
    /// when SQS could not be reached, throttled the request, or failed itself. <see cref="OutboxException.IsOutcomeUnknown"/> is
    /// <see langword="true"/> when the request was (or may have been) sent and no answer came (a timeout, a connection reset): SQS may
    /// have the message.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

        var outgoing = SqsOutgoing.Create(message, 0, _options);
        try
        {
            var queueUrl = await GetQueueUrlAsync(outgoing.Queue, cancellationToken).ConfigureAwait(false);
            await SendOneAsync(outgoing, queueUrl, cancellationToken).ConfigureAwait(false);
        }
        catch (OutboxException ex)
        {
            Log.PublishFailed(_logger, ex, message.MessageId, outgoing.Queue.Reference);
            throw;
        }
    }

    /// <summary>Gets the <c>messaging.system</c> value of this publisher's telemetry: <c>aws_sqs</c> (the value OpenTelemetry registers for Amazon SQS).</summary>
    public string MessagingSystem => "aws_sqs";

    /// <summary>Gets the host and port of the client's <c>ServiceURL</c> when it has one, for the <c>server.address</c> and <c>server.port</c> attributes of the outbox's telemetry.</summary>
    public DnsEndPoint? ServerEndPoint =>
        Uri.TryCreate(_client.Config?.ServiceURL, UriKind.Absolute, out var url) && url.Host.Length > 0 ? new DnsEndPoint(url.Host, url.Port) : null;

    /// <summary>
    /// Gets the queue <paramref name="message"/> goes to, as its <see cref="SqsOptionKeys.QueueName"/> option gives it (a queue name or a
    /// queue URL, not resolved), or <see cref="SqsPublisherOptions.DefaultQueueName"/> when it has none. Sends nothing.
    /// </summary>
    /// <param name="message">The message.</param>
    /// <returns>
    /// The queue name or URL; <see langword="null"/> when the message names no queue and there is no default, or when the option is of
    /// a wrong type or not a valid queue name or URL (publishing the message fails then).
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    public string? GetDestinationName(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return SqsOutgoing.FindQueue(message, _options)?.Reference;
    }

    /// <summary>
    /// Sends <paramref name="messages"/> with <c>SendMessageBatch</c>: grouped by queue, in requests of at most 10 messages and at most
    /// <see cref="SqsPublisherOptions.MaxMessageSize"/> bytes, up to <see cref="SqsPublisherOptions.MaxConcurrentRequests"/> requests at a
    /// time. The requests for one FIFO queue run one after another in the batch's order; after a transient failure, the later messages
    /// of the same message group are not sent (they fail transiently too), so that the retry keeps the group's order.
    /// </summary>
    /// <param name="messages">The batch, oldest first.</param>
    /// <param name="cancellationToken">A token to stop waiting; SQS may still receive some messages.</param>
    /// <returns>
    /// One entry per message, at the same index: <see langword="null"/> when SQS accepted it, otherwise an <see cref="OutboxException"/>
    /// as <see cref="PublishAsync"/> describes.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<IReadOnlyList<Exception?>> PublishBatchAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

        var results = new Exception?[messages.Count];
        var prepared = new List<SqsOutgoing>(messages.Count);
        for (var i = 0; i < messages.Count; i++)
        {
            try
            {
                prepared.Add(SqsOutgoing.Create(messages[i], i, _options));
            }
#pragma warning disable CA1031 // A message that cannot be sent fails alone; the others go on.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                results[i] = ex;
            }
        }

        var units = await PlanAsync(prepared, results, cancellationToken).ConfigureAwait(false);
        var requests = 0;
        await Parallel.ForEachAsync(
            units,
            new ParallelOptions { MaxDegreeOfParallelism = _options.MaxConcurrentRequests, CancellationToken = cancellationToken },
            async (unit, ct) =>
            {
                var sent = await SendUnitAsync(unit, results, ct).ConfigureAwait(false);
                Interlocked.Add(ref requests, sent);
            }).ConfigureAwait(false);

        Log.BatchPublished(_logger, results.Count(r => r is null), results.Length, requests);
        return results;
    }

    /// <summary>
    /// Stops using the client: in-flight queue URL lookups are cancelled, and later publishes throw <see cref="ObjectDisposedException"/>.
    /// The client is not disposed. Calling it again does nothing.
    /// </summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            // Not disposed: lookups still running may read its token.
            _lifetime.Cancel();
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Resolves the queues of the batch and lays out its requests: one unit per request for a standard queue (they may run in any
    /// order), one unit with all the requests of a FIFO queue (they run in order).
    /// </summary>
    private async Task<List<QueueWork>> PlanAsync(List<SqsOutgoing> prepared, Exception?[] results, CancellationToken cancellationToken)
    {
        var names = prepared.Where(p => !p.Queue.IsUrl).Select(p => p.Queue.Reference).Distinct(StringComparer.Ordinal).ToList();
        var resolved = new Dictionary<string, string>(StringComparer.Ordinal);
        if (names.Count > 0)
        {
            var lookups = names.Select(async name =>
            {
                try
                {
                    return (Name: name, Url: await GetQueueUrlAsync(new SqsQueue(name, IsUrl: false, IsFifo: false), cancellationToken).ConfigureAwait(false), Error: (Exception?)null);
                }
                catch (OutboxException ex)
                {
                    return (Name: name, Url: (string?)null, Error: (Exception?)ex);
                }
            }).ToList();

            foreach (var (name, url, error) in await Task.WhenAll(lookups).ConfigureAwait(false))
            {
                if (url is not null)
                {
                    resolved[name] = url;
                }
                else
                {
                    foreach (var message in prepared.Where(p => !p.Queue.IsUrl && p.Queue.Reference == name))
                    {
                        results[message.Index] = error;
                    }
                }
            }
        }

        // Group by queue URL, keeping the batch's order within each queue.
        var queues = new List<QueueWork>();
        var byUrl = new Dictionary<string, (QueueWork Work, List<SqsOutgoing> Messages)>(StringComparer.Ordinal);
        foreach (var message in prepared)
        {
            string url;
            if (message.Queue.IsUrl)
            {
                url = message.Queue.Reference;
            }
            else if (!resolved.TryGetValue(message.Queue.Reference, out url!))
            {
                continue;
            }

            if (!byUrl.TryGetValue(url, out var group))
            {
                var work = new QueueWork(url, message.Queue.IsUrl ? null : message.Queue.Reference, message.Queue.Reference, message.Queue.IsFifo);
                group = (work, []);
                byUrl[url] = group;
                queues.Add(work);
            }

            group.Messages.Add(message);
        }

        var units = new List<QueueWork>();
        foreach (var queue in queues)
        {
            // SQS applies the same size limit to a batch request as to one message.
            var splitter = new OrderedBatchSplitter(MaxBatchEntries, _options.MaxMessageSize);
            var chunks = splitter.Split(byUrl[queue.Url].Messages, m => m.Size);
            if (queue.IsFifo)
            {
                queue.Order = splitter;
                queue.Requests.AddRange(chunks);
                units.Add(queue);
            }
            else
            {
                units.AddRange(chunks.Select(chunk => queue.With(chunk)));
            }
        }

        return units;
    }

    /// <summary>Sends the requests of one unit in order and returns how many requests it made.</summary>
    private async Task<int> SendUnitAsync(QueueWork unit, Exception?[] results, CancellationToken cancellationToken)
    {
        // A FIFO queue's message groups that had a transient failure in this batch: their later messages wait for the retry.
        var order = unit.Order;
        var requests = 0;
        foreach (var request in unit.Requests)
        {
            var toSend = order is null ? request : order.FilterHeldBack(request, m => m.GroupId, m => results[m.Index] = HeldBack(m, unit));
            if (toSend.Count == 0)
            {
                continue;
            }

            requests += await SendRequestAsync(unit, toSend, results, cancellationToken).ConfigureAwait(false);
            if (order is not null)
            {
                foreach (var message in toSend)
                {
                    if (results[message.Index] is OutboxException { IsTransient: true })
                    {
                        order.MarkFailed(message.GroupId);
                    }
                }
            }
        }

        return requests;
    }

    /// <summary>Sends one <c>SendMessageBatch</c> request and records each message's result; returns how many requests it made.</summary>
    private async Task<int> SendRequestAsync(QueueWork unit, IReadOnlyList<SqsOutgoing> messages, Exception?[] results, CancellationToken cancellationToken)
    {
        var request = new SendMessageBatchRequest { QueueUrl = unit.Url, Entries = messages.Select(m => m.ToEntry()).ToList() };
        SendMessageBatchResponse response;
        try
        {
            response = await _client.SendMessageBatchAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (BatchRequestTooLongException) when (messages.Count > 1)
        {
            // The queue measures differently than this publisher does: send the messages one by one, in order.
            Log.BatchTooLong(_logger, messages.Count, unit.Display);
            foreach (var message in messages)
            {
                if (unit.Order?.IsHeldBack(message.GroupId) == true)
                {
                    results[message.Index] = HeldBack(message, unit);
                    continue;
                }

                try
                {
                    await SendOneAsync(message, unit.Url, cancellationToken).ConfigureAwait(false);
                    results[message.Index] = null;
                }
                catch (OutboxException ex)
                {
                    results[message.Index] = ex;
                    if (ex.IsTransient)
                    {
                        unit.Order?.MarkFailed(message.GroupId);
                    }
                }
            }

            return 1 + messages.Count;
        }
        catch (Exception ex) when (!(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            var failure = SqsErrors.Translate(ex, $"Sending {(messages.Count == 1 ? "1 message" : $"{messages.Count} messages")} to SQS queue '{unit.Display}'", _client);
            ForgetIfMissing(ex, unit.Name);
            Log.BatchRequestFailed(_logger, failure, messages.Count, unit.Display);
            foreach (var message in messages)
            {
                results[message.Index] = failure;
            }

            return 1;
        }

        var answered = new HashSet<int>();
        foreach (var success in response.Successful ?? [])
        {
            if (TryFind(messages, success.Id, out var message))
            {
                results[message.Index] = null;
                answered.Add(message.Index);
            }
        }

        foreach (var failed in response.Failed ?? [])
        {
            if (TryFind(messages, failed.Id, out var message))
            {
                results[message.Index] = SqsErrors.Translate(failed, message.Message, unit.Display);
                answered.Add(message.Index);
            }
        }

        foreach (var message in messages)
        {
            if (!answered.Contains(message.Index))
            {
                results[message.Index] = new OutboxException(
                    $"SQS did not report on message {message.Message.MessageId} in its answer to a SendMessageBatch request to queue '{unit.Display}': its outcome is unknown (SQS may have it); it will be retried.",
                    isTransient: true)
                {
                    IsOutcomeUnknown = true,
                };
            }
        }

        return 1;
    }

    private static OutboxException HeldBack(SqsOutgoing message, QueueWork unit) => new(
        $"Message {message.Message.MessageId} was not sent to the FIFO queue '{unit.Display}': an earlier message of its group '{message.GroupId}' " +
        "failed and will be retried first, to keep the group's order.",
        isTransient: true);

    private static bool TryFind(IReadOnlyList<SqsOutgoing> messages, string? id, out SqsOutgoing message)
    {
        if (int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
        {
            foreach (var candidate in messages)
            {
                if (candidate.Index == index)
                {
                    message = candidate;
                    return true;
                }
            }
        }

        message = null!;
        return false;
    }

    /// <summary>Sends one message with <c>SendMessage</c>; throws a translated <see cref="OutboxException"/> when SQS did not accept it.</summary>
    private async Task SendOneAsync(SqsOutgoing message, string queueUrl, CancellationToken cancellationToken)
    {
        try
        {
            await _client.SendMessageAsync(message.ToRequest(queueUrl), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (!(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            ForgetIfMissing(ex, message.Queue.IsUrl ? null : message.Queue.Reference);
            throw SqsErrors.Translate(ex, $"Sending message {message.Message.MessageId} to SQS queue '{message.Queue.Reference}'", _client);
        }
    }

    /// <summary>Returns the URL of <paramref name="queue"/>: itself, or the cached result of resolving its name once.</summary>
    private async Task<string> GetQueueUrlAsync(SqsQueue queue, CancellationToken cancellationToken)
    {
        if (queue.IsUrl)
        {
            return queue.Reference;
        }

        var name = queue.Reference;
        // Lazy: concurrent first uses share one lookup even when GetOrAdd runs its factory more than once.
        var lookup = _queueUrls.GetOrAdd(name, static (n, self) => new Lazy<Task<string>>(() => self.ResolveAsync(n)), this);
        try
        {
            return await lookup.Value.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception) when (lookup.Value.IsFaulted || lookup.Value.IsCanceled)
        {
            // A failed lookup is not cached: the next message tries again.
            _queueUrls.TryRemove(KeyValuePair.Create(name, lookup));
            throw;
        }
    }

    /// <summary>Looks a queue name up with <c>GetQueueUrl</c>. Shared by every caller until it completes, so it uses the publisher's lifetime, not a caller's token.</summary>
    private async Task<string> ResolveAsync(string name)
    {
        try
        {
            var response = await _client.GetQueueUrlAsync(new GetQueueUrlRequest { QueueName = name }, _lifetime.Token).ConfigureAwait(false);
            if (string.IsNullOrEmpty(response.QueueUrl))
            {
                throw new OutboxException($"SQS answered GetQueueUrl for queue '{name}' without a URL; it will be retried.", isTransient: true);
            }

            Log.QueueResolved(_logger, name, response.QueueUrl);
            return response.QueueUrl;
        }
        catch (OperationCanceledException ex) when (_lifetime.IsCancellationRequested)
        {
            throw new ObjectDisposedException(nameof(SqsPublisher), ex);
        }
        catch (Exception ex)
        {
            var failure = SqsErrors.IsMissingQueue(ex)
                ? new OutboxException(
                    $"The SQS queue '{name}' does not exist: GetQueueUrl found no queue of that name for these credentials and region ({ex.Message}).",
                    isTransient: false,
                    ex)
                : SqsErrors.Translate(ex, $"Looking up the URL of SQS queue '{name}'");
            Log.QueueResolveFailed(_logger, failure, name);
            throw failure;
        }
    }

    /// <summary>Forgets the cached URL of a queue name when SQS says the queue does not exist (it may be created again under another URL).</summary>
    private void ForgetIfMissing(Exception ex, string? name)
    {
        if (name is not null && SqsErrors.IsMissingQueue(ex))
        {
            _queueUrls.TryRemove(name, out _);
        }
    }

    /// <summary>The requests for one queue that run in order: one request for a standard queue, all of a FIFO queue's.</summary>
    private sealed class QueueWork(string url, string? name, string display, bool isFifo)
    {
        public string Url { get; } = url;

        /// <summary>Gets the queue name the URL was resolved from, or <see langword="null"/> when the messages gave the URL.</summary>
        public string? Name { get; } = name;

        public string Display { get; } = display;

        public bool IsFifo { get; } = isFifo;

        /// <summary>
        /// Gets or sets what splits a FIFO queue's messages and holds back the groups that failed; <see langword="null"/> for a standard
        /// queue, whose requests run in any order.
        /// </summary>
        public OrderedBatchSplitter? Order { get; set; }

        public List<IReadOnlyList<SqsOutgoing>> Requests { get; } = [];

        public QueueWork With(IReadOnlyList<SqsOutgoing> request)
        {
            var work = new QueueWork(Url, Name, Display, IsFifo);
            work.Requests.Add(request);
            return work;
        }
    }
}
