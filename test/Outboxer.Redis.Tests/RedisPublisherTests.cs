using System.Text;
using Outboxer.Providers;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using StackExchange.Redis;
using Xunit;

namespace Outboxer.Redis.Tests;

/// <summary>
/// The publisher conformance suite and the Redis-specific behaviour, against a real Redis. Each test appends to a stream of its own
/// (and deduplication keys of its own), which it deletes afterwards.
/// </summary>
public sealed class RedisPublisherTests : OutboxPublisherConformanceTests
{
    private const string DedupPrefix = "outboxer-test:dedup:";

    private readonly string _stream = UniqueKey("orders");
    private readonly List<string> _keysToDelete = [];
    private ConnectionMultiplexer? _connection;
    private RedisValue _lastRead = "-";

    private ConnectionMultiplexer Connection => _connection ?? throw new InvalidOperationException("Not initialized.");

    private IDatabase Db => Connection.GetDatabase();

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        _connection = await RedisServer.ConnectAsync();
        _keysToDelete.Add(_stream);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (_connection is not null)
        {
            var db = _connection.GetDatabase();
            var server = _connection.GetServer(_connection.GetEndPoints()[0]);
            foreach (var key in _keysToDelete)
            {
                await db.KeyDeleteAsync(key);
                await foreach (var dedupKey in server.KeysAsync(pattern: $"{DedupPrefix}{{{RedisPublisherHashTag(key)}}}:*"))
                {
                    await db.KeyDeleteAsync(dedupKey);
                }
            }

            await _connection.DisposeAsync();
        }
    }

    protected override Task<IOutboxPublisher> CreatePublisherAsync() => Task.FromResult<IOutboxPublisher>(NewRedisPublisher());

    protected override int? BrokerPort => ConfigurationOptions.Parse(RedisServer.Url).EndPoints[0] switch
    {
        System.Net.IPEndPoint ip => ip.Port,
        System.Net.DnsEndPoint dns => dns.Port,
        _ => null,
    };

    protected override async Task<IOutboxPublisher> CreatePublisherAsync(int port) =>
        await RedisPublisher.ConnectAsync($"127.0.0.1:{port}", new RedisPublisherOptions { DeduplicationKeyPrefix = DedupPrefix }, cancellationToken: Ct);

    protected override void Route(OutboxMessage message) => message.Options[RedisOptionKeys.Stream] = _stream;

    protected override string? ExpectedDestinationName => _stream;

    protected override async Task<IReadOnlyList<ReceivedMessage>> ReceiveAsync(int count, CancellationToken cancellationToken)
    {
        var received = new List<ReceivedMessage>();
        while (true)
        {
            var entries = await Db.StreamRangeAsync(_stream, minId: _lastRead == "-" ? "-" : "(" + _lastRead);
            foreach (var entry in entries)
            {
                _lastRead = entry.Id;
                received.Add(ToReceived(entry));
            }

            if (received.Count >= count || cancellationToken.IsCancellationRequested)
            {
                return received;
            }

            try
            {
                await Task.Delay(20, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    [Fact]
    public void The_option_keys_are_documented_strings()
    {
        Assert.Equal("stream", RedisOptionKeys.Stream);
        Assert.Equal("max_length", RedisOptionKeys.MaxLength);
        Assert.Equal("min_id", RedisOptionKeys.MinId);
        Assert.Equal("approximate_trim", RedisOptionKeys.ApproximateTrim);
    }

    [Fact]
    public void The_default_options_deduplicate_for_ten_minutes()
    {
        var options = new RedisPublisherOptions();
        Assert.Null(options.DefaultStream);
        Assert.Equal(TimeSpan.FromMinutes(10), options.DeduplicationWindow);
        Assert.Equal("outboxer:dedup:", options.DeduplicationKeyPrefix);
        Assert.Equal(536_870_912, options.MaxMessageSize);
    }

    public static TheoryData<Action<RedisPublisherOptions>, string, string> InvalidOptions => new()
    {
        { o => o.DefaultStream = "", "RedisPublisherOptions.DefaultStream", "''" },
        { o => o.DeduplicationWindow = TimeSpan.FromSeconds(-1), "RedisPublisherOptions.DeduplicationWindow", "-00:00:01" },
        { o => o.DeduplicationWindow = TimeSpan.FromTicks(1), "RedisPublisherOptions.DeduplicationWindow", "00:00:00.0000001" },
        { o => o.DeduplicationKeyPrefix = "", "RedisPublisherOptions.DeduplicationKeyPrefix", "''" },
        { o => o.DeduplicationKeyPrefix = "dedup:{x}:", "RedisPublisherOptions.DeduplicationKeyPrefix", "'dedup:{x}:'" },
        { o => o.MaxMessageSize = 100, "RedisPublisherOptions.MaxMessageSize", "100" },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void Invalid_publisher_options_are_rejected_naming_the_option_and_value(Action<RedisPublisherOptions> change, string name, string value)
    {
        var options = new RedisPublisherOptions();
        change(options);

        var ex = Assert.Throws<ArgumentException>(() => new RedisPublisher(Connection, options));

        Assert.Equal(name, ex.ParamName);
        Assert.Contains(value, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_entry_has_the_documented_fields_in_order_with_payload_bytes_and_headers()
    {
        var publisher = NewRedisPublisher();
        var payload = new byte[] { 0, 255, 1, 254, 10, 13 };
        var message = new OutboxMessage(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = new DateTimeOffset(2026, 12, 2, 1, 2, 3, TimeSpan.Zero), OrderingKey = "order-42" };
        Route(message);
        message.Headers["tenant"] = "acme";
        message.Headers["attempt"] = 3L;
        message.Headers["ratio"] = 0.25;
        message.Headers["urgent"] = true;
        message.Headers["nothing"] = null;
        message.Headers["tags"] = new List<object?> { "a", 1L };

        await publisher.PublishAsync(message, Ct);

        var entry = Assert.Single(await Db.StreamRangeAsync(_stream));
        Assert.Equal(
            ["message-id", "payload", "created-at", "ordering-key", "h:tenant", "h:attempt", "h:ratio", "h:urgent", "h:nothing", "h:tags"],
            entry.Values.Select(v => v.Name.ToString()));
        var fields = entry.Values.ToDictionary(v => v.Name.ToString(), v => v.Value);
        Assert.Equal(message.MessageId.ToString(), fields["message-id"].ToString());
        Assert.Equal(payload, (byte[])fields["payload"]!);
        Assert.Equal("2026-12-02T01:02:03.0000000+00:00", fields["created-at"].ToString());
        Assert.Equal("order-42", fields["ordering-key"].ToString());
        Assert.Equal("acme", fields["h:tenant"].ToString());
        Assert.Equal("3", fields["h:attempt"].ToString());
        Assert.Equal("0.25", fields["h:ratio"].ToString());
        Assert.Equal("true", fields["h:urgent"].ToString());
        Assert.Equal("", fields["h:nothing"].ToString());
        Assert.Equal("[\"a\",1]", fields["h:tags"].ToString());
    }

    [Fact]
    public async Task The_same_message_published_twice_within_the_window_is_appended_once()
    {
        var publisher = NewRedisPublisher();
        var message = NewRoutedMessage("once");

        await publisher.PublishAsync(message, Ct);
        await publisher.PublishAsync(message, Ct);
        var second = NewRedisPublisher();
        await second.PublishAsync(message, Ct);

        var entry = Assert.Single(await Db.StreamRangeAsync(_stream));
        var dedupKey = $"{DedupPrefix}{{{_stream}}}:{message.MessageId}";
        Assert.Equal(entry.Id.ToString(), (await Db.StringGetAsync(dedupKey)).ToString());
        var ttl = await Db.KeyTimeToLiveAsync(dedupKey);
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value, TimeSpan.FromMinutes(9), TimeSpan.FromMinutes(10));
    }

    [Fact]
    public async Task The_same_message_twice_in_one_batch_is_appended_once()
    {
        var publisher = (IOutboxBatchPublisher)NewRedisPublisher();
        var message = NewRoutedMessage("once");
        var other = NewRoutedMessage("other");

        var results = await publisher.PublishBatchAsync([message, other, message], Ct);

        Assert.All(results, Assert.Null);
        var entries = await Db.StreamRangeAsync(_stream);
        Assert.Equal([message.MessageId.ToString(), other.MessageId.ToString()], entries.Select(e => e[RedisEntryFields.MessageId].ToString()));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task With_deduplication_off_the_same_message_published_twice_is_appended_twice_and_no_key_is_written(bool zero)
    {
        var publisher = NewRedisPublisher(o => o.DeduplicationWindow = zero ? TimeSpan.Zero : null);
        var message = NewRoutedMessage("twice");

        await publisher.PublishAsync(message, Ct);
        await publisher.PublishAsync(message, Ct);

        Assert.Equal(2, (await Db.StreamRangeAsync(_stream)).Length);
        Assert.False(await Db.KeyExistsAsync($"{DedupPrefix}{{{_stream}}}:{message.MessageId}"));
    }

    [Fact]
    public async Task After_the_window_the_same_message_is_appended_again()
    {
        var publisher = NewRedisPublisher(o => o.DeduplicationWindow = TimeSpan.FromMilliseconds(200));
        var message = NewRoutedMessage("again");

        await publisher.PublishAsync(message, Ct);
        await Task.Delay(500, Ct);
        await publisher.PublishAsync(message, Ct);

        Assert.Equal(2, (await Db.StreamRangeAsync(_stream)).Length);
    }

    [Fact]
    public async Task The_deduplication_key_lives_in_the_hash_slot_of_a_stream_with_a_hash_tag()
    {
        var stream = UniqueKey("{tenant-7}.orders");
        _keysToDelete.Add(stream);
        var publisher = NewRedisPublisher();
        var message = NewMessage("tagged");
        message.Options[RedisOptionKeys.Stream] = stream;

        await publisher.PublishAsync(message, Ct);

        Assert.Single(await Db.StreamRangeAsync(stream));
        var key = $"{DedupPrefix}{{tenant-7}}:{message.MessageId}";
        Assert.True(await Db.KeyExistsAsync(key));
        await Db.KeyDeleteAsync(key);
    }

    [Fact]
    public async Task Max_length_trims_exactly_when_approximate_trim_is_off_and_roughly_by_default()
    {
        var publisher = NewRedisPublisher();
        for (var i = 0; i < 20; i++)
        {
            var message = NewRoutedMessage($"m{i}");
            message.Options[RedisOptionKeys.MaxLength] = 5;
            message.Options[RedisOptionKeys.ApproximateTrim] = "false";
            await publisher.PublishAsync(message, Ct);
        }

        var entries = await Db.StreamRangeAsync(_stream);
        Assert.Equal(["m15", "m16", "m17", "m18", "m19"], entries.Select(e => Encoding.UTF8.GetString((byte[])e[RedisEntryFields.Payload]!)));

        var approximate = NewRoutedMessage("approximate");
        approximate.Options[RedisOptionKeys.MaxLength] = "3";
        await publisher.PublishAsync(approximate, Ct);

        // Approximate trimming removes whole macro nodes only (up to 100 entries each by default), so this small stream is left alone.
        Assert.Equal(6, await Db.StreamLengthAsync(_stream));
    }

    [Fact]
    public async Task Min_id_trims_the_entries_older_than_the_id()
    {
        var publisher = NewRedisPublisher();
        for (var i = 0; i < 3; i++)
        {
            await publisher.PublishAsync(NewRoutedMessage($"m{i}"), Ct);
        }

        var third = (await Db.StreamRangeAsync(_stream))[2].Id.ToString();
        var message = NewRoutedMessage("m3");
        message.Options[RedisOptionKeys.MinId] = third;
        message.Options[RedisOptionKeys.ApproximateTrim] = false;
        await publisher.PublishAsync(message, Ct);

        var entries = await Db.StreamRangeAsync(_stream);
        Assert.Equal(["m2", "m3"], entries.Select(e => Encoding.UTF8.GetString((byte[])e[RedisEntryFields.Payload]!)));
    }

    public static TheoryData<string, object, string> InvalidMessageOptions => new()
    {
        { RedisOptionKeys.MaxLength, -1L, "-1" },
        { RedisOptionKeys.MaxLength, "many", "'many'" },
        { RedisOptionKeys.MinId, "yesterday", "'yesterday'" },
        { RedisOptionKeys.MinId, "12-x", "'12-x'" },
        { RedisOptionKeys.ApproximateTrim, "maybe", "'maybe'" },
        { RedisOptionKeys.Stream, "", "''" },
    };

    [Theory]
    [MemberData(nameof(InvalidMessageOptions))]
    public async Task An_invalid_message_option_fails_without_retry_naming_the_key_and_value_and_nothing_is_appended(string key, object value, string shown)
    {
        var publisher = NewRedisPublisher();
        var message = NewRoutedMessage("bad");
        message.Options[key] = value;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains($"'{key}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains(shown, ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, await Db.StreamLengthAsync(_stream));
    }

    [Fact]
    public async Task Max_length_and_min_id_together_fail_naming_both()
    {
        var publisher = NewRedisPublisher();
        var message = NewRoutedMessage("bad");
        message.Options[RedisOptionKeys.MaxLength] = 10;
        message.Options[RedisOptionKeys.MinId] = "0-1";

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains("'max_length'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("'min_id'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_message_without_a_stream_goes_to_the_default_stream_or_fails_naming_the_option()
    {
        var withDefault = NewRedisPublisher(o => o.DefaultStream = _stream);
        var withoutDefault = NewRedisPublisher();
        var message = NewMessage("default");

        Assert.Equal(_stream, withDefault.GetDestinationName(message));
        Assert.Null(withoutDefault.GetDestinationName(message));
        await withDefault.PublishAsync(message, Ct);
        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await withoutDefault.PublishAsync(NewMessage("nowhere"), Ct));

        Assert.Single(await Db.StreamRangeAsync(_stream));
        Assert.False(ex.IsTransient);
        Assert.Contains("'stream'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("DefaultStream", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_key_that_is_not_a_stream_fails_without_retry_naming_the_key_alone_and_in_a_batch()
    {
        var wrongType = UniqueKey("a-string");
        _keysToDelete.Add(wrongType);
        await Db.StringSetAsync(wrongType, "not a stream");
        var publisher = NewRedisPublisher();
        var message = NewMessage("wrong type");
        message.Options[RedisOptionKeys.Stream] = wrongType;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains($"'{wrongType}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("WRONGTYPE", ex.Message, StringComparison.Ordinal);

        var good = NewRoutedMessage("good");
        var results = await ((IOutboxBatchPublisher)publisher).PublishBatchAsync([message, good], Ct);
        Assert.False(Assert.IsType<OutboxException>(results[0]).IsTransient);
        Assert.Contains($"'{wrongType}'", results[0]!.Message, StringComparison.Ordinal);
        Assert.Null(results[1]);
        Assert.Single(await Db.StreamRangeAsync(_stream));
    }

    [Fact]
    public async Task A_message_larger_than_the_limit_fails_without_retry_and_nothing_is_sent()
    {
        var publisher = NewRedisPublisher(o => o.MaxMessageSize = 1024);
        var message = new OutboxMessage(new byte[2000]) { MessageId = Guid.CreateVersion7() };
        Route(message);

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains("MaxMessageSize (1024)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("proto-max-bulk-len", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, await Db.StreamLengthAsync(_stream));
    }

    [Fact]
    public async Task A_batch_keeps_each_ordering_keys_order_in_each_stream()
    {
        var otherStream = UniqueKey("invoices");
        _keysToDelete.Add(otherStream);
        var publisher = (IOutboxBatchPublisher)NewRedisPublisher();
        var messages = new List<OutboxMessage>();
        for (var i = 0; i < 450; i++)
        {
            var message = NewMessage($"{i}");
            message.OrderingKey = $"key-{i % 3}";
            message.Options[RedisOptionKeys.Stream] = i % 2 == 0 ? _stream : otherStream;
            messages.Add(message);
        }

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.All(results, Assert.Null);
        foreach (var stream in new[] { _stream, otherStream })
        {
            var read = (await Db.StreamRangeAsync(stream)).Select(e => int.Parse(Encoding.UTF8.GetString((byte[])e[RedisEntryFields.Payload]!), System.Globalization.CultureInfo.InvariantCulture)).ToList();
            Assert.Equal(225, read.Count);
            Assert.Equal(read.Order(), read);
        }
    }

    [Fact]
    public async Task A_server_out_of_memory_fails_transiently_and_the_message_goes_through_once_memory_is_back()
    {
        var publisher = NewRedisPublisher();
        var message = NewRoutedMessage("after oom");
        OutboxException ex;

        // Only this test class uses this Redis, and its tests run one at a time.
        await Db.ExecuteAsync("CONFIG", "SET", "maxmemory", "1");
        try
        {
            ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));
        }
        finally
        {
            await Db.ExecuteAsync("CONFIG", "SET", "maxmemory", "0");
        }

        Assert.True(ex.IsTransient);
        Assert.Contains("OOM", ex.Message, StringComparison.Ordinal);
        await publisher.PublishAsync(message, Ct);
        Assert.Single(await Db.StreamRangeAsync(_stream));
    }

    [Fact]
    public async Task An_unreachable_server_fails_transiently()
    {
        await using var publisher = await RedisPublisher.ConnectAsync("127.0.0.1:1,connectTimeout=300,asyncTimeout=500", cancellationToken: Ct);

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(NewRoutedMessage("nowhere"), Ct));

        Assert.True(ex.IsTransient);
        Assert.Contains($"'{_stream}'", ex.Message, StringComparison.Ordinal);
    }

    private RedisPublisher NewRedisPublisher(Action<RedisPublisherOptions>? configure = null)
    {
        var options = new RedisPublisherOptions { DeduplicationKeyPrefix = DedupPrefix };
        configure?.Invoke(options);
        return new RedisPublisher(Connection, options);
    }

    private static string UniqueKey(string name) => $"outboxer-test:{name}:{Guid.NewGuid():N}";

    /// <summary>The hash tag Redis Cluster hashes, as the publisher computes it for the deduplication keys.</summary>
    private static string RedisPublisherHashTag(string key)
    {
        var open = key.IndexOf('{', StringComparison.Ordinal);
        if (open >= 0)
        {
            var close = key.IndexOf('}', open + 1);
            if (close > open + 1)
            {
                return key[(open + 1)..close];
            }
        }

        return key;
    }

    private static ReceivedMessage ToReceived(StreamEntry entry)
    {
        var headers = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var field in entry.Values)
        {
            var name = field.Name.ToString();
            if (name.StartsWith("h:", StringComparison.Ordinal))
            {
                headers[name[2..]] = field.Value.ToString();
            }
        }

        return new ReceivedMessage((byte[])entry[RedisEntryFields.Payload]!, entry[RedisEntryFields.MessageId].ToString(), headers);
    }

    /// <summary>The field names the README documents.</summary>
    private static class RedisEntryFields
    {
        public const string MessageId = "message-id";
        public const string Payload = "payload";
    }
}
