using System.Globalization;
using Google.Apis.Auth.OAuth2;
using Google.Cloud.PubSub.V1;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;
using Outboxer.Sqlite;
using Outboxer.Testing;
using Xunit;
using Encoding = System.Text.Encoding;

namespace Outboxer.PubSub.Tests;

/// <summary>
/// The publisher conformance suite and the Pub/Sub-specific behaviour, against the Pub/Sub emulator. Each test gets a topic of its own
/// with a subscription that has message ordering enabled; both are deleted afterwards.
/// </summary>
public sealed class PubSubPublisherTests : OutboxPublisherConformanceTests
{
    private const string Project = PubSubServer.ProjectId;

    private readonly string _topicId = UniqueId("topic");
    private readonly List<string> _topicsToDelete = [];
    private readonly List<string> _subscriptionsToDelete = [];
    private readonly List<IAsyncDisposable> _disposables = [];
    private string? _subscription;

    private string Topic => $"projects/{Project}/topics/{_topicId}";

    private string Subscription => _subscription ?? throw new InvalidOperationException("Not initialized.");

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        await PubSubServer.EnsureReachableAsync();
        _subscription = await CreateTopicWithSubscriptionAsync(Topic);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var disposable in _disposables)
        {
            await disposable.DisposeAsync();
        }

        foreach (var subscription in _subscriptionsToDelete)
        {
            await IgnoreNotFoundAsync(PubSubServer.Subscriber.DeleteSubscriptionAsync(new DeleteSubscriptionRequest { Subscription = subscription }).ResponseAsync);
        }

        foreach (var topic in _topicsToDelete)
        {
            await IgnoreNotFoundAsync(PubSubServer.Publisher.DeleteTopicAsync(new DeleteTopicRequest { Topic = topic }).ResponseAsync);
        }
    }

    protected override async Task<IOutboxPublisher> CreatePublisherAsync() =>
        await PubSubPublisher.CreateAsync(EmulatorOptions(), cancellationToken: Ct);

    protected override int? BrokerPort => new Uri($"http://{PubSubServer.Host}").Port;

    protected override async Task<IOutboxPublisher> CreatePublisherAsync(int port) =>
        await PubSubPublisher.CreateAsync(new PubSubPublisherOptions { EmulatorHost = $"127.0.0.1:{port}" }, cancellationToken: Ct);

    protected override void Route(OutboxMessage message) => message.Options[PubSubOptionKeys.TopicName] = Topic;

    protected override string? ExpectedDestinationName => Topic;

    protected override Task<IReadOnlyList<ReceivedMessage>> ReceiveAsync(int count, CancellationToken cancellationToken) =>
        PullAsync(Subscription, count, cancellationToken);

    [Fact]
    public void The_option_keys_are_the_go_seeds_strings()
    {
        Assert.Equal("topic_name", PubSubOptionKeys.TopicName);
        Assert.Equal("ordering_key", PubSubOptionKeys.OrderingKey);
    }

    [Fact]
    public void The_default_options_point_at_the_real_service_and_ignore_the_emulator_variable()
    {
        var options = new PubSubPublisherOptions();

        Assert.Equal(new Uri("https://pubsub.googleapis.com"), options.Endpoint);
        Assert.Null(options.EmulatorHost);
        Assert.Null(options.ProjectId);
        Assert.Null(options.DefaultTopicName);
        Assert.Null(options.Credential);
        options.Validate();
    }

    [Theory]
    [InlineData(nameof(PubSubPublisherOptions.ProjectId), "")]
    [InlineData(nameof(PubSubPublisherOptions.ProjectId), "a/b")]
    [InlineData(nameof(PubSubPublisherOptions.EmulatorHost), "")]
    [InlineData(nameof(PubSubPublisherOptions.EmulatorHost), "127.0.0.1:8085/path")]
    [InlineData(nameof(PubSubPublisherOptions.Endpoint), "http://pubsub.example:8080/")]
    [InlineData(nameof(PubSubPublisherOptions.DefaultTopicName), "orders")]
    [InlineData(nameof(PubSubPublisherOptions.DefaultTopicName), "projects/p/topics/ab")]
    [InlineData(nameof(PubSubPublisherOptions.DefaultTopicName), "projects/p/subscriptions/orders")]
    public void An_invalid_option_is_rejected_by_name(string property, string value)
    {
        var options = new PubSubPublisherOptions();
        switch (property)
        {
            case nameof(PubSubPublisherOptions.ProjectId): options.ProjectId = value; break;
            case nameof(PubSubPublisherOptions.EmulatorHost): options.EmulatorHost = value; break;
            case nameof(PubSubPublisherOptions.Endpoint): options.Endpoint = new Uri(value); break;
            default: options.DefaultTopicName = value; break;
        }

        var ex = Assert.Throws<ArgumentException>(() => new PubSubPublisher(CallInvoker(), options));

        Assert.Equal($"PubSubPublisherOptions.{property}", ex.ParamName);
        Assert.Contains(value, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Messages_with_one_ordering_key_arrive_in_publish_order()
    {
        var publisher = await NewBatchPublisherAsync();
        var messages = Enumerable.Range(0, 100).Select(i =>
        {
            var message = NewRoutedMessage($"{(i % 2 == 0 ? "k1" : "k2")}:{i}");
            message.Options[PubSubOptionKeys.OrderingKey] = i % 2 == 0 ? "k1" : "k2";
            return message;
        }).ToList();

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.All(results, Assert.Null);
        var received = await ReceiveExactlyAsync(messages.Count);
        foreach (var key in new[] { "k1", "k2" })
        {
            var expected = messages.Where(m => (string)m.Options[PubSubOptionKeys.OrderingKey]! == key).Select(m => (string?)m.MessageId.ToString()).ToList();
            var actual = received.Where(r => Encoding.UTF8.GetString(r.Payload).StartsWith(key + ":", StringComparison.Ordinal)).Select(r => r.MessageId).ToList();
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public async Task The_ordering_key_is_set_on_the_pubsub_message()
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("keyed");
        message.Options[PubSubOptionKeys.OrderingKey] = "customer-42";

        await publisher.PublishAsync(message, Ct);

        var pulled = Assert.Single(await PullRawExactlyAsync(Subscription, 1));
        Assert.Equal("customer-42", pulled.OrderingKey);
        Assert.Equal(message.MessageId.ToString(), pulled.Attributes["message-id"]);
        Assert.NotEqual(message.MessageId.ToString(), pulled.MessageId);
    }

    [Fact]
    public async Task Headers_arrive_as_attributes()
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("with attributes");
        message.Headers["tenant"] = "acme";
        message.Headers["count"] = 7;
        message.Headers["big"] = 9_007_199_254_740_993L;
        message.Headers["ratio"] = 0.25;
        message.Headers["price"] = 12.50m;
        message.Headers["urgent"] = true;
        message.Headers["nothing"] = null;
        message.Headers["id"] = new Guid("0195a3c4-0000-7000-8000-000000000001");
        message.Headers["when"] = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
        message.Headers["tags"] = new List<object?> { "a", 1, true };
        message.Headers["nested"] = new Dictionary<string, object?> { ["x"] = 0.5, ["y"] = "z" };
        message.Headers["message-id"] = "a header of the same name loses";

        await publisher.PublishAsync(message, Ct);

        var attributes = Assert.Single(await PullRawExactlyAsync(Subscription, 1)).Attributes;
        Assert.Equal("acme", attributes["tenant"]);
        Assert.Equal("7", attributes["count"]);
        Assert.Equal("9007199254740993", attributes["big"]);
        Assert.Equal("0.25", attributes["ratio"]);
        Assert.Equal("12.50", attributes["price"]);
        Assert.Equal("true", attributes["urgent"]);
        Assert.Equal(string.Empty, attributes["nothing"]);
        Assert.Equal("0195a3c4-0000-7000-8000-000000000001", attributes["id"]);
        Assert.Equal("2026-01-02T03:04:05.0000000+00:00", attributes["when"]);
        Assert.Equal("""["a",1,true]""", attributes["tags"]);
        Assert.Equal("""{"x":0.5,"y":"z"}""", attributes["nested"]);
        Assert.Equal(message.MessageId.ToString(), attributes["message-id"]);
        Assert.Equal(12, attributes.Count);
    }

    [Fact]
    public async Task A_header_pubsub_cannot_carry_fails_alone_without_retry_naming_it()
    {
        var publisher = await NewBatchPublisherAsync();
        var longValue = NewRoutedMessage("long value");
        longValue.Headers["long"] = new string('v', 1025);
        var reserved = NewRoutedMessage("reserved key");
        reserved.Headers["googclient_x"] = "x";
        var longKey = NewRoutedMessage("long key");
        longKey.Headers[new string('k', 257)] = "x";
        var stream = NewRoutedMessage("stream value");
        stream.Headers["stream"] = new MemoryStream();
        var tooMany = NewRoutedMessage("too many");
        for (var i = 0; i < 100; i++)
        {
            tooMany.Headers[$"h{i}"] = i;
        }

        var good = NewRoutedMessage("good");
        good.Headers["fine"] = new string('v', 1024);

        var results = await publisher.PublishBatchAsync([longValue, reserved, longKey, stream, tooMany, good], Ct);

        AssertPermanent(results[0], "'long'", "1024");
        AssertPermanent(results[1], "'googclient_x'", "goog");
        AssertPermanent(results[2], "256 bytes");
        AssertPermanent(results[3], "'stream'");
        AssertPermanent(results[4], "101", "100");
        Assert.Null(results[5]);
        Assert.Equal(good.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Fact]
    public async Task A_topic_given_as_a_short_id_with_the_project_id_and_as_a_full_name_both_work()
    {
        var publisher = (IOutboxBatchPublisher)await CreateOwnedPublisherAsync(EmulatorOptions(projectId: Project));
        var byId = NewMessage("by id");
        byId.Options[PubSubOptionKeys.TopicName] = _topicId;
        var byName = NewMessage("by name");
        byName.Options[PubSubOptionKeys.TopicName] = Topic;

        var results = await publisher.PublishBatchAsync([byId, byName], Ct);

        Assert.All(results, Assert.Null);
        var received = await ReceiveExactlyAsync(2);
        Assert.Equal(new[] { byId.MessageId, byName.MessageId }.Select(g => g.ToString()).Order(), received.Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task A_message_without_a_topic_goes_to_the_default_topic_given_by_id_or_by_name()
    {
        var byId = (IOutboxBatchPublisher)await CreateOwnedPublisherAsync(EmulatorOptions(projectId: Project, defaultTopic: _topicId));
        var byName = (IOutboxBatchPublisher)await CreateOwnedPublisherAsync(EmulatorOptions(defaultTopic: Topic));
        var first = NewMessage("default by id");
        var second = NewMessage("default by name");

        await byId.PublishAsync(first, Ct);
        await byName.PublishAsync(second, Ct);

        var received = await ReceiveExactlyAsync(2);
        Assert.Equal(new[] { first.MessageId, second.MessageId }.Select(g => g.ToString()).Order(), received.Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task A_message_without_a_usable_topic_fails_without_retry_naming_the_option()
    {
        var withProject = (IOutboxBatchPublisher)await CreateOwnedPublisherAsync(EmulatorOptions(projectId: Project));
        var withoutProject = await NewBatchPublisherAsync();
        var noTopic = NewMessage("no topic");
        var shortIdWithoutProject = NewMessage("short id");
        shortIdWithoutProject.Options[PubSubOptionKeys.TopicName] = _topicId;
        var subscription = NewMessage("subscription name");
        subscription.Options[PubSubOptionKeys.TopicName] = $"projects/{Project}/subscriptions/{_topicId}";
        var tooShort = NewMessage("too short");
        tooShort.Options[PubSubOptionKeys.TopicName] = "ab";
        var reserved = NewMessage("reserved");
        reserved.Options[PubSubOptionKeys.TopicName] = "google-topic";

        var noTopicError = await Assert.ThrowsAsync<OutboxException>(async () => await withProject.PublishAsync(noTopic, Ct));
        var results = await withoutProject.PublishBatchAsync([shortIdWithoutProject, subscription], Ct);
        var more = await withProject.PublishBatchAsync([tooShort, reserved], Ct);

        Assert.False(noTopicError.IsTransient);
        Assert.Contains("'topic_name'", noTopicError.Message, StringComparison.Ordinal);
        AssertPermanent(results[0], "'topic_name'", "ProjectId");
        AssertPermanent(results[1], "'topic_name'", "projects/{project}/topics/{topic}");
        AssertPermanent(more[0], "'topic_name'", "3 to 255 characters");
        AssertPermanent(more[1], "'topic_name'", "goog");
        await AssertOnlyMarkerArrivesAsync(withProject, noTopic);
    }

    [Fact]
    public async Task A_wrong_typed_ordering_key_or_one_over_1024_bytes_fails_without_retry_naming_the_option()
    {
        var publisher = await NewBatchPublisherAsync();
        var wrongType = NewRoutedMessage("wrong type");
        wrongType.Options[PubSubOptionKeys.OrderingKey] = new List<object?> { "k" };
        var tooLong = NewRoutedMessage("too long");
        tooLong.Options[PubSubOptionKeys.OrderingKey] = new string('k', 1025);
        var longest = NewRoutedMessage("longest");
        longest.Options[PubSubOptionKeys.OrderingKey] = new string('k', 1024);

        var results = await publisher.PublishBatchAsync([wrongType, tooLong, longest], Ct);

        AssertPermanent(results[0], "'ordering_key'");
        AssertPermanent(results[1], "'ordering_key'", "1024");
        Assert.Null(results[2]);
        Assert.Equal(longest.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Fact]
    public async Task An_unknown_topic_fails_without_retry_naming_it_and_other_topics_in_the_same_batch_still_arrive()
    {
        var publisher = await NewBatchPublisherAsync();
        var otherTopic = $"projects/{Project}/topics/{UniqueId("other")}";
        var otherSubscription = await CreateTopicWithSubscriptionAsync(otherTopic);
        var unknownTopic = $"projects/{Project}/topics/{UniqueId("unknown")}";
        var messages = Enumerable.Range(0, 30).Select(i =>
        {
            var message = NewMessage($"m{i}");
            message.Options[PubSubOptionKeys.TopicName] = (i % 3) switch { 0 => Topic, 1 => unknownTopic, _ => otherTopic };
            return message;
        }).ToList();

        var results = await publisher.PublishBatchAsync(messages, Ct);

        for (var i = 0; i < messages.Count; i++)
        {
            if (i % 3 == 1)
            {
                AssertPermanent(results[i], $"'{unknownTopic}'", "does not exist");
            }
            else
            {
                Assert.Null(results[i]);
            }
        }

        Assert.Equal(IdsOf(messages.Where((_, i) => i % 3 == 0)), (await ReceiveExactlyAsync(10)).Select(r => r.MessageId).Order());
        Assert.Equal(IdsOf(messages.Where((_, i) => i % 3 == 2)), (await PullExactlyAsync(otherSubscription, 10)).Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task A_batch_of_1200_messages_more_than_one_request_holds_all_arrive()
    {
        var requests = new FaultInjector((_, _) => null);
        var publisher = NewPublisherOverEmulator(requests);
        var messages = Enumerable.Range(0, 1200).Select(i => NewRoutedMessage($"m{i}")).ToList();

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.Equal(1200, results.Count);
        Assert.All(results, Assert.Null);
        Assert.Equal([1000, 200], requests.Requests.Select(r => r.Messages));
        Assert.Equal(IdsOf(messages), (await ReceiveExactlyAsync(1200)).Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task Messages_too_large_for_one_request_together_are_split_by_size_and_all_arrive()
    {
        var requests = new FaultInjector((_, _) => null);
        var publisher = NewPublisherOverEmulator(requests);
        var messages = Enumerable.Range(0, 5).Select(i =>
        {
            var message = new OutboxMessage(new byte[3_000_000]) { MessageId = Guid.CreateVersion7() };
            message.Payload[0] = (byte)i;
            Route(message);
            return message;
        }).ToList();

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.All(results, Assert.Null);
        var received = await ReceiveExactlyAsync(5);
        Assert.Equal(IdsOf(messages), received.Select(r => r.MessageId).Order());
        Assert.All(received, r => Assert.Equal(3_000_000, r.Payload.Length));
        Assert.Equal([3, 2], requests.Requests.Select(r => r.Messages));
        Assert.All(requests.Requests, r => Assert.InRange(r.Bytes, 6_000_000, 10_000_000));
    }

    [Fact]
    public async Task An_oversized_message_fails_without_retry_and_the_rest_arrive()
    {
        var publisher = await NewBatchPublisherAsync();
        var before = NewRoutedMessage("before");
        var oversized = new OutboxMessage(new byte[10_000_001]) { MessageId = Guid.CreateVersion7() };
        Route(oversized);
        var after = NewRoutedMessage("after");

        var results = await publisher.PublishBatchAsync([before, oversized, after], Ct);

        Assert.Null(results[0]);
        AssertPermanent(results[1], oversized.MessageId.ToString(), "10,000,000 bytes");
        Assert.Null(results[2]);
        Assert.Equal(IdsOf([before, after]), (await ReceiveExactlyAsync(2)).Select(r => r.MessageId).Order());
        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(oversized, Ct));
        Assert.False(single.IsTransient);
    }

    [Fact]
    public async Task A_request_pubsub_refuses_as_invalid_is_split_until_only_the_invalid_message_fails()
    {
        var poison = NewRoutedMessage("poison");
        var interceptor = new FaultInjector((request, _) =>
            request.Messages.Any(m => m.Attributes["message-id"] == poison.MessageId.ToString()) ? StatusCode.InvalidArgument : null);
        var publisher = NewPublisherOverEmulator(interceptor);
        var messages = Enumerable.Range(0, 20).Select(i => NewRoutedMessage($"m{i}")).ToList();
        messages.Insert(13, poison);

        var results = await publisher.PublishBatchAsync(messages, Ct);

        AssertPermanent(results[13], "invalid");
        Assert.All(results.Where((_, i) => i != 13), Assert.Null);
        Assert.Equal(IdsOf(messages.Where(m => m != poison)), (await ReceiveExactlyAsync(20)).Select(r => r.MessageId).Order());
        Assert.InRange(interceptor.Calls, 2, 12);
    }

    [Fact]
    public async Task A_transient_failure_fails_only_its_request_and_holds_back_later_messages_with_its_ordering_keys()
    {
        var interceptor = new FaultInjector((_, call) => call == 1 ? StatusCode.Unavailable : null);
        var publisher = NewPublisherOverEmulator(interceptor);
        var messages = Enumerable.Range(0, 1003).Select(i => NewRoutedMessage($"m{i}")).ToList();
        messages[0].Options[PubSubOptionKeys.OrderingKey] = "failed";
        messages[1000].Options[PubSubOptionKeys.OrderingKey] = "failed";
        messages[1001].Options[PubSubOptionKeys.OrderingKey] = "fresh";

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.All(results.Take(1000), r => Assert.True(Assert.IsType<OutboxException>(r).IsTransient));
        Assert.Contains("'failed'", Assert.IsType<OutboxException>(results[1000]).Message, StringComparison.Ordinal);
        Assert.True(((OutboxException)results[1000]!).IsTransient);
        Assert.Null(results[1001]);
        Assert.Null(results[1002]);
        Assert.Equal(IdsOf([messages[1001], messages[1002]]), (await ReceiveExactlyAsync(2)).Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task Publishing_to_an_emulator_nobody_listens_on_fails_transiently()
    {
        var publisher = (IOutboxBatchPublisher)await CreateOwnedPublisherAsync(new PubSubPublisherOptions { EmulatorHost = "127.0.0.1:1" });

        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(NewRoutedMessage("nowhere"), Ct));
        var results = await publisher.PublishBatchAsync([NewRoutedMessage("a"), NewRoutedMessage("b")], Ct);

        Assert.True(single.IsTransient);
        Assert.Contains(Topic, single.Message, StringComparison.Ordinal);
        Assert.All(results, r => Assert.True(Assert.IsType<OutboxException>(r).IsTransient));

        // The connection was refused: nothing was sent, so the outcome is known.
        Assert.False(single.IsOutcomeUnknown, single.ToString());
        Assert.All(results, r => Assert.False(Assert.IsType<OutboxException>(r).IsOutcomeUnknown));
    }

    [Fact]
    public async Task A_publisher_for_the_real_service_sends_its_credential_over_tls_and_fails_transiently_when_unreachable()
    {
        var options = new PubSubPublisherOptions { Endpoint = new Uri("https://127.0.0.1:1"), Credential = GoogleCredential.FromAccessToken("not-a-real-token") };
        var publisher = await CreateOwnedPublisherAsync(options);

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(NewRoutedMessage("to the cloud"), Ct));

        Assert.True(ex.IsTransient);
        Assert.DoesNotContain("not-a-real-token", ex.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_cancelled_publish_throws_operation_canceled()
    {
        var publisher = await NewBatchPublisherAsync();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => publisher.PublishBatchAsync([NewRoutedMessage("never")], cancelled.Token));
    }

    [Fact]
    public async Task A_publisher_over_a_callers_channel_publishes_and_disposing_it_twice_leaves_the_channel_open()
    {
        using var channel = GrpcChannel.ForAddress($"http://{PubSubServer.Host}");
        var publisher = new PubSubPublisher(channel);
        await publisher.PublishAsync(NewRoutedMessage("before dispose"), Ct);

        await publisher.DisposeAsync();
        await publisher.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await publisher.PublishAsync(NewRoutedMessage("after dispose"), Ct));
        await using var second = new PubSubPublisher(channel);
        await second.PublishAsync(NewRoutedMessage("same channel"), Ct);
        Assert.Equal(2, (await ReceiveExactlyAsync(2)).Count);
    }

    [Fact]
    public async Task An_outbox_over_sqlite_publishes_exactly_the_committed_messages_in_ordering_key_order()
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-pubsub-{Guid.NewGuid():N}.db");
        var connectionString = new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString();
        try
        {
            var store = new SqliteOutboxStore(connectionString);
            await store.MigrateAsync(Ct);
            await using var publisher = await PubSubPublisher.CreateAsync(EmulatorOptions(projectId: Project, defaultTopic: _topicId), cancellationToken: Ct);
            await using var outbox = new Outbox(store, publisher, new OutboxOptions { MessageBatchSize = 7 });
            var committed = new List<OutboxMessage>();
            for (var i = 0; i < 30; i++)
            {
                await using var connection = new SqliteConnection(connectionString);
                await connection.OpenAsync(Ct);
                await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(Ct);
                var message = new OutboxMessage($"order {i}");
                message.Options[PubSubOptionKeys.OrderingKey] = $"customer-{i % 2}";
                message.Headers["order"] = i;
                await outbox.EnqueueAsync(transaction, message, Ct);
                if (i % 3 == 0)
                {
                    await transaction.RollbackAsync(Ct);
                }
                else
                {
                    await transaction.CommitAsync(Ct);
                    committed.Add(message);
                }
            }

            var dispatched = 0;
            while (await outbox.DispatchPendingAsync(Ct) is var count and > 0)
            {
                dispatched += count;
            }

            Assert.Equal(20, dispatched);
            var received = await ReceiveExactlyAsync(20);
            Assert.Equal(IdsOf(committed), received.Select(r => r.MessageId).Order());
            foreach (var key in new[] { "customer-0", "customer-1" })
            {
                var expected = committed.Where(m => (string)m.Options[PubSubOptionKeys.OrderingKey]! == key).Select(m => m.Headers["order"]!.ToString()).ToList();
                Assert.Equal(expected, received.Where(r => int.Parse((string)r.Headers["order"]!, CultureInfo.InvariantCulture) % 2 == (key == "customer-0" ? 0 : 1)).Select(r => (string?)r.Headers["order"]).ToList());
            }
        }
        finally
        {
            foreach (var file in new[] { path, path + "-wal", path + "-shm" })
            {
                File.Delete(file);
            }
        }
    }

    private static string UniqueId(string kind) => $"outboxer-{kind}-{Guid.NewGuid():N}";

    private static IEnumerable<string> IdsOf(IEnumerable<OutboxMessage> messages) => messages.Select(m => m.MessageId.ToString()).Order();

    private static void AssertPermanent(Exception? result, params string[] fragments)
    {
        var ex = Assert.IsType<OutboxException>(result);
        Assert.False(ex.IsTransient, ex.Message);
        foreach (var fragment in fragments)
        {
            Assert.Contains(fragment, ex.Message, StringComparison.Ordinal);
        }
    }

    private static CallInvoker CallInvoker() => GrpcChannel.ForAddress($"http://{PubSubServer.Host}").CreateCallInvoker();

    private static PubSubPublisherOptions EmulatorOptions(string? projectId = null, string? defaultTopic = null) =>
        new() { EmulatorHost = PubSubServer.Host, ProjectId = projectId, DefaultTopicName = defaultTopic };

    private static async Task IgnoreNotFoundAsync(Task call)
    {
        try
        {
            await call;
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
        {
        }
    }

    private async Task<IOutboxBatchPublisher> NewBatchPublisherAsync() => (IOutboxBatchPublisher)await NewPublisherAsync();

    private async Task<PubSubPublisher> CreateOwnedPublisherAsync(PubSubPublisherOptions options)
    {
        var publisher = await PubSubPublisher.CreateAsync(options, cancellationToken: Ct);
        _disposables.Add(publisher);
        return publisher;
    }

    private PubSubPublisher NewPublisherOverEmulator(Interceptor interceptor)
    {
        var channel = GrpcChannel.ForAddress($"http://{PubSubServer.Host}", new GrpcChannelOptions { ThrowOperationCanceledOnCancellation = true });
        var publisher = new PubSubPublisher(channel.Intercept(interceptor));
        _disposables.Add(publisher);
        _disposables.Add(new ChannelDisposer(channel));
        return publisher;
    }

    [Fact]
    public async Task An_outbox_registered_with_UsePubSub_publishes_to_the_emulator()
    {
        var topic = $"projects/{Project}/topics/{UniqueId("di")}";
        var subscription = await CreateTopicWithSubscriptionAsync(topic);
        var services = new Microsoft.Extensions.DependencyInjection.ServiceCollection();
        services.AddOutboxer()
            .UseStore(_ => new InMemoryOutboxStore())
            .UsePubSub(o =>
            {
                o.EmulatorHost = PubSubServer.Host;
                o.ProjectId = Project;
            });
        await using (var provider = Microsoft.Extensions.DependencyInjection.ServiceCollectionContainerBuilderExtensions.BuildServiceProvider(services))
        {
            var outbox = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Outbox>(provider);
            var message = new OutboxMessage("through UsePubSub");
            message.Options[PubSubOptionKeys.TopicName] = topic;
            await outbox.SendAsync(message, Ct);
            Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));
        }

        Assert.Equal("through UsePubSub", Encoding.UTF8.GetString(Assert.Single(await PullExactlyAsync(subscription, 1)).Payload));
    }

    /// <summary>Creates a topic and a subscription to it with message ordering enabled; both are deleted after the test.</summary>
    private async Task<string> CreateTopicWithSubscriptionAsync(string topic)
    {
        await PubSubServer.Publisher.CreateTopicAsync(new Topic { Name = topic }, cancellationToken: Ct);
        _topicsToDelete.Add(topic);
        var subscription = $"projects/{Project}/subscriptions/{UniqueId("sub")}";
        await PubSubServer.Subscriber.CreateSubscriptionAsync(
            new Subscription { Name = subscription, Topic = topic, EnableMessageOrdering = true, AckDeadlineSeconds = 60 },
            cancellationToken: Ct);
        _subscriptionsToDelete.Add(subscription);
        return subscription;
    }

    private async Task<IReadOnlyList<ReceivedMessage>> PullExactlyAsync(string subscription, int count)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(ReceiveTimeout);
        var received = await PullAsync(subscription, count, timeout.Token);
        Assert.True(received.Count == count, $"Expected {count} message(s) on {subscription} within {ReceiveTimeout}, but {received.Count} arrived.");
        return received;
    }

    private static async Task<IReadOnlyList<ReceivedMessage>> PullAsync(string subscription, int count, CancellationToken cancellationToken) =>
        (await PullRawAsync(subscription, count, cancellationToken)).Select(m => new ReceivedMessage(
            m.Data.ToByteArray(),
            m.Attributes.TryGetValue("message-id", out var id) ? id : null,
            m.Attributes.ToDictionary(a => a.Key, a => (object?)a.Value))).ToList();

    private async Task<IReadOnlyList<PubsubMessage>> PullRawExactlyAsync(string subscription, int count)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(ReceiveTimeout);
        var received = await PullRawAsync(subscription, count, timeout.Token);
        Assert.True(received.Count == count, $"Expected {count} message(s) on {subscription} within {ReceiveTimeout}, but {received.Count} arrived.");
        return received;
    }

    /// <summary>
    /// Pulls (up to 1,000 at a time) and acknowledges, in delivery order, until <paramref name="count"/> messages arrived or
    /// <paramref name="cancellationToken"/> is cancelled; then takes whatever else is already there, so that duplicates show.
    /// </summary>
    private static async Task<IReadOnlyList<PubsubMessage>> PullRawAsync(string subscription, int count, CancellationToken cancellationToken)
    {
        var received = new List<PubsubMessage>();
        try
        {
            while (received.Count < count)
            {
                await PullOnceAsync(subscription, received, TimeSpan.FromSeconds(5), cancellationToken);
            }

            await PullOnceAsync(subscription, received, TimeSpan.FromMilliseconds(300), cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }

        return received;
    }

    private static async Task PullOnceAsync(string subscription, List<PubsubMessage> received, TimeSpan wait, CancellationToken cancellationToken)
    {
        PullResponse response;
        try
        {
            response = await PubSubServer.Subscriber.PullAsync(
                new PullRequest { Subscription = subscription, MaxMessages = 1000 },
                deadline: DateTime.UtcNow + wait,
                cancellationToken: cancellationToken);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.DeadlineExceeded)
        {
            return;
        }

        if (response.ReceivedMessages.Count == 0)
        {
            return;
        }

        received.AddRange(response.ReceivedMessages.Select(m => m.Message));
        var ack = new AcknowledgeRequest { Subscription = subscription };
        ack.AckIds.AddRange(response.ReceivedMessages.Select(m => m.AckId));
        await PubSubServer.Subscriber.AcknowledgeAsync(ack, cancellationToken: cancellationToken);
    }

    /// <summary>Fails Publish calls with the status the rule returns for them (given the request and the call's number, from 1), or passes them on.</summary>
    private sealed class FaultInjector(Func<PublishRequest, int, StatusCode?> rule) : Interceptor
    {
        private readonly List<(int Messages, int Bytes)> _requests = [];
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        /// <summary>Gets the message count and size of every Publish request, in the order they were made.</summary>
        public IReadOnlyList<(int Messages, int Bytes)> Requests
        {
            get
            {
                lock (_requests)
                {
                    return [.. _requests];
                }
            }
        }

        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
            TRequest request,
            ClientInterceptorContext<TRequest, TResponse> context,
            AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            if (request is PublishRequest recorded)
            {
                lock (_requests)
                {
                    _requests.Add((recorded.Messages.Count, recorded.CalculateSize()));
                }
            }

            if (request is PublishRequest publish && rule(publish, Interlocked.Increment(ref _calls)) is { } status)
            {
                var failure = new RpcException(new Status(status, $"injected {status}"));
                return new AsyncUnaryCall<TResponse>(Task.FromException<TResponse>(failure), Task.FromResult(new Metadata()), () => failure.Status, () => [], () => { });
            }

            return continuation(request, context);
        }
    }

    private sealed class ChannelDisposer(GrpcChannel channel) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            channel.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
