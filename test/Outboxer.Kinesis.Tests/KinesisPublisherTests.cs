using System.Numerics;
using System.Text;
using Xunit;

namespace Outboxer.Kinesis.Tests;

/// <summary>
/// The publisher conformance suite and the Kinesis-specific behaviour against kinesalite, with raw records (the default): the record's
/// data is the payload, and the message id travels as the default partition key, which is where a consumer finds it.
/// </summary>
public sealed class KinesisPublisherTests : KinesisConformanceTestsBase
{
    private static readonly IReadOnlyDictionary<string, object?> NoHeaders = new Dictionary<string, object?>();

    protected override bool UseEnvelope => false;

    protected override bool SupportsHeaders => false;

    internal override ReceivedMessage ToReceivedMessage(KinesisAdmin.ReceivedRecord record) => new(record.Data, record.PartitionKey, NoHeaders);

    [Fact]
    public async Task The_default_partition_key_is_the_message_id_not_a_timestamp()
    {
        var publisher = NewKinesisPublisher();
        var single = NewRoutedMessage("single");
        var batch = Enumerable.Range(0, 3).Select(i => NewRoutedMessage($"batch {i}")).ToList();

        await publisher.PublishAsync(single, Ct);
        Assert.All(await publisher.PublishBatchAsync(batch, Ct), Assert.Null);

        var received = await ReadExactlyAsync(4);
        Assert.Equal([single.MessageId.ToString(), .. batch.Select(m => m.MessageId.ToString())], received.Select(r => r.PartitionKey));
        Assert.All(received, r => Assert.False(DateTimeOffset.TryParse(r.PartitionKey, System.Globalization.CultureInfo.InvariantCulture, out _), $"'{r.PartitionKey}' looks like a time."));
    }

    [Fact]
    public async Task The_partition_key_option_is_honoured_by_PutRecord_and_PutRecords()
    {
        var publisher = NewKinesisPublisher();
        var single = NewRoutedMessage("single");
        single.Options[KinesisOptionKeys.PartitionKey] = "order-42";
        var batched = NewRoutedMessage("batched");
        batched.Options[KinesisOptionKeys.PartitionKey] = "customer-7";

        await publisher.PublishAsync(single, Ct);
        Assert.All(await publisher.PublishBatchAsync([batched], Ct), Assert.Null);

        Assert.Equal(["order-42", "customer-7"], (await ReadExactlyAsync(2)).Select(r => r.PartitionKey));
    }

    [Fact]
    public async Task An_explicit_hash_key_routes_to_the_expected_shard_of_a_two_shard_stream()
    {
        var stream = KinesisServer.UniqueStreamName("two-shards");
        await CreateStreamAsync(stream, shardCount: 2);
        var shards = await Admin.ListShardsAsync(stream);
        Assert.Equal(2, shards.Count);
        var publisher = NewKinesisPublisher();

        // The same partition key for all four: only the explicit hash key can send them to different shards.
        OutboxMessage ToShard(Shard shard, string payload, bool top)
        {
            var message = NewMessage(payload);
            message.Options[KinesisOptionKeys.StreamName] = stream;
            message.Options[KinesisOptionKeys.PartitionKey] = "same-key";
            message.Options[KinesisOptionKeys.ExplicitHashKey] = top ? shard.HashKeyRange.EndingHashKey : shard.HashKeyRange.StartingHashKey;
            return message;
        }

        var expected = new Dictionary<string, string>();
        for (var i = 0; i < shards.Count; i++)
        {
            var single = ToShard(shards[i], $"single to shard {i}", top: false);
            await publisher.PublishAsync(single, Ct);
            var batched = ToShard(shards[i], $"batched to shard {i}", top: true);
            Assert.All(await publisher.PublishBatchAsync([batched], Ct), Assert.Null);
            expected[Encoding.UTF8.GetString(single.Payload)] = shards[i].ShardId;
            expected[Encoding.UTF8.GetString(batched.Payload)] = shards[i].ShardId;
        }

        var received = await ReadExactlyAsync(Admin.Read(stream), 4);
        Assert.Equal(expected.OrderBy(e => e.Key), received.ToDictionary(r => Encoding.UTF8.GetString(r.Data), r => r.ShardId).OrderBy(e => e.Key));
    }

    [Fact]
    public async Task Records_with_the_same_partition_key_arrive_in_publish_order_within_a_batch()
    {
        var stream = KinesisServer.UniqueStreamName("ordering");
        await CreateStreamAsync(stream, shardCount: 2);
        var publisher = NewKinesisPublisher();
        string[] keys = ["order-1", "order-2", "order-3", "order-4", "order-5"];
        var messages = Enumerable.Range(0, 700).Select(i =>
        {
            var message = NewMessage($"{keys[i % keys.Length]} #{i}");
            message.Options[KinesisOptionKeys.StreamName] = stream;
            message.Options[KinesisOptionKeys.PartitionKey] = keys[i % keys.Length];
            return message;
        }).ToList();

        Assert.All(await publisher.PublishBatchAsync(messages, Ct), Assert.Null);

        var received = await ReadExactlyAsync(Admin.Read(stream), messages.Count);
        Assert.True(received.Select(r => r.ShardId).Distinct().Count() == 2, "The keys should spread over both shards.");
        foreach (var key in keys)
        {
            Assert.Equal(
                messages.Where(m => (string)m.Options[KinesisOptionKeys.PartitionKey]! == key).Select(m => Encoding.UTF8.GetString(m.Payload)),
                received.Where(r => r.PartitionKey == key).Select(r => Encoding.UTF8.GetString(r.Data)));
        }
    }

    [Fact]
    public async Task A_batch_of_600_messages_is_split_into_two_PutRecords_calls_and_all_arrive()
    {
        using var handler = new RecordingHandler();
        using var http = new HttpClient(handler);
        var publisher = NewKinesisPublisher(httpClient: http);
        var messages = Enumerable.Range(0, 600).Select(i => NewRoutedMessage($"m{i}")).ToList();

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.Equal(600, results.Count);
        Assert.All(results, Assert.Null);
        Assert.Equal(2, handler.Count("PutRecords"));
        Assert.Equal([500, 100], handler.Requests.Where(r => r.Operation == "PutRecords").Select(r => r.Json.GetProperty("Records").GetArrayLength()));
        var received = await ReadExactlyAsync(600);
        Assert.Equal(messages.Select(m => m.MessageId.ToString()), received.Select(r => r.PartitionKey));
    }

    [Fact]
    public async Task Records_over_5_MiB_in_total_are_split_by_size_and_all_arrive()
    {
        using var handler = new RecordingHandler();
        using var http = new HttpClient(handler);
        var publisher = NewKinesisPublisher(httpClient: http);
        var messages = Enumerable.Range(0, 8).Select(i =>
        {
            var message = new OutboxMessage(Enumerable.Repeat((byte)('a' + i), 1_000_000).ToArray()) { MessageId = Guid.CreateVersion7() };
            Route(message);
            return message;
        }).ToList();

        Assert.All(await publisher.PublishBatchAsync(messages, Ct), Assert.Null);

        // 5 records of 1,000,000 bytes plus their 36-character keys fit in 5 MiB (5,242,880 bytes); a sixth does not.
        Assert.Equal([5, 3], handler.Requests.Where(r => r.Operation == "PutRecords").Select(r => r.Json.GetProperty("Records").GetArrayLength()));
        var received = await ReadExactlyAsync(8);
        Assert.Equal(messages.Select(m => m.Payload), received.Select(r => r.Data));
    }

    [Fact]
    public async Task An_oversized_record_fails_without_retry_and_the_rest_of_its_batch_arrives()
    {
        var publisher = NewKinesisPublisher();
        var before = NewRoutedMessage("before");
        var oversized = new OutboxMessage(new byte[(1024 * 1024) + 1]) { MessageId = Guid.CreateVersion7() };
        Route(oversized);
        var after = NewRoutedMessage("after");

        var results = await publisher.PublishBatchAsync([before, oversized, after], Ct);

        var failure = Assert.IsType<OutboxException>(results[1]);
        Assert.False(failure.IsTransient);
        Assert.Contains(oversized.MessageId.ToString(), failure.Message, StringComparison.Ordinal);
        Assert.Contains("1 MiB", failure.Message, StringComparison.Ordinal);
        Assert.Null(results[0]);
        Assert.Null(results[2]);
        Assert.Equal([before.MessageId.ToString(), after.MessageId.ToString()], (await ReadExactlyAsync(2)).Select(r => r.PartitionKey));

        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(oversized, Ct));
        Assert.False(single.IsTransient);
    }

    [Fact]
    public async Task A_record_of_exactly_1_MiB_with_its_partition_key_is_accepted()
    {
        var publisher = NewKinesisPublisher();
        var message = new OutboxMessage(new byte[(1024 * 1024) - 36]) { MessageId = Guid.CreateVersion7() };
        Route(message);

        await publisher.PublishAsync(message, Ct);

        Assert.Equal(message.Payload.Length, Assert.Single(await ReadExactlyAsync(1)).Data.Length);
    }

    [Fact]
    public async Task An_unknown_stream_fails_without_retry_naming_it()
    {
        var publisher = NewKinesisPublisher();
        var missing = KinesisServer.UniqueStreamName("missing");
        OutboxMessage ToMissing(string payload)
        {
            var message = NewMessage(payload);
            message.Options[KinesisOptionKeys.StreamName] = missing;
            return message;
        }

        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(ToMissing("single"), Ct));
        var results = await publisher.PublishBatchAsync([ToMissing("batch 1"), NewRoutedMessage("to the real stream"), ToMissing("batch 2")], Ct);

        Assert.False(single.IsTransient);
        Assert.Contains($"'{missing}'", single.Message, StringComparison.Ordinal);
        Assert.Null(results[1]);
        foreach (var result in new[] { results[0], results[2] })
        {
            var failure = Assert.IsType<OutboxException>(result);
            Assert.False(failure.IsTransient);
            Assert.Contains($"'{missing}'", failure.Message, StringComparison.Ordinal);
        }

        Assert.Single(await ReadExactlyAsync(1));
    }

    [Fact]
    public async Task Messages_for_two_streams_in_one_batch_each_arrive_in_their_stream()
    {
        var other = KinesisServer.UniqueStreamName("other");
        await CreateStreamAsync(other, shardCount: 1);
        var publisher = NewKinesisPublisher();
        var messages = Enumerable.Range(0, 10).Select(i =>
        {
            var message = NewMessage($"m{i}");
            message.Options[KinesisOptionKeys.StreamName] = i % 2 == 0 ? Stream : other;
            return message;
        }).ToList();

        Assert.All(await publisher.PublishBatchAsync(messages, Ct), Assert.Null);

        Assert.Equal(["m0", "m2", "m4", "m6", "m8"], (await ReadExactlyAsync(5)).Select(r => Encoding.UTF8.GetString(r.Data)));
        Assert.Equal(["m1", "m3", "m5", "m7", "m9"], (await ReadExactlyAsync(Admin.Read(other), 5)).Select(r => Encoding.UTF8.GetString(r.Data)));
    }

    [Fact]
    public async Task A_message_without_a_stream_goes_to_the_default_stream_or_fails_without_retry()
    {
        var withDefault = NewKinesisPublisher(o => o.DefaultStreamName = Stream);
        var withoutDefault = NewKinesisPublisher();
        var message = NewMessage("no stream option");

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await withoutDefault.PublishAsync(message, Ct));
        await withDefault.PublishAsync(message, Ct);

        Assert.False(ex.IsTransient);
        Assert.Contains($"'{KinesisOptionKeys.StreamName}'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(message.MessageId.ToString(), Assert.Single(await ReadExactlyAsync(1)).PartitionKey);
    }

    [Fact]
    public async Task A_sequence_number_for_ordering_is_sent_with_PutRecord_and_is_not_the_partition_key()
    {
        using var handler = new RecordingHandler();
        using var http = new HttpClient(handler);
        var publisher = NewKinesisPublisher(httpClient: http);
        var first = NewRoutedMessage("first");
        first.Options[KinesisOptionKeys.PartitionKey] = "order-42";
        await publisher.PublishAsync(first, Ct);
        var sequenceNumber = Assert.Single(await ReadExactlyAsync(1)).SequenceNumber;

        var batch = new[] { NewRoutedMessage("second"), NewRoutedMessage("third"), NewRoutedMessage("fourth") };
        foreach (var message in batch)
        {
            message.Options[KinesisOptionKeys.PartitionKey] = "order-42";
        }

        batch[1].Options[KinesisOptionKeys.SequenceNumberForOrdering] = sequenceNumber;
        Assert.All(await publisher.PublishBatchAsync(batch, Ct), Assert.Null);

        // The Go outboxer sent the partition key as SequenceNumberForOrdering (both options had the string "partition_key").
        var puts = handler.Requests.Where(r => r.Operation is "PutRecord" or "PutRecords").ToList();
        Assert.Equal(["PutRecord", "PutRecords", "PutRecord", "PutRecords"], puts.Select(r => r.Operation));
        Assert.False(puts[0].Json.TryGetProperty("SequenceNumberForOrdering", out _));
        Assert.Equal(sequenceNumber, puts[2].Json.GetProperty("SequenceNumberForOrdering").GetString());
        Assert.Equal("order-42", puts[2].Json.GetProperty("PartitionKey").GetString());
        Assert.Equal(["second", "third", "fourth"], (await ReadExactlyAsync(3)).Select(r => Encoding.UTF8.GetString(r.Data)));
    }

    [Fact]
    public async Task Headers_are_not_sent_in_raw_records_and_the_payload_is_unchanged()
    {
        var publisher = NewKinesisPublisher();
        var message = NewRoutedMessage("""{"orderId":42}""");
        message.Headers["tenant"] = "acme";

        await publisher.PublishAsync(message, Ct);

        Assert.Equal("""{"orderId":42}""", Encoding.UTF8.GetString(Assert.Single(await ReadExactlyAsync(1)).Data));
    }

    [Fact]
    public async Task The_largest_explicit_hash_key_is_accepted_and_one_past_it_fails_without_retry()
    {
        var publisher = NewKinesisPublisher();
        var largest = NewRoutedMessage("largest");
        largest.Options[KinesisOptionKeys.ExplicitHashKey] = (BigInteger.Pow(2, 128) - 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var tooLarge = NewRoutedMessage("too large");
        tooLarge.Options[KinesisOptionKeys.ExplicitHashKey] = BigInteger.Pow(2, 128).ToString(System.Globalization.CultureInfo.InvariantCulture);

        var results = await publisher.PublishBatchAsync([largest, tooLarge], Ct);

        Assert.Null(results[0]);
        var failure = Assert.IsType<OutboxException>(results[1]);
        Assert.False(failure.IsTransient);
        Assert.Contains($"'{KinesisOptionKeys.ExplicitHashKey}'", failure.Message, StringComparison.Ordinal);
        Assert.Equal(largest.MessageId.ToString(), Assert.Single(await ReadExactlyAsync(1)).PartitionKey);
    }
}
