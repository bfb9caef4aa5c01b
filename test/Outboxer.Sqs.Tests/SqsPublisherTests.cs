using System.Globalization;
using System.Net;
using System.Text;
using Amazon.Runtime;
using Amazon.SQS;
using Amazon.SQS.Model;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;
using Outboxer.Sqlite;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Sqs.Tests;

/// <summary>
/// The publisher conformance suite and the SQS-specific behaviour, against the fauxqs emulator. Each test gets a standard queue of its
/// own (routed by URL, as the Go seed required), deleted at the end, and creates any further queue it needs the same way.
/// </summary>
public sealed class SqsPublisherTests : OutboxPublisherConformanceTests
{
    private const string MessageIdAttribute = "message-id";
    private const string BodyEncodingAttribute = "outboxer-body-encoding";

    private readonly List<string> _queuesToDelete = [];
    private readonly List<SqsPublisher> _publishers = [];
    private AmazonSQSClient? _client;
    private string? _queueUrl;

    private AmazonSQSClient Client => _client ?? throw new InvalidOperationException("Not initialized.");

    private string QueueUrl => _queueUrl ?? throw new InvalidOperationException("Not initialized.");

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        _client = await SqsServer.ConnectAsync();
        _queueUrl = await CreateQueueAsync(UniqueName());
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var publisher in _publishers)
        {
            await publisher.DisposeAsync();
        }

        if (_client is not null)
        {
            foreach (var queueUrl in _queuesToDelete)
            {
                try
                {
                    await _client.DeleteQueueAsync(queueUrl);
                }
                catch (QueueDoesNotExistException)
                {
                }
            }

            _client.Dispose();
        }
    }

    protected override Task<IOutboxPublisher> CreatePublisherAsync() => Task.FromResult<IOutboxPublisher>(new SqsPublisher(Client));

    protected override int? BrokerPort => new Uri(SqsServer.Url).Port;

    protected override Task<IOutboxPublisher> CreatePublisherAsync(int port) =>
        Task.FromResult<IOutboxPublisher>(new SqsPublisher(SqsServer.CreateClient(new UriBuilder(SqsServer.Url) { Port = port }.Uri.ToString())));

    protected override void Route(OutboxMessage message) => message.Options[SqsOptionKeys.QueueName] = QueueUrl;

    protected override string? ExpectedDestinationName => QueueUrl;

    protected override async Task<IReadOnlyList<ReceivedMessage>> ReceiveAsync(int count, CancellationToken cancellationToken) =>
        (await ReceiveRawAsync(QueueUrl, count, cancellationToken)).Select(ToReceived).ToList();

    [Fact]
    public void The_option_keys_are_the_go_seeds_strings()
    {
        Assert.Equal("queue_name", SqsOptionKeys.QueueName);
        Assert.Equal("delay_seconds", SqsOptionKeys.DelaySeconds);
        Assert.Equal("message_group_id", SqsOptionKeys.MessageGroupId);
        Assert.Equal("message_dedup_id", SqsOptionKeys.MessageDeduplicationId);
    }

    [Fact]
    public void The_default_options_are_the_documented_ones()
    {
        var options = new SqsPublisherOptions();
        Assert.Null(options.DefaultQueueName);
        Assert.Equal(262_144, options.MaxMessageSize);
        Assert.Equal(8, options.MaxConcurrentRequests);
    }

    [Theory]
    [InlineData(nameof(SqsPublisherOptions.MaxMessageSize), 1_023)]
    [InlineData(nameof(SqsPublisherOptions.MaxMessageSize), 1_048_577)]
    [InlineData(nameof(SqsPublisherOptions.MaxConcurrentRequests), 0)]
    [InlineData(nameof(SqsPublisherOptions.DefaultQueueName), "not a queue!")]
    [InlineData(nameof(SqsPublisherOptions.DefaultQueueName), "ftp://example.com/000000000000/orders")]
    public void An_invalid_option_is_rejected_by_name(string property, object value)
    {
        var options = new SqsPublisherOptions();
        typeof(SqsPublisherOptions).GetProperty(property)!.SetValue(options, value);

        var ex = Assert.Throws<ArgumentException>(() => new SqsPublisher(Client, options));

        Assert.Equal($"SqsPublisherOptions.{property}", ex.ParamName);
    }

    [Fact]
    public void A_null_client_is_rejected() =>
        Assert.Throws<ArgumentNullException>(() => new SqsPublisher(null!));

    [Fact]
    public async Task A_queue_name_given_as_a_plain_name_and_as_a_url_both_work()
    {
        var name = UniqueName();
        var url = await CreateQueueAsync(name);
        var publisher = await NewSqsPublisherAsync();
        var byName = NewMessage("by name");
        byName.Options[SqsOptionKeys.QueueName] = name;
        var byUrl = NewMessage("by url");
        byUrl.Options[SqsOptionKeys.QueueName] = url;
        var batchByName = NewMessage("batch by name");
        batchByName.Options[SqsOptionKeys.QueueName] = name;
        var batchByUrl = NewMessage("batch by url");
        batchByUrl.Options[SqsOptionKeys.QueueName] = url;

        await publisher.PublishAsync(byName, Ct);
        await publisher.PublishAsync(byUrl, Ct);
        Assert.All(await publisher.PublishBatchAsync([batchByName, batchByUrl], Ct), Assert.Null);

        var received = await ReceiveExactlyFromAsync(url, 4);
        Assert.Equal(
            new[] { byName, byUrl, batchByName, batchByUrl }.Select(m => m.MessageId.ToString()).Order(),
            received.Select(r => r.MessageId).Order());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_unknown_queue_fails_without_retry_naming_it(bool asUrl)
    {
        var name = UniqueName("missing");
        var reference = asUrl ? $"{SqsServer.Url}/000000000000/{name}" : name;
        var publisher = await NewSqsPublisherAsync();
        var single = NewMessage("to nowhere");
        single.Options[SqsOptionKeys.QueueName] = reference;
        var inBatch = NewMessage("to nowhere in a batch");
        inBatch.Options[SqsOptionKeys.QueueName] = reference;
        var good = NewRoutedMessage("to a queue that exists");

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(single, Ct));
        var results = await publisher.PublishBatchAsync([inBatch, good], Ct);

        Assert.False(ex.IsTransient);
        Assert.Contains(name, ex.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", ex.Message, StringComparison.Ordinal);
        var batchError = Assert.IsType<OutboxException>(results[0]);
        Assert.False(batchError.IsTransient);
        Assert.Contains(name, batchError.Message, StringComparison.Ordinal);
        Assert.Null(results[1]);
        Assert.Equal(good.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Fact]
    public async Task A_failed_queue_lookup_is_not_cached_so_a_queue_created_later_is_found()
    {
        var name = UniqueName("later");
        var publisher = await NewSqsPublisherAsync();
        var first = NewMessage("before the queue exists");
        first.Options[SqsOptionKeys.QueueName] = name;
        await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(first, Ct));

        var url = await CreateQueueAsync(name);
        await publisher.PublishAsync(first, Ct);

        Assert.Equal(first.MessageId.ToString(), Assert.Single(await ReceiveExactlyFromAsync(url, 1)).MessageId);
    }

    [Fact]
    public async Task Concurrent_first_uses_of_a_queue_name_look_it_up_once()
    {
        var name = UniqueName();
        var url = await CreateQueueAsync(name);
        var (client, interceptor) = SqsInterceptor.Wrap(Client);
        var publisher = Track(new SqsPublisher(client));
        var messages = Enumerable.Range(0, 40).Select(i => NewMessage($"m{i}")).ToList();
        messages.ForEach(m => m.Options[SqsOptionKeys.QueueName] = name);

        await Task.WhenAll(messages.Take(20).Select(m => publisher.PublishAsync(m, Ct).AsTask()).Append(publisher.PublishBatchAsync(messages.Skip(20).ToList(), Ct)));

        Assert.Equal(1, interceptor.CallsTo(nameof(IAmazonSQS.GetQueueUrlAsync)));
        Assert.Equal(40, (await ReceiveExactlyFromAsync(url, 40)).Count);
    }

    [Fact]
    public async Task A_message_without_a_queue_goes_to_the_default_queue_and_fails_naming_the_key_when_there_is_none()
    {
        var withDefault = await NewSqsPublisherAsync(new SqsPublisherOptions { DefaultQueueName = QueueUrl });
        var withoutDefault = await NewSqsPublisherAsync();
        var message = NewMessage("no queue option");

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await withoutDefault.PublishAsync(message, Ct));
        await withDefault.PublishAsync(message, Ct);

        Assert.False(ex.IsTransient);
        Assert.Contains("'queue_name'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(message.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Fact]
    public async Task Delay_seconds_works_as_an_int_and_as_the_long_of_the_json_round_trip()
    {
        var publisher = await NewSqsPublisherAsync();
        var asInt = NewRoutedMessage("delayed, int");
        asInt.Options[SqsOptionKeys.DelaySeconds] = 3;
        var asLong = RoundTripped(NewRoutedMessage("delayed, long"), options => options[SqsOptionKeys.DelaySeconds] = 3);
        Assert.IsType<long>(asLong.Options[SqsOptionKeys.DelaySeconds]);

        await publisher.PublishAsync(asInt, Ct);
        Assert.Null(Assert.Single(await publisher.PublishBatchAsync([asLong], Ct)));

        // Both are delayed (nothing is visible yet), then both arrive.
        Assert.Empty(await ReceiveOnceAsync(QueueUrl, waitSeconds: 0, Ct));
        var received = await ReceiveExactlyAsync(2);
        Assert.Equal(new[] { asInt, asLong }.Select(m => m.MessageId.ToString()).Order(), received.Select(r => r.MessageId).Order());
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(901)]
    [InlineData(1.5)]
    [InlineData("soon")]
    public async Task Delay_seconds_out_of_range_or_of_a_wrong_type_fails_without_retry_naming_the_key(object delay)
    {
        var publisher = await NewSqsPublisherAsync();
        var message = NewRoutedMessage("bad delay");
        message.Options[SqsOptionKeys.DelaySeconds] = delay;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));
        var batch = Assert.IsType<OutboxException>(Assert.Single(await publisher.PublishBatchAsync([message], Ct)));

        Assert.False(ex.IsTransient);
        Assert.Contains("'delay_seconds'", ex.Message, StringComparison.Ordinal);
        Assert.False(batch.IsTransient);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task A_fifo_queue_gets_the_group_id_and_a_message_published_twice_is_delivered_once()
    {
        var fifo = await CreateQueueAsync(UniqueName() + ".fifo", new() { [QueueAttributeName.FifoQueue] = "true" });
        var publisher = await NewSqsPublisherAsync();
        var message = NewMessage("exactly once");
        message.Options[SqsOptionKeys.QueueName] = fifo;
        message.Options[SqsOptionKeys.MessageGroupId] = "order-42";

        await publisher.PublishAsync(message, Ct);
        await publisher.PublishAsync(message, Ct);
        Assert.All(await publisher.PublishBatchAsync([message, message], Ct), Assert.Null);

        var received = Assert.Single(await ReceiveRawAsync(fifo, 1, TimeoutToken()));
        Assert.Equal(message.MessageId.ToString(), received.MessageAttributes[MessageIdAttribute].StringValue);
        Assert.Equal("order-42", received.Attributes["MessageGroupId"]);
        Assert.Equal(message.MessageId.ToString(), received.Attributes["MessageDeduplicationId"]);
    }

    [Fact]
    public async Task A_fifo_dedup_id_option_overrides_the_message_id()
    {
        var fifo = await CreateQueueAsync(UniqueName() + ".fifo", new() { [QueueAttributeName.FifoQueue] = "true" });
        var publisher = await NewSqsPublisherAsync();
        var messages = Enumerable.Range(0, 2).Select(i => NewMessage($"same dedup id {i}")).ToList();
        foreach (var message in messages)
        {
            message.Options[SqsOptionKeys.QueueName] = fifo;
            message.Options[SqsOptionKeys.MessageGroupId] = "g";
            message.Options[SqsOptionKeys.MessageDeduplicationId] = "order-42-created";
        }

        Assert.All(await publisher.PublishBatchAsync(messages, Ct), Assert.Null);

        var received = Assert.Single(await ReceiveRawAsync(fifo, 1, TimeoutToken()));
        Assert.Equal(messages[0].MessageId.ToString(), received.MessageAttributes[MessageIdAttribute].StringValue);
        Assert.Equal("order-42-created", received.Attributes["MessageDeduplicationId"]);
    }

    [Fact]
    public async Task A_fifo_batch_arrives_in_order_across_several_requests()
    {
        var fifo = await CreateQueueAsync(UniqueName() + ".fifo", new() { [QueueAttributeName.FifoQueue] = "true" });
        var publisher = await NewSqsPublisherAsync();
        var messages = Enumerable.Range(0, 35).Select(i => NewMessage($"in order {i}")).ToList();
        foreach (var message in messages)
        {
            message.Options[SqsOptionKeys.QueueName] = fifo;
            message.Options[SqsOptionKeys.MessageGroupId] = "one-group";
        }

        Assert.All(await publisher.PublishBatchAsync(messages, Ct), Assert.Null);

        var received = await ReceiveRawAsync(fifo, messages.Count, TimeoutToken());
        Assert.Equal(messages.Select(m => m.MessageId.ToString()), received.Select(r => r.MessageAttributes[MessageIdAttribute].StringValue));
    }

    [Theory]
    [InlineData(null, null, "'message_group_id'")]
    [InlineData("g", 5, "'delay_seconds'")]
    [InlineData("has space", null, "'message_group_id'")]
    public async Task A_fifo_message_sqs_would_refuse_fails_without_retry_naming_the_key(string? groupId, object? delay, string expected)
    {
        var fifo = await CreateQueueAsync(UniqueName() + ".fifo", new() { [QueueAttributeName.FifoQueue] = "true" });
        var publisher = await NewSqsPublisherAsync();
        var message = NewMessage("bad fifo message");
        message.Options[SqsOptionKeys.QueueName] = fifo;
        message.Options[SqsOptionKeys.MessageGroupId] = groupId;
        message.Options[SqsOptionKeys.DelaySeconds] = delay;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task After_a_transient_failure_a_fifo_batch_holds_back_the_rest_of_that_group_only()
    {
        var fifo = await CreateQueueAsync(UniqueName() + ".fifo", new() { [QueueAttributeName.FifoQueue] = "true" });
        var (client, interceptor) = SqsInterceptor.Wrap(Client);
        var batchCalls = 0;
        interceptor.OnCall = (method, args, forward) =>
            method.Name == nameof(IAmazonSQS.SendMessageBatchAsync) && Interlocked.Increment(ref batchCalls) == 1
                ? Task.FromException<SendMessageBatchResponse>(new AmazonSQSException("Service unavailable", ErrorType.Receiver, "ServiceUnavailable", "r1", HttpStatusCode.ServiceUnavailable))
                : forward();
        var publisher = Track(new SqsPublisher(client));

        // The first request carries a0..a9 and fails; the second carries a10, a11, b0, b1: the a's wait, the b's go.
        var messages = Enumerable.Range(0, 12).Select(i => FifoMessage(fifo, "a", $"a{i}"))
            .Concat(Enumerable.Range(0, 2).Select(i => FifoMessage(fifo, "b", $"b{i}")))
            .ToList();

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.All(results.Take(12), r => Assert.True(Assert.IsType<OutboxException>(r).IsTransient));
        Assert.Contains("group 'a'", results[11]!.Message, StringComparison.Ordinal);
        Assert.All(results.Skip(12), Assert.Null);
        var received = await ReceiveRawAsync(fifo, 2, TimeoutToken());
        Assert.Equal(["b0", "b1"], received.Select(r => r.Body));
    }

    [Fact]
    public async Task Entries_sqs_fails_map_sender_faults_to_no_retry_and_the_others_to_retry()
    {
        var (client, interceptor) = SqsInterceptor.Wrap(Client);
        interceptor.OnCall = (method, args, forward) =>
        {
            if (method.Name != nameof(IAmazonSQS.SendMessageBatchAsync))
            {
                return forward();
            }

            var request = (SendMessageBatchRequest)args![0]!;
            return Task.FromResult(new SendMessageBatchResponse
            {
                Successful = [new SendMessageBatchResultEntry { Id = request.Entries[0].Id, MessageId = "m0" }],
                Failed =
                [
                    new BatchResultErrorEntry { Id = request.Entries[1].Id, SenderFault = true, Code = "InvalidParameterValue", Message = "refused" },
                    new BatchResultErrorEntry { Id = request.Entries[2].Id, SenderFault = false, Code = "InternalError", Message = "try again" },
                    new BatchResultErrorEntry { Id = request.Entries[3].Id, SenderFault = true, Code = "RequestThrottled", Message = "slow down" },
                ],
            });
        };
        var publisher = Track(new SqsPublisher(client));
        var messages = Enumerable.Range(0, 5).Select(i => NewRoutedMessage($"m{i}")).ToList();

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.Null(results[0]);
        var refused = Assert.IsType<OutboxException>(results[1]);
        Assert.False(refused.IsTransient);
        Assert.Contains("InvalidParameterValue", refused.Message, StringComparison.Ordinal);
        Assert.Contains(messages[1].MessageId.ToString(), refused.Message, StringComparison.Ordinal);
        Assert.True(Assert.IsType<OutboxException>(results[2]).IsTransient);
        Assert.True(Assert.IsType<OutboxException>(results[3]).IsTransient);
        Assert.Contains("did not report", Assert.IsType<OutboxException>(results[4]).Message, StringComparison.Ordinal);
        Assert.True(((OutboxException)results[4]!).IsTransient);
    }

    [Fact]
    public async Task A_batch_request_sqs_finds_too_long_is_sent_message_by_message()
    {
        var (client, interceptor) = SqsInterceptor.Wrap(Client);
        interceptor.OnCall = (method, args, forward) => method.Name == nameof(IAmazonSQS.SendMessageBatchAsync)
            ? Task.FromException<SendMessageBatchResponse>(new BatchRequestTooLongException("Batch requests cannot be longer than 262144 bytes."))
            : forward();
        var publisher = Track(new SqsPublisher(client));
        var messages = Enumerable.Range(0, 3).Select(i => NewRoutedMessage($"one by one {i}")).ToList();

        Assert.All(await publisher.PublishBatchAsync(messages, Ct), Assert.Null);

        Assert.Equal(3, interceptor.CallsTo(nameof(IAmazonSQS.SendMessageAsync)));
        Assert.Equal(messages.Select(m => m.MessageId.ToString()).Order(), (await ReceiveExactlyAsync(3)).Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task Non_string_headers_arrive_as_typed_attributes()
    {
        var publisher = await NewSqsPublisherAsync();
        var id = Guid.Parse("0199a3c5-0000-7000-8000-000000000001");
        var message = NewRoutedMessage("typed headers");
        message.Headers["count"] = 7;
        message.Headers["big"] = 9_007_199_254_740_993L;
        message.Headers["ratio"] = 0.25;
        message.Headers["tiny"] = 1e-5;
        message.Headers["urgent"] = true;
        message.Headers["id"] = id;
        message.Headers["when"] = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
        message.Headers["list"] = new List<object?> { 1, "two", true };
        message.Headers["nested"] = new Dictionary<string, object?> { ["a"] = 1, ["b"] = new List<object?> { "x" } };
        message.Headers["nothing"] = null;
        var stored = RoundTripped(message);

        await publisher.PublishAsync(message, Ct);
        await publisher.PublishAsync(stored, Ct);

        var received = await ReceiveRawAsync(QueueUrl, 2, TimeoutToken());
        Assert.Equal(2, received.Count);
        foreach (var attributes in received.Select(r => r.MessageAttributes))
        {
            Assert.Equal(("Number", "7"), Describe(attributes["count"]));
            Assert.Equal(("Number", "9007199254740993"), Describe(attributes["big"]));
            Assert.Equal(("Number", "0.25"), Describe(attributes["ratio"]));
            Assert.Equal(("Number", "0.00001"), Describe(attributes["tiny"]));
            Assert.Equal(("String", "true"), Describe(attributes["urgent"]));
            Assert.Equal(("String", id.ToString()), Describe(attributes["id"]));
            Assert.Equal("String", attributes["when"].DataType);
            Assert.StartsWith("2026-01-02T03:04:05", attributes["when"].StringValue, StringComparison.Ordinal);
            Assert.Equal(("String", "[1,\"two\",true]"), Describe(attributes["list"]));
            Assert.Equal(("String", "{\"a\":1,\"b\":[\"x\"]}"), Describe(attributes["nested"]));
            Assert.False(attributes.ContainsKey("nothing"));
            Assert.Equal(10, attributes.Count);
        }
    }

    [Fact]
    public async Task Doubles_are_sent_in_positional_notation_and_as_strings_outside_the_range_of_an_sqs_number()
    {
        var publisher = await NewSqsPublisherAsync();
        var message = NewRoutedMessage("doubles");
        message.Headers["large"] = 1e21;
        message.Headers["negative-small"] = -2.5e-7;
        message.Headers["float"] = 0.5f;
        message.Headers["decimal"] = 12.50m;
        message.Headers["too-large"] = 1e300;
        message.Headers["not-a-number"] = double.NaN;

        await publisher.PublishAsync(message, Ct);

        var attributes = Assert.Single(await ReceiveRawAsync(QueueUrl, 1, TimeoutToken())).MessageAttributes;
        Assert.Equal(("Number", "1000000000000000000000"), Describe(attributes["large"]));
        Assert.Equal(("Number", "-0.00000025"), Describe(attributes["negative-small"]));
        Assert.Equal(("Number", "0.5"), Describe(attributes["float"]));
        Assert.Equal(("Number", "12.50"), Describe(attributes["decimal"]));
        Assert.Equal(("String", "1E+300"), Describe(attributes["too-large"]));
        Assert.Equal(("String", "NaN"), Describe(attributes["not-a-number"]));
    }

    [Fact]
    public async Task Text_outside_the_basic_multilingual_plane_is_sent_as_text_as_sqs_allows()
    {
        // fauxqs 1.9.2 refuses these characters, which SQS accepts (#x10000-#x10FFFF), so the request is captured instead of sent.
        var (client, interceptor) = SqsInterceptor.Wrap(Client);
        SendMessageBatchRequest? sent = null;
        interceptor.OnCall = (method, args, forward) =>
        {
            if (method.Name != nameof(IAmazonSQS.SendMessageBatchAsync))
            {
                return forward();
            }

            sent = (SendMessageBatchRequest)args![0]!;
            return Task.FromResult(new SendMessageBatchResponse { Successful = [.. sent.Entries.Select(e => new SendMessageBatchResultEntry { Id = e.Id })] });
        };
        var publisher = Track(new SqsPublisher(client));
        var message = NewRoutedMessage("order shipped \U0001F4E6");

        Assert.Null(Assert.Single(await publisher.PublishBatchAsync([message], Ct)));

        var entry = Assert.Single(sent!.Entries);
        Assert.Equal("order shipped \U0001F4E6", entry.MessageBody);
        Assert.False(entry.MessageAttributes.ContainsKey(BodyEncodingAttribute));
    }

    [Fact]
    public async Task Eleven_headers_fail_without_retry_naming_the_count_and_nine_arrive()
    {
        var publisher = await NewSqsPublisherAsync();
        var eleven = WithHeaders(NewRoutedMessage("eleven headers"), 11);
        var nine = WithHeaders(NewRoutedMessage("nine headers"), 9);
        var nineAndBinary = WithHeaders(NewRoutedMessage("binary"), 9);
        nineAndBinary.Payload = [0xff, 0xfe];

        var results = await publisher.PublishBatchAsync([eleven, nine, nineAndBinary], Ct);

        var tooMany = Assert.IsType<OutboxException>(results[0]);
        Assert.False(tooMany.IsTransient);
        Assert.Contains("12 message attributes (11 headers", tooMany.Message, StringComparison.Ordinal);
        Assert.Contains("at most 9 headers", tooMany.Message, StringComparison.Ordinal);
        Assert.Null(results[1]);
        var binary = Assert.IsType<OutboxException>(results[2]);
        Assert.False(binary.IsTransient);
        Assert.Contains("at most 8 headers", binary.Message, StringComparison.Ordinal);
        Assert.Equal(nine.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Theory]
    [InlineData("AWS.trace", "x", "'AWS.trace'")]
    [InlineData("amazon.id", "x", "'amazon.id'")]
    [InlineData("has space", "x", "'has space'")]
    [InlineData(".leading", "x", "'.leading'")]
    [InlineData("a..b", "x", "'a..b'")]
    [InlineData("message-id", "x", "reserved")]
    [InlineData("empty", "", "'empty'")]
    [InlineData("control", "bell\u0007", "'control'")]
    public async Task A_header_sqs_would_refuse_fails_without_retry_naming_it(string name, string value, string expected)
    {
        var publisher = await NewSqsPublisherAsync();
        var message = NewRoutedMessage("bad header");
        message.Headers[name] = value;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task A_header_of_a_type_json_cannot_hold_fails_without_retry_naming_it()
    {
        var publisher = await NewSqsPublisherAsync();
        var message = NewRoutedMessage("stream header");
        message.Headers["stream"] = new MemoryStream();

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains("'stream'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_oversized_message_fails_without_retry_and_the_rest_of_its_batch_arrives()
    {
        var publisher = await NewSqsPublisherAsync();
        var before = NewRoutedMessage("before");
        var huge = NewRoutedMessage(new string('x', 300_000));
        var after = NewRoutedMessage("after");

        var results = await publisher.PublishBatchAsync([before, huge, after], Ct);
        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(huge, Ct));

        Assert.Null(results[0]);
        var tooLarge = Assert.IsType<OutboxException>(results[1]);
        Assert.False(tooLarge.IsTransient);
        Assert.Contains("262144", tooLarge.Message, StringComparison.Ordinal);
        Assert.Contains(huge.MessageId.ToString(), tooLarge.Message, StringComparison.Ordinal);
        Assert.Null(results[2]);
        Assert.False(single.IsTransient);
        Assert.Equal(new[] { before, after }.Select(m => m.MessageId.ToString()).Order(), (await ReceiveExactlyAsync(2)).Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task The_size_limit_counts_attributes_as_sqs_does()
    {
        // The queue takes at most 1024 bytes, measured by the server; the publisher measures the same way.
        var small = await CreateQueueAsync(UniqueName(), new() { [QueueAttributeName.MaximumMessageSize] = "1024" });
        var publisher = await NewSqsPublisherAsync(new SqsPublisherOptions { MaxMessageSize = 1024 });
        OutboxMessage Sized(int bodyLength)
        {
            var message = NewMessage(new string('b', bodyLength));
            message.Options[SqsOptionKeys.QueueName] = small;
            message.Headers["tenant"] = "acme";
            return message;
        }

        // Attributes: "message-id" + "String" + 36 characters = 52 bytes; "tenant" + "String" + "acme" = 16 bytes.
        var fits = Sized(1024 - 52 - 16);
        var oneTooMany = Sized(1024 - 52 - 16 + 1);

        var results = await publisher.PublishBatchAsync([fits, oneTooMany], Ct);

        Assert.Null(results[0]);
        Assert.Contains("1025 bytes", Assert.IsType<OutboxException>(results[1]).Message, StringComparison.Ordinal);
        Assert.Equal(fits.MessageId.ToString(), Assert.Single(await ReceiveExactlyFromAsync(small, 1)).MessageId);
    }

    [Fact]
    public async Task A_message_the_queue_refuses_fails_alone_without_retry()
    {
        // The publisher allows 256 KiB, but this queue takes 1 KiB: SQS itself refuses the entry, as the sender's fault.
        var small = await CreateQueueAsync(UniqueName(), new() { [QueueAttributeName.MaximumMessageSize] = "1024" });
        var publisher = await NewSqsPublisherAsync();
        var messages = new[] { NewMessage("small"), NewMessage(new string('x', 2_000)), NewMessage("small too") };
        foreach (var message in messages)
        {
            message.Options[SqsOptionKeys.QueueName] = small;
        }

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.Null(results[0]);
        var refused = Assert.IsType<OutboxException>(results[1]);
        Assert.False(refused.IsTransient);
        Assert.Contains(messages[1].MessageId.ToString(), refused.Message, StringComparison.Ordinal);
        Assert.Null(results[2]);
        Assert.Equal(2, (await ReceiveExactlyFromAsync(small, 2)).Count);
    }

    [Fact]
    public async Task A_batch_spanning_two_queues_arrives_in_both()
    {
        var otherName = UniqueName();
        var otherUrl = await CreateQueueAsync(otherName);
        var publisher = await NewSqsPublisherAsync();
        var messages = Enumerable.Range(0, 37).Select(i =>
        {
            var message = NewRoutedMessage($"m{i}");
            if (i % 2 == 1)
            {
                message.Options[SqsOptionKeys.QueueName] = otherName;
            }

            return message;
        }).ToList();

        Assert.All(await publisher.PublishBatchAsync(messages, Ct), Assert.Null);

        var mine = await ReceiveExactlyAsync(19);
        var other = await ReceiveExactlyFromAsync(otherUrl, 18);
        Assert.Equal(messages.Where((_, i) => i % 2 == 0).Select(m => m.MessageId.ToString()).Order(), mine.Select(r => r.MessageId).Order());
        Assert.Equal(messages.Where((_, i) => i % 2 == 1).Select(m => m.MessageId.ToString()).Order(), other.Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task Large_messages_are_split_into_requests_within_the_size_limit()
    {
        var publisher = await NewSqsPublisherAsync();
        var messages = Enumerable.Range(0, 7).Select(i => NewRoutedMessage(new string((char)('a' + i), 100_000))).ToList();

        Assert.All(await publisher.PublishBatchAsync(messages, Ct), Assert.Null);

        var received = await ReceiveExactlyAsync(7);
        Assert.Equal(messages.Select(m => Encoding.UTF8.GetString(m.Payload)).Order(), received.Select(r => Encoding.UTF8.GetString(r.Payload)).Order());
    }

    [Fact]
    public async Task A_binary_payload_round_trips_via_base64_and_text_is_sent_as_it_is()
    {
        var publisher = await NewSqsPublisherAsync();
        var binary = new OutboxMessage([0x00, 0xc3, 0x28, 0xff, 0x80, 0x41]) { MessageId = Guid.CreateVersion7() };
        var control = new OutboxMessage("text with a bell \u0007") { MessageId = Guid.CreateVersion7() };
        var text = new OutboxMessage("{\"name\":\"Zoë\",\"ok\":\"✓\"}\r\n\t") { MessageId = Guid.CreateVersion7() };
        foreach (var message in new[] { binary, control, text })
        {
            Route(message);
        }

        Assert.All(await publisher.PublishBatchAsync([binary, control, text], Ct), Assert.Null);

        var received = (await ReceiveRawAsync(QueueUrl, 3, TimeoutToken())).ToDictionary(m => m.MessageAttributes[MessageIdAttribute].StringValue);
        Assert.Equal(3, received.Count);
        foreach (var encoded in new[] { binary, control })
        {
            var message = received[encoded.MessageId.ToString()];
            Assert.Equal("base64", message.MessageAttributes[BodyEncodingAttribute].StringValue);
            Assert.Equal(Convert.ToBase64String(encoded.Payload), message.Body);
            Assert.Equal(encoded.Payload, ToReceived(message).Payload);
        }

        var plain = received[text.MessageId.ToString()];
        Assert.False(plain.MessageAttributes.ContainsKey(BodyEncodingAttribute));
        Assert.Equal("{\"name\":\"Zoë\",\"ok\":\"✓\"}\r\n\t", plain.Body);
    }

    [Fact]
    public async Task An_empty_payload_fails_without_retry()
    {
        var publisher = await NewSqsPublisherAsync();
        var message = new OutboxMessage([]) { MessageId = Guid.CreateVersion7() };
        Route(message);

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains("empty payload", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unreachable_sqs_fails_every_message_transiently()
    {
        using var unreachable = SqsServer.CreateClient("http://127.0.0.1:1", maxErrorRetry: 0);
        var (client, interceptor) = SqsInterceptor.Wrap(unreachable);
        var publisher = Track(new SqsPublisher(client));
        var byUrl = Enumerable.Range(0, 3).Select(i => NewRoutedMessage($"m{i}")).ToList();
        var byName = NewMessage("by name");
        byName.Options[SqsOptionKeys.QueueName] = "orders";

        var results = await publisher.PublishBatchAsync([.. byUrl, byName], Ct);
        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(byUrl[0], Ct));
        var lookup = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(byName, Ct));

        Assert.All(results, r => Assert.True(Assert.IsType<OutboxException>(r).IsTransient));
        Assert.True(single.IsTransient);
        Assert.True(lookup.IsTransient);

        // Refused, and the client makes no retries: nothing reached SQS, so the outcome is known.
        Assert.All(results, r => Assert.False(Assert.IsType<OutboxException>(r).IsOutcomeUnknown, r!.ToString()));
        Assert.False(single.IsOutcomeUnknown, single.ToString());
        Assert.False(lookup.IsOutcomeUnknown);
        Assert.Contains("'orders'", lookup.Message, StringComparison.Ordinal);
        Assert.Equal(2, interceptor.CallsTo(nameof(IAmazonSQS.GetQueueUrlAsync)));
    }

    [Fact]
    public async Task Disposing_is_idempotent_and_leaves_the_client_usable()
    {
        var publisher = new SqsPublisher(Client);
        await publisher.PublishAsync(NewRoutedMessage("before dispose"), Ct);

        await publisher.DisposeAsync();
        await publisher.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await publisher.PublishAsync(NewRoutedMessage("after dispose"), Ct));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => publisher.PublishBatchAsync([NewRoutedMessage("after dispose")], Ct));
        Assert.Single(await ReceiveExactlyAsync(1));
    }

    [Fact]
    public async Task An_outbox_over_sqlite_publishes_its_messages_to_sqs_through_the_batch_api()
    {
        var name = UniqueName();
        var url = await CreateQueueAsync(name);
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-sqs-{Guid.NewGuid():N}.db");
        var connectionString = new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString();
        try
        {
            var store = new SqliteOutboxStore(connectionString);
            await store.MigrateAsync(Ct);
            var (client, interceptor) = SqsInterceptor.Wrap(Client);
            await using var publisher = new SqsPublisher(client);
            await using var outbox = new Outbox(store, publisher);
            var sent = new List<Guid>();
            for (var i = 0; i < 25; i++)
            {
                var message = new OutboxMessage($"order {i}");
                message.Options[SqsOptionKeys.QueueName] = name;
                message.Options[SqsOptionKeys.DelaySeconds] = 0;
                message.Headers["order"] = i;
                await outbox.SendAsync(message, Ct);
                sent.Add(message.MessageId);
            }

            Assert.Equal(25, await outbox.DispatchPendingAsync(Ct));

            var received = await ReceiveRawAsync(url, 25, TimeoutToken());
            Assert.Equal(sent.Select(id => id.ToString()).Order(), received.Select(r => r.MessageAttributes[MessageIdAttribute].StringValue).Order());
            Assert.All(received, r => Assert.Equal("Number", r.MessageAttributes["order"].DataType));
            Assert.Equal(3, interceptor.CallsTo(nameof(IAmazonSQS.SendMessageBatchAsync)));
            Assert.Equal(0, interceptor.CallsTo(nameof(IAmazonSQS.SendMessageAsync)));
            Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));
        }
        finally
        {
            foreach (var file in new[] { path, path + "-wal", path + "-shm" })
            {
                File.Delete(file);
            }
        }
    }

    private static string UniqueName(string kind = "queue") => $"outboxer-test-{kind}-{Guid.NewGuid():N}";

    private static (string DataType, string StringValue) Describe(MessageAttributeValue value) => (value.DataType, value.StringValue);

    private static OutboxMessage WithHeaders(OutboxMessage message, int count)
    {
        for (var i = 0; i < count; i++)
        {
            message.Headers[$"h{i}"] = $"v{i}";
        }

        return message;
    }

    private static OutboxMessage FifoMessage(string queueUrl, string group, string payload)
    {
        var message = NewMessage(payload);
        message.Options[SqsOptionKeys.QueueName] = queueUrl;
        message.Options[SqsOptionKeys.MessageGroupId] = group;
        return message;
    }

    /// <summary>Copies <paramref name="message"/> through the JSON its options and headers are stored as, as the database would.</summary>
    private static OutboxMessage RoundTripped(OutboxMessage message, Action<OutboxValues>? changeOptions = null)
    {
        changeOptions?.Invoke(message.Options);
        var stored = new OutboxMessage(message.Payload) { MessageId = message.MessageId, CreatedAt = message.CreatedAt };
        foreach (var (key, value) in OutboxValues.FromJson(message.Options.ToJson()))
        {
            stored.Options[key] = value;
        }

        foreach (var (key, value) in OutboxValues.FromJson(message.Headers.ToJson()))
        {
            stored.Headers[key] = value;
        }

        return stored;
    }

    private static ReceivedMessage ToReceived(Message message)
    {
        var attributes = message.MessageAttributes ?? [];
        var payload = attributes.TryGetValue(BodyEncodingAttribute, out var encoding) && encoding.StringValue == "base64"
            ? Convert.FromBase64String(message.Body)
            : Encoding.UTF8.GetBytes(message.Body);
        var messageId = attributes.TryGetValue(MessageIdAttribute, out var id) ? id.StringValue : null;
        var headers = attributes.ToDictionary(
            a => a.Key,
            a => (object?)(a.Value.StringValue ?? (a.Value.BinaryValue is { } binary ? Encoding.UTF8.GetString(binary.ToArray()) : null)));
        return new ReceivedMessage(payload, messageId, headers);
    }

    private CancellationToken TimeoutToken()
    {
        var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(ReceiveTimeout);
        return timeout.Token;
    }

    private SqsPublisher Track(SqsPublisher publisher)
    {
        _publishers.Add(publisher);
        return publisher;
    }

    private Task<SqsPublisher> NewSqsPublisherAsync(SqsPublisherOptions? options = null) => Task.FromResult(Track(new SqsPublisher(Client, options)));

    private async Task<string> CreateQueueAsync(string name, Dictionary<string, string>? attributes = null)
    {
        var response = await Client.CreateQueueAsync(new CreateQueueRequest { QueueName = name, Attributes = attributes }, Ct);
        _queuesToDelete.Add(response.QueueUrl);
        return response.QueueUrl;
    }

    private async Task<IReadOnlyList<ReceivedMessage>> ReceiveExactlyFromAsync(string queueUrl, int count)
    {
        var received = await ReceiveRawAsync(queueUrl, count, TimeoutToken());
        Assert.True(received.Count == count, $"Expected {count} message(s) to arrive within {ReceiveTimeout}, but {received.Count} did.");
        return received.Select(ToReceived).ToList();
    }

    /// <summary>
    /// Receives (and deletes) messages until <paramref name="count"/> arrived or <paramref name="cancellationToken"/> is cancelled,
    /// then once more without waiting, so that duplicates show.
    /// </summary>
    private async Task<List<Message>> ReceiveRawAsync(string queueUrl, int count, CancellationToken cancellationToken)
    {
        var messages = new List<Message>();
        try
        {
            while (messages.Count < count)
            {
                messages.AddRange(await ReceiveOnceAsync(queueUrl, waitSeconds: 1, cancellationToken));
            }

            messages.AddRange(await ReceiveOnceAsync(queueUrl, waitSeconds: 0, cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }

        return messages;
    }

    private async Task<List<Message>> ReceiveOnceAsync(string queueUrl, int waitSeconds, CancellationToken cancellationToken)
    {
        var response = await Client.ReceiveMessageAsync(
            new ReceiveMessageRequest
            {
                QueueUrl = queueUrl,
                MaxNumberOfMessages = 10,
                WaitTimeSeconds = waitSeconds,
                MessageAttributeNames = ["All"],
                MessageSystemAttributeNames = ["All"],
            },
            cancellationToken);
        var messages = response.Messages ?? [];
        if (messages.Count > 0)
        {
            await Client.DeleteMessageBatchAsync(
                new DeleteMessageBatchRequest
                {
                    QueueUrl = queueUrl,
                    Entries = messages.Select((m, i) => new DeleteMessageBatchRequestEntry(i.ToString(CultureInfo.InvariantCulture), m.ReceiptHandle)).ToList(),
                },
                cancellationToken);
        }

        return messages;
    }
}
