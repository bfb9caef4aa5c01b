using System.Buffers;
using System.Net;
using System.Text;
using System.Text.Json;
using Amazon.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Outboxer.Kinesis.Internal;
using Outboxer.Providers;

namespace Outboxer.Kinesis;

/// <summary>
/// Publishes outbox messages to Amazon Kinesis Data Streams: one record per message, put with <c>PutRecords</c> for a batch (split at
/// 500 records and 5 MiB per request) and with <c>PutRecord</c> for a single message. The counterpart of the Go outboxer's
/// <c>kinesis</c> event stream, reading the same option keys (<see cref="KinesisOptionKeys"/>) with its key collision fixed.
/// </summary>
/// <remarks>
/// <para>
/// Requests go to the Kinesis JSON API over <see cref="HttpClient"/>, signed with AWS Signature Version 4 by AWSSDK.Core's signer,
/// with credentials from <see cref="KinesisPublisherOptions.Credentials"/> or AWSSDK.Core's default credential chain.
/// </para>
/// <para>
/// The partition key is the <see cref="KinesisOptionKeys.PartitionKey"/> option, or else the message id, so that a consumer reading
/// raw records finds the message id (for deduplication) in the record's partition key. With
/// <see cref="KinesisPublisherOptions.UseEnvelope"/> every record carries the message id, creation time and headers in a JSON envelope.
/// </para>
/// <para>
/// A batch's records keep their order per stream: requests to one stream are sent one after the other, and once a record failed,
/// the batch's later records with the same partition key are not sent (they fail transiently), so none overtakes it. Within one
/// request Kinesis may store a record after an earlier one of the same key failed; such a record is retried and arrives later.
/// Safe for concurrent use.
/// </para>
/// </remarks>
public sealed class KinesisPublisher : IOutboxBatchPublisher, IAsyncDisposable
{
    private const string DefaultRegionForServiceUrl = "us-east-1";

    private readonly KinesisClient _client;
    private readonly KinesisPublisherOptions _options;
    private readonly ILogger _logger;
    private int _headersWarned;
    private int _disposed;

    /// <summary>Initializes a publisher. It sends nothing until the first publish, and resolves credentials only then.</summary>
    /// <param name="options">The settings. They are copied and validated here.</param>
    /// <param name="httpClient">
    /// The client that sends the requests, for example one from <c>IHttpClientFactory</c>, which the caller keeps owning; or
    /// <see langword="null"/> to create one that the publisher disposes.
    /// </param>
    /// <param name="logger">The logger; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">
    /// An option is invalid, or no region is set nor found while <see cref="KinesisPublisherOptions.ServiceUrl"/> is not set either;
    /// the message names the option.
    /// </exception>
    public KinesisPublisher(KinesisPublisherOptions options, HttpClient? httpClient = null, ILogger<KinesisPublisher>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Clone();
        _options.Validate();
        _logger = logger ?? (ILogger)NullLogger.Instance;

        var region = _options.Region
            ?? (_options.ServiceUrl is { } serviceUrl ? KinesisNames.RegionOf(serviceUrl) : null)
            ?? RegionFromEnvironment()
            ?? (_options.ServiceUrl is not null ? DefaultRegionForServiceUrl : null);
        if (region is null)
        {
            const string name = $"{nameof(KinesisPublisherOptions)}.{nameof(KinesisPublisherOptions.Region)}";
            throw new ArgumentException(
                $"{name} is not set and no region was found in AWS_REGION, AWS_DEFAULT_REGION or the AWS config profile: set {name}, or set {nameof(KinesisPublisherOptions)}.{nameof(KinesisPublisherOptions.ServiceUrl)}.",
                name);
        }

        var endpoint = _options.ServiceUrl ?? KinesisNames.EndpointOf(region);
        var ownsHttpClient = httpClient is null;
        _client = new KinesisClient(httpClient ?? CreateHttpClient(), ownsHttpClient, endpoint, region, _options.Credentials, _options.TimeProvider);
        Log.Created(_logger, endpoint, region, _options.UseEnvelope ? "envelope" : "raw");
    }

    /// <summary>Gets the address the requests are posted to: <see cref="KinesisPublisherOptions.ServiceUrl"/> or the regional endpoint.</summary>
    public Uri Endpoint => _client.Endpoint;

    /// <summary>Gets the region the requests are signed for.</summary>
    public string Region => _client.Region;

    /// <summary>
    /// Puts <paramref name="message"/> in the stream its <see cref="OutboxMessage.Options"/> name, with <c>PutRecord</c>, and completes
    /// when Kinesis stored it.
    /// </summary>
    /// <param name="message">The message to publish.</param>
    /// <param name="cancellationToken">A token to stop waiting; Kinesis may still store the record.</param>
    /// <returns>A task that completes when Kinesis stored the record.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OutboxException">
    /// The record was not stored. <see cref="OutboxException.IsTransient"/> is <see langword="false"/> when retrying cannot help: an
    /// option of a wrong type or an invalid value, no stream, a record over 1 MiB, a stream that does not exist, refused access; and
    /// <see langword="true"/> when Kinesis throttled the request or failed internally, could not be reached, or no credentials were found.
    /// <see cref="OutboxException.IsOutcomeUnknown"/> is <see langword="true"/> when the request was (or may have been) sent and no
    /// response came (a timeout, a connection reset), or the success response could not be read: Kinesis may have stored the record.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

        Record record;
        try
        {
            record = Prepare(message, index: 0);
        }
        catch (OutboxException ex)
        {
            Log.MessageRejected(_logger, message.MessageId, ex.Message);
            throw;
        }

        var failure = await PutRecordAsync(record, cancellationToken).ConfigureAwait(false);
        if (failure is not null)
        {
            throw failure;
        }
    }

    /// <summary>Gets the <c>messaging.system</c> value of this publisher's telemetry: <c>aws.kinesis</c> (OpenTelemetry registers no value for Kinesis).</summary>
    public string MessagingSystem => "aws.kinesis";

    /// <summary>Gets the host and port of <see cref="Endpoint"/>, for the <c>server.address</c> and <c>server.port</c> attributes of the outbox's telemetry.</summary>
    public DnsEndPoint ServerEndPoint => new(Endpoint.Host, Endpoint.Port);

    /// <summary>
    /// Gets the stream <paramref name="message"/> goes to: its <see cref="KinesisOptionKeys.StreamName"/> option, or
    /// <see cref="KinesisPublisherOptions.DefaultStreamName"/> when it has none. Sends nothing.
    /// </summary>
    /// <param name="message">The message.</param>
    /// <returns>
    /// The stream name; <see langword="null"/> when the message names no stream and there is no default, or when the option is of a wrong
    /// type or not a valid stream name (publishing the message fails then).
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    public string? GetDestinationName(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        try
        {
            return StreamOf(message.Options.GetString(KinesisOptionKeys.StreamName));
        }
        catch (OutboxException)
        {
            // An option of a wrong type: the message names no usable stream.
            return null;
        }
    }

    /// <summary>
    /// Puts <paramref name="messages"/> in the streams their options name: grouped by stream, in order, with <c>PutRecords</c>
    /// requests of at most 500 records and 5 MiB each (messages with a <see cref="KinesisOptionKeys.SequenceNumberForOrdering"/> with
    /// <c>PutRecord</c>), and completes when Kinesis answered for every record.
    /// </summary>
    /// <param name="messages">The batch, oldest first.</param>
    /// <param name="cancellationToken">A token to stop waiting; Kinesis may still store some records.</param>
    /// <returns>
    /// One entry per message, at the same index: <see langword="null"/> when Kinesis stored the record, otherwise the
    /// <see cref="OutboxException"/> it failed with, transient or not as for <see cref="PublishAsync"/>. A failed record does not fail
    /// the others, except that the batch's later records with the same stream and partition key are then not sent (transient).
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<IReadOnlyList<Exception?>> PublishBatchAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

        var results = new Exception?[messages.Count];
        var records = new List<Record>(messages.Count);
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            if (message is null)
            {
                results[i] = new OutboxException($"The message at index {i} of the batch is null.", isTransient: false);
                continue;
            }

            try
            {
                records.Add(Prepare(message, i));
            }
            catch (OutboxException ex)
            {
                Log.MessageRejected(_logger, message.MessageId, ex.Message);
                results[i] = ex;
            }
        }

        await OrderedBatchSplitter.ForEachDestinationAsync(
            records,
            r => r.Stream,
            (stream, streamRecords) => PutStreamAsync(stream, streamRecords, results, cancellationToken)).ConfigureAwait(false);
        return results;
    }

    /// <summary>Releases the <see cref="HttpClient"/> when the publisher created it. Calling it again does nothing.</summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _client.Dispose();
        }

        return ValueTask.CompletedTask;
    }

    private static HttpClient CreateHttpClient() =>
        new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }, disposeHandler: true);

    private static string? RegionFromEnvironment()
    {
        try
        {
            // Environment variables and the shared config profile; not the EC2 instance metadata, which would block the constructor.
            return FallbackRegionFactory.GetRegionEndpoint(includeInstanceMetadata: false)?.SystemName;
        }
#pragma warning disable CA1031 // An unreadable profile means "no region found"; the constructor then says what to set.
        catch (Exception)
#pragma warning restore CA1031
        {
            return null;
        }
    }

    /// <summary>Reads and checks the message's options and builds its record; throws a non-transient <see cref="OutboxException"/> when it cannot be sent.</summary>
    private Record Prepare(OutboxMessage message, int index)
    {
        var options = message.Options;
        var stream = options.GetString(KinesisOptionKeys.StreamName);
        var partitionKey = options.GetString(KinesisOptionKeys.PartitionKey) ?? message.OrderingKey;
        var explicitHashKey = options.GetString(KinesisOptionKeys.ExplicitHashKey);
        var sequenceNumber = options.GetString(KinesisOptionKeys.SequenceNumberForOrdering);

        stream = StreamOf(stream) ?? throw (string.IsNullOrEmpty(stream)
            ? new OutboxException(
                $"Message {message.MessageId} names no Kinesis stream: set its '{KinesisOptionKeys.StreamName}' option, or {nameof(KinesisPublisherOptions)}.{nameof(KinesisPublisherOptions.DefaultStreamName)}.",
                isTransient: false)
            : new OutboxException($"The value of '{KinesisOptionKeys.StreamName}' must be 1 to 128 letters, digits, '_', '.' or '-', but it is '{stream}'.", isTransient: false));

        if (string.IsNullOrEmpty(partitionKey))
        {
            partitionKey = message.MessageId.ToString();
        }
        else if (partitionKey.Length > KinesisNames.MaxPartitionKeyLength)
        {
            throw new OutboxException(
                $"The value of '{KinesisOptionKeys.PartitionKey}' is {partitionKey.Length} characters long; Kinesis accepts at most {KinesisNames.MaxPartitionKeyLength}.",
                isTransient: false);
        }

        if (string.IsNullOrEmpty(explicitHashKey))
        {
            explicitHashKey = null;
        }
        else if (!KinesisNames.IsExplicitHashKey(explicitHashKey))
        {
            throw new OutboxException(
                $"The value of '{KinesisOptionKeys.ExplicitHashKey}' must be a decimal integer from 0 to 2^128 - 1 without leading zeros, but it is '{explicitHashKey}'.",
                isTransient: false);
        }

        if (string.IsNullOrEmpty(sequenceNumber))
        {
            sequenceNumber = null;
        }
        else if (!KinesisNames.IsSequenceNumber(sequenceNumber))
        {
            throw new OutboxException(
                $"The value of '{KinesisOptionKeys.SequenceNumberForOrdering}' must be a Kinesis sequence number (decimal digits), but it is '{sequenceNumber}'.",
                isTransient: false);
        }

        byte[] data;
        if (_options.UseEnvelope)
        {
            data = Envelope(message);
        }
        else
        {
            data = message.Payload;
            if (message.Headers.Count > 0 && Interlocked.Exchange(ref _headersWarned, 1) == 0)
            {
                Log.HeadersDropped(_logger, message.MessageId, message.Headers.Count);
            }
        }

        var size = (long)data.Length + Encoding.UTF8.GetByteCount(partitionKey);
        if (size > KinesisNames.MaxRecordBytes)
        {
            throw new OutboxException(
                $"The Kinesis record of message {message.MessageId} is {size} bytes (data{(_options.UseEnvelope ? " in its envelope" : string.Empty)} plus partition key); Kinesis accepts at most {KinesisNames.MaxRecordBytes} bytes (1 MiB) per record.",
                isTransient: false);
        }

        return new Record(index, message.MessageId, stream, partitionKey, explicitHashKey, sequenceNumber, data, (int)size);
    }

    /// <summary>
    /// The stream that a <see cref="KinesisOptionKeys.StreamName"/> option's value names: the value, or
    /// <see cref="KinesisPublisherOptions.DefaultStreamName"/> when it is empty; <see langword="null"/> when that is not a stream name.
    /// </summary>
    private string? StreamOf(string? value) =>
        string.IsNullOrEmpty(value) ? _options.DefaultStreamName : KinesisNames.IsStreamName(value) ? value : null;

    /// <summary>
    /// The record's data as a JSON envelope: <c>{"messageId": "…", "createdAt": "…", "headers": {…}, "payload": "base64"}</c>;
    /// <c>createdAt</c> and <c>headers</c> are left out when the message has none.
    /// </summary>
    private static byte[] Envelope(OutboxMessage message)
    {
        string? headers;
        try
        {
            headers = message.Headers.ToJson();
        }
        catch (ArgumentException ex)
        {
            throw new OutboxException($"The headers of message {message.MessageId} cannot be written to its Kinesis envelope: {ex.Message}", isTransient: false, ex);
        }

        var buffer = new ArrayBufferWriter<byte>((message.Payload.Length / 3 * 4) + (headers?.Length ?? 0) + 128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("messageId", message.MessageId);
            if (message.CreatedAt != default)
            {
                writer.WriteString("createdAt", message.CreatedAt);
            }

            if (headers is not null)
            {
                writer.WritePropertyName("headers");
                writer.WriteRawValue(headers, skipInputValidation: true);
            }

            writer.WriteBase64String("payload", message.Payload);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private async Task<OutboxException?> PutRecordAsync(Record record, CancellationToken cancellationToken)
    {
        var request = new PutRecordRequest
        {
            StreamName = record.Stream,
            Data = record.Data,
            PartitionKey = record.PartitionKey,
            ExplicitHashKey = record.ExplicitHashKey,
            SequenceNumberForOrdering = record.SequenceNumberForOrdering,
        };

        try
        {
            await _client.InvokeAsync("PutRecord", request, KinesisJsonContext.Default.PutRecordRequest, KinesisJsonContext.Default.PutRecordResponse, cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (KinesisServiceException ex)
        {
            var failure = RequestFailure(ex, record.Stream, $"message {record.MessageId}");
            Log.RequestFailed(_logger, failure, ex.Operation, 1, record.Stream);
            return failure;
        }
    }

    /// <summary>Puts one stream's records of a batch, in order, and writes each record's result into <paramref name="results"/>.</summary>
    private async Task PutStreamAsync(string stream, IReadOnlyList<Record> records, Exception?[] results, CancellationToken cancellationToken)
    {
        var splitter = new OrderedBatchSplitter(KinesisNames.MaxRecordsPerRequest, KinesisNames.MaxRequestBytes);
        var requests = 0;
        var failed = 0;

        // PutRecords has no SequenceNumberForOrdering: such a record is sent alone, with PutRecord, after what came before it.
        foreach (var request in splitter.Split(records, r => r.Size, sendAlone: r => r.SequenceNumberForOrdering is not null))
        {
            var toSend = splitter.FilterHeldBack(request, r => r.PartitionKey, record =>
            {
                results[record.Index] = new OutboxException(
                    $"Message {record.MessageId} was not sent to Kinesis stream '{record.Stream}': an earlier message of the batch with the same partition key '{record.PartitionKey}' failed, and this one must not overtake it. It will be retried.",
                    isTransient: true);
                failed++;
            });
            if (toSend.Count == 0)
            {
                continue;
            }

            requests++;
            if (toSend is [{ SequenceNumberForOrdering: not null } record])
            {
                var failure = await PutRecordAsync(record, cancellationToken).ConfigureAwait(false);
                results[record.Index] = failure;
                if (failure is not null)
                {
                    failed++;
                    splitter.MarkFailed(record.PartitionKey);
                }
            }
            else
            {
                failed += await PutRecordsAsync(stream, toSend, results, splitter, cancellationToken).ConfigureAwait(false);
            }
        }

        Log.StreamBatchPut(_logger, records.Count, stream, requests, failed);
    }

    /// <summary>Sends one <c>PutRecords</c> request and writes each record's result into <paramref name="results"/>; returns how many failed.</summary>
    private async Task<int> PutRecordsAsync(string stream, IReadOnlyList<Record> chunk, Exception?[] results, OrderedBatchSplitter splitter, CancellationToken cancellationToken)
    {
        var entries = new PutRecordsRequestEntry[chunk.Count];
        for (var i = 0; i < chunk.Count; i++)
        {
            entries[i] = new PutRecordsRequestEntry { Data = chunk[i].Data, PartitionKey = chunk[i].PartitionKey, ExplicitHashKey = chunk[i].ExplicitHashKey };
        }

        PutRecordsResponse? response;
        try
        {
            response = await _client.InvokeAsync(
                "PutRecords",
                new PutRecordsRequest { StreamName = stream, Records = entries },
                KinesisJsonContext.Default.PutRecordsRequest,
                KinesisJsonContext.Default.PutRecordsResponse,
                cancellationToken).ConfigureAwait(false);
        }
        catch (KinesisServiceException ex)
        {
            var failure = RequestFailure(ex, stream, $"{chunk.Count} message(s)");
            Log.RequestFailed(_logger, failure, ex.Operation, chunk.Count, stream);
            FailAll(failure);
            return chunk.Count;
        }

        if (response?.Records is not { } outcomes || outcomes.Count != chunk.Count)
        {
            FailAll(new OutboxException(
                $"Kinesis answered a PutRecords request of {chunk.Count} record(s) for stream '{stream}' with {response?.Records?.Count ?? 0} result(s): the outcome of each record is unknown (Kinesis may have stored it); they will be retried.",
                isTransient: true)
            {
                IsOutcomeUnknown = true,
            });
            return chunk.Count;
        }

        var failed = 0;
        for (var i = 0; i < chunk.Count; i++)
        {
            var record = chunk[i];
            var outcome = outcomes[i];
            if (string.IsNullOrEmpty(outcome.ErrorCode))
            {
                results[record.Index] = null;
                continue;
            }

            failed++;
            splitter.MarkFailed(record.PartitionKey);
            Log.RecordFailed(_logger, record.MessageId, stream, outcome.ErrorCode, outcome.ErrorMessage);
            var transient = KinesisErrors.IsTransient(outcome.ErrorCode, httpStatus: null);
            results[record.Index] = new OutboxException(
                $"Kinesis did not accept message {record.MessageId} in stream '{stream}': {outcome.ErrorCode}{(string.IsNullOrEmpty(outcome.ErrorMessage) ? string.Empty : $": {outcome.ErrorMessage}")}.{(transient ? " It will be retried." : string.Empty)}",
                transient);
        }

        return failed;

        void FailAll(OutboxException failure)
        {
            foreach (var record in chunk)
            {
                results[record.Index] = failure;
                splitter.MarkFailed(record.PartitionKey);
            }
        }
    }

    private static OutboxException RequestFailure(KinesisServiceException ex, string stream, string what)
    {
        if (ex.ErrorType == "ResourceNotFoundException")
        {
            return new OutboxException(
                $"The Kinesis stream '{stream}' does not exist or is not active, so {what} could not be put in it. Create the stream, or fix the '{KinesisOptionKeys.StreamName}' option or {nameof(KinesisPublisherOptions)}.{nameof(KinesisPublisherOptions.DefaultStreamName)}. ({ex.Message})",
                isTransient: false,
                ex);
        }

        return new OutboxException(
            $"Putting {what} in Kinesis stream '{stream}' failed: {ex.Message}{(ex.IsTransient ? " It will be retried." : string.Empty)}",
            ex.IsTransient,
            ex)
        {
            IsOutcomeUnknown = ex.IsOutcomeUnknown,
        };
    }

    /// <summary>A message's record, checked and ready to send.</summary>
    private sealed record Record(
        int Index,
        Guid MessageId,
        string Stream,
        string PartitionKey,
        string? ExplicitHashKey,
        string? SequenceNumberForOrdering,
        byte[] Data,
        int Size);
}
