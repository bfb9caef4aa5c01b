using System.Text.Json.Serialization;
using Amazon.Runtime;
using Outboxer.Kinesis.Internal;
using Xunit;

namespace Outboxer.Kinesis.Tests;

/// <summary>
/// The Kinesis the tests run against: <c>OUTBOXER_KINESIS_URL</c>, or the kinesalite <c>eng/servers.sh</c> starts on 127.0.0.1:4567.
/// kinesalite wants an <c>Authorization</c> and an <c>X-Amz-Date</c> header but does not check the signature, so any credentials do.
/// </summary>
internal static class KinesisServer
{
    public const string Region = "us-east-1";

    public static Uri Url { get; } = new(Environment.GetEnvironmentVariable("OUTBOXER_KINESIS_URL") is { Length: > 0 } url ? url : "http://127.0.0.1:4567");

    public static AWSCredentials Credentials { get; } = new BasicAWSCredentials("AKIDOUTBOXERTESTS", "outboxer-tests-secret-key");

    /// <summary>Publisher settings for the server; no region, so the publisher must find one itself (kinesalite does not care which).</summary>
    public static KinesisPublisherOptions Options(bool useEnvelope = false) =>
        new() { ServiceUrl = Url, Credentials = Credentials, UseEnvelope = useEnvelope };

    public static string UniqueStreamName(string kind) => $"outboxer-test-{kind}-{Guid.NewGuid():N}";

    /// <summary>Fails the test, saying how to start the server, when it does not answer.</summary>
    public static async Task EnsureReachableAsync(KinesisAdmin admin)
    {
        try
        {
            await admin.ListStreamsAsync();
        }
        catch (KinesisServiceException ex) when (ex.StatusCode is null)
        {
            Assert.Fail($"Kinesis (kinesalite) is not reachable at {Url}: {ex.Message}. Start it with `bash eng/servers.sh start kinesalite` from the repository root, or set OUTBOXER_KINESIS_URL.");
        }
    }
}

/// <summary>
/// The calls the tests make besides publishing (create, describe, read, delete streams), through the publisher's own signed client.
/// </summary>
internal sealed class KinesisAdmin : IDisposable
{
    private static readonly TestJsonContext s_json = TestJsonContext.Default;
    private readonly KinesisClient _client = new(new HttpClient(), ownsHttpClient: true, KinesisServer.Url, KinesisServer.Region, KinesisServer.Credentials, TimeProvider.System);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async Task ListStreamsAsync() =>
        await _client.InvokeAsync("ListStreams", new ListStreamsRequest(), s_json.ListStreamsRequest, s_json.ListStreamsResponse, Ct);

    /// <summary>Creates a stream and waits until it is active.</summary>
    public async Task CreateStreamAsync(string stream, int shardCount)
    {
        await _client.InvokeAsync("CreateStream", new CreateStreamRequest(stream, shardCount), s_json.CreateStreamRequest, s_json.EmptyResponse, Ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            var description = await _client.InvokeAsync("DescribeStreamSummary", new StreamRequest(stream), s_json.StreamRequest, s_json.DescribeStreamSummaryResponse, timeout.Token);
            if (description?.StreamDescriptionSummary?.StreamStatus == "ACTIVE")
            {
                return;
            }

            await Task.Delay(20, timeout.Token);
        }
    }

    public async Task DeleteStreamAsync(string stream)
    {
        try
        {
            await _client.InvokeAsync("DeleteStream", new StreamRequest(stream), s_json.StreamRequest, s_json.EmptyResponse, CancellationToken.None);
        }
        catch (KinesisServiceException)
        {
            // Best effort: kinesalite keeps streams in memory only.
        }
    }

    public async Task<IReadOnlyList<Shard>> ListShardsAsync(string stream)
    {
        var response = await _client.InvokeAsync("ListShards", new StreamRequest(stream), s_json.StreamRequest, s_json.ListShardsResponse, Ct);
        return response?.Shards ?? [];
    }

    /// <summary>Reads a stream from its beginning, shard by shard; each call returns what arrived since the previous one.</summary>
    public RecordReader Read(string stream) => new(this, stream);

    internal async Task<string> GetShardIteratorAsync(string stream, string shardId, CancellationToken cancellationToken)
    {
        var response = await _client.InvokeAsync("GetShardIterator", new GetShardIteratorRequest(stream, shardId, "TRIM_HORIZON"), s_json.GetShardIteratorRequest, s_json.GetShardIteratorResponse, cancellationToken);
        return response?.ShardIterator ?? throw new InvalidOperationException($"No shard iterator for {stream}/{shardId}.");
    }

    internal async Task<GetRecordsResponse> GetRecordsAsync(string iterator, CancellationToken cancellationToken) =>
        await _client.InvokeAsync("GetRecords", new GetRecordsRequest(iterator, 10000), s_json.GetRecordsRequest, s_json.GetRecordsResponse, cancellationToken)
        ?? throw new InvalidOperationException("GetRecords returned nothing.");

    public void Dispose() => _client.Dispose();

    /// <summary>A record read back, with the shard it was read from.</summary>
    public sealed record ReceivedRecord(string ShardId, string PartitionKey, string SequenceNumber, byte[] Data);

    /// <summary>Reads every shard of a stream from <c>TRIM_HORIZON</c>, remembering where it stopped.</summary>
    public sealed class RecordReader(KinesisAdmin admin, string stream)
    {
        private Dictionary<string, string>? _iterators;

        /// <summary>
        /// Waits until at least <paramref name="count"/> records arrived since the previous call or <paramref name="cancellationToken"/>
        /// is cancelled, then returns what arrived, shard by shard, each shard in sequence order.
        /// </summary>
        public async Task<IReadOnlyList<ReceivedRecord>> ReadAsync(int count, CancellationToken cancellationToken)
        {
            var received = new List<ReceivedRecord>();
            try
            {
                if (_iterators is null)
                {
                    var iterators = new Dictionary<string, string>(StringComparer.Ordinal);
                    foreach (var shard in await admin.ListShardsAsync(stream))
                    {
                        iterators[shard.ShardId] = await admin.GetShardIteratorAsync(stream, shard.ShardId, cancellationToken);
                    }

                    _iterators = iterators;
                }

                while (true)
                {
                    foreach (var (shardId, iterator) in _iterators.ToList())
                    {
                        var response = await admin.GetRecordsAsync(iterator, cancellationToken);
                        if (response.NextShardIterator is { } next)
                        {
                            _iterators[shardId] = next;
                        }

                        foreach (var record in response.Records ?? [])
                        {
                            received.Add(new ReceivedRecord(shardId, record.PartitionKey, record.SequenceNumber, record.Data));
                        }
                    }

                    if (received.Count >= count)
                    {
                        return received;
                    }

                    await Task.Delay(50, cancellationToken);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return received;
            }
        }
    }
}

internal sealed record ListStreamsRequest;

internal sealed record ListStreamsResponse(List<string>? StreamNames);

internal sealed record CreateStreamRequest(string StreamName, int ShardCount);

internal sealed record StreamRequest(string StreamName);

internal sealed record EmptyResponse;

internal sealed record DescribeStreamSummaryResponse(StreamDescriptionSummary? StreamDescriptionSummary);

internal sealed record StreamDescriptionSummary(string StreamName, string StreamStatus, int OpenShardCount);

internal sealed record ListShardsResponse(List<Shard>? Shards);

internal sealed record Shard(string ShardId, HashKeyRange HashKeyRange);

internal sealed record HashKeyRange(string StartingHashKey, string EndingHashKey);

internal sealed record GetShardIteratorRequest(string StreamName, string ShardId, string ShardIteratorType);

internal sealed record GetShardIteratorResponse(string? ShardIterator);

internal sealed record GetRecordsRequest(string ShardIterator, int Limit);

internal sealed record GetRecordsResponse(List<KinesisRecord>? Records, string? NextShardIterator);

internal sealed record KinesisRecord(string SequenceNumber, string PartitionKey, byte[] Data);

[JsonSerializable(typeof(ListStreamsRequest))]
[JsonSerializable(typeof(ListStreamsResponse))]
[JsonSerializable(typeof(CreateStreamRequest))]
[JsonSerializable(typeof(StreamRequest))]
[JsonSerializable(typeof(EmptyResponse))]
[JsonSerializable(typeof(DescribeStreamSummaryResponse))]
[JsonSerializable(typeof(ListShardsResponse))]
[JsonSerializable(typeof(GetShardIteratorRequest))]
[JsonSerializable(typeof(GetShardIteratorResponse))]
[JsonSerializable(typeof(GetRecordsRequest))]
[JsonSerializable(typeof(GetRecordsResponse))]
internal sealed partial class TestJsonContext : JsonSerializerContext;
