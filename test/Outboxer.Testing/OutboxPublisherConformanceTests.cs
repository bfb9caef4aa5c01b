using System.Text;
using Outboxer.Providers;
using Xunit;

namespace Outboxer.Testing;

/// <summary>
/// The behaviour every <see cref="IOutboxPublisher"/> (event stream) must have, run against a real broker or emulator. A publisher's
/// test class derives from this, gives each test instance a destination of its own (an exchange and queue, a queue, a topic and
/// subscription, a stream), and adds the broker's specific tests.
/// </summary>
public abstract class OutboxPublisherConformanceTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly List<IOutboxPublisher> _publishers = [];

    /// <summary>Gets a token that is cancelled when the test is aborted.</summary>
    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Gets how long a test waits for messages to arrive before it fails.</summary>
    protected virtual TimeSpan ReceiveTimeout => TimeSpan.FromSeconds(30);

    /// <summary>Gets a value indicating whether the broker carries headers (AMQP headers, message attributes); Kinesis records do not.</summary>
    protected virtual bool SupportsHeaders => true;

    /// <summary>Creates a publisher connected to the broker. The suite disposes it at the end of the test.</summary>
    protected abstract Task<IOutboxPublisher> CreatePublisherAsync();

    /// <summary>Sets the options of <paramref name="message"/> that send it to this test's destination, where <see cref="ReceiveAsync(int, CancellationToken)"/> reads.</summary>
    protected abstract void Route(OutboxMessage message);

    /// <summary>
    /// Gets the name <see cref="IOutboxPublisher.GetDestinationName"/> must give for a message <see cref="Route"/> sent to this test's
    /// destination (an exchange, a queue, a stream, a topic, as the publisher names it).
    /// </summary>
    protected abstract string? ExpectedDestinationName { get; }

    /// <summary>
    /// Reads messages that arrived at this test's destination since the previous call, waiting until at least <paramref name="count"/>
    /// arrived or <paramref name="cancellationToken"/> is cancelled; then returns what arrived (possibly fewer, possibly more).
    /// </summary>
    protected abstract Task<IReadOnlyList<ReceivedMessage>> ReceiveAsync(int count, CancellationToken cancellationToken);

    /// <summary>
    /// Gets the port of the broker on 127.0.0.1, for a <see cref="TcpProxy"/> in front of it; <see langword="null"/> (the default) when
    /// the publisher cannot be pointed at another address, and the tests of lost answers then do nothing.
    /// </summary>
    protected virtual int? BrokerPort => null;

    /// <summary>
    /// Creates a publisher that reaches the broker at 127.0.0.1:<paramref name="port"/> instead of its own address (a
    /// <see cref="TcpProxy"/> in front of <see cref="BrokerPort"/>). Override it with <see cref="BrokerPort"/>.
    /// </summary>
    /// <param name="port">The proxy's port.</param>
    /// <returns>The publisher; the suite disposes it at the end of the test.</returns>
    protected virtual Task<IOutboxPublisher> CreatePublisherAsync(int port) =>
        throw new NotSupportedException($"{GetType().Name} sets {nameof(BrokerPort)} but does not override {nameof(CreatePublisherAsync)}(int).");

    /// <summary>Prepares the broker for this test (a destination of its own).</summary>
    public virtual ValueTask InitializeAsync() => ValueTask.CompletedTask;

    /// <summary>Disposes the publishers the test created and removes what the test created on the broker.</summary>
    public virtual async ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        foreach (var publisher in _publishers)
        {
            switch (publisher)
            {
                case IAsyncDisposable asyncDisposable:
                    await asyncDisposable.DisposeAsync();
                    break;
                case IDisposable disposable:
                    disposable.Dispose();
                    break;
            }
        }

        _publishers.Clear();
    }

    [Fact]
    public async Task A_published_message_arrives_with_its_payload_and_message_id()
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("hello, broker");

        await publisher.PublishAsync(message, Ct);

        var received = Assert.Single(await ReceiveExactlyAsync(1));
        Assert.Equal("hello, broker", Encoding.UTF8.GetString(received.Payload));
        Assert.Equal(message.MessageId.ToString(), received.MessageId);
    }

    [Fact]
    public async Task A_binary_payload_arrives_unchanged()
    {
        var publisher = await NewPublisherAsync();
        var payload = new byte[] { 0, 1, 2, 127, 128, 200, 255, 0 };
        var message = new OutboxMessage(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = T0 };
        Route(message);

        await publisher.PublishAsync(message, Ct);

        Assert.Equal(payload, Assert.Single(await ReceiveExactlyAsync(1)).Payload);
    }

    /// <summary>
    /// Headers of every JSON type arrive; an event stream that carries no headers (<see cref="SupportsHeaders"/> false) must still
    /// publish such a message, payload intact, without them.
    /// </summary>
    [Fact]
    public async Task String_integer_and_boolean_headers_arrive_or_are_dropped_where_the_stream_has_none()
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("with headers");
        message.Headers["tenant"] = "acme";
        message.Headers["attempt"] = 3;
        message.Headers["big"] = 9_007_199_254_740_993L;
        message.Headers["urgent"] = true;

        await publisher.PublishAsync(message, Ct);

        var received = Assert.Single(await ReceiveExactlyAsync(1));
        Assert.Equal("with headers", Encoding.UTF8.GetString(received.Payload));
        var headers = received.Headers;
        if (!SupportsHeaders)
        {
            Assert.DoesNotContain("tenant", headers.Keys);
            return;
        }

        Assert.Equal("acme", headers["tenant"]);
        Assert.Equal("3", Convert.ToString(headers["attempt"], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("9007199254740993", Convert.ToString(headers["big"], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("true", Convert.ToString(headers["urgent"], System.Globalization.CultureInfo.InvariantCulture)?.ToLowerInvariant());
    }

    [Fact]
    public async Task Two_hundred_messages_published_concurrently_all_arrive_exactly_once()
    {
        var publisher = await NewPublisherAsync();
        var messages = Enumerable.Range(0, 200).Select(i => NewRoutedMessage($"m{i}")).ToList();

        await Task.WhenAll(messages.Select(m => publisher.PublishAsync(m, Ct).AsTask()));

        var received = await ReceiveExactlyAsync(200);
        Assert.Equal(messages.Select(m => m.MessageId.ToString()).Order(), received.Select(r => r.MessageId).Order());
        Assert.Equal(messages.Select(m => Encoding.UTF8.GetString(m.Payload)).Order(), received.Select(r => Encoding.UTF8.GetString(r.Payload)).Order());
    }

    [Fact]
    public async Task Options_and_headers_after_the_json_round_trip_still_publish()
    {
        var publisher = await NewPublisherAsync();
        var original = NewRoutedMessage("round trip");
        original.Headers["count"] = 7;
        original.Headers["ratio"] = 0.25;
        original.Headers["tenant"] = "acme";
        var stored = new OutboxMessage(original.Payload) { MessageId = original.MessageId, CreatedAt = original.CreatedAt };
        foreach (var (key, value) in OutboxValues.FromJson(original.Options.ToJson()))
        {
            stored.Options[key] = value;
        }

        foreach (var (key, value) in OutboxValues.FromJson(original.Headers.ToJson()))
        {
            stored.Headers[key] = value;
        }

        Assert.IsType<long>(stored.Headers["count"]);

        await publisher.PublishAsync(stored, Ct);

        var received = Assert.Single(await ReceiveExactlyAsync(1));
        Assert.Equal(original.MessageId.ToString(), received.MessageId);
        if (SupportsHeaders)
        {
            Assert.Equal("7", Convert.ToString(received.Headers["count"], System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal("acme", received.Headers["tenant"]);
        }
    }

    /// <summary>
    /// A routing option of the wrong type fails the message with a non-transient <see cref="OutboxException"/> naming the key, and
    /// the message is not published. By default the first option <see cref="Route"/> sets is replaced with a nested object, which no
    /// string option accepts; override to use a key that suits the broker.
    /// </summary>
    [Fact]
    public virtual async Task A_wrong_typed_option_fails_without_retry_naming_the_key_and_nothing_arrives()
    {
        var publisher = await NewPublisherAsync();
        var bad = NewRoutedMessage("bad");
        Assert.NotEmpty(bad.Options);
        var key = bad.Options.Keys.First();
        bad.Options[key] = new Dictionary<string, object?> { ["not"] = "a string" };

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(bad, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains($"'{key}'", ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, bad);
    }

    /// <summary>
    /// A routed message names this test's destination. A routing option of the wrong type (the first option <see cref="Route"/> sets,
    /// replaced with a list) gives no name instead of throwing, and a message without options does not throw either (it may name a
    /// default destination of the publisher).
    /// </summary>
    [Fact]
    public async Task A_routed_message_names_its_destination_and_a_wrongly_routed_one_names_none_without_throwing()
    {
        var publisher = await NewPublisherAsync();
        var routed = NewRoutedMessage("routed");
        var bad = NewRoutedMessage("bad");
        bad.Options[bad.Options.Keys.First()] = new List<object?> { "not", "a", "string" };

        Assert.Equal(ExpectedDestinationName, publisher.GetDestinationName(routed));
        Assert.Null(publisher.GetDestinationName(bad));
        _ = publisher.GetDestinationName(NewMessage("unrouted"));
    }

    [Fact]
    public async Task A_failed_message_does_not_stop_the_publisher_from_publishing_the_next()
    {
        var publisher = await NewPublisherAsync();
        var bad = NewRoutedMessage("bad");
        Assert.NotEmpty(bad.Options);
        bad.Options[bad.Options.Keys.First()] = new List<object?> { "not", "a", "string" };
        await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(bad, Ct));

        var good = NewRoutedMessage("good");
        await publisher.PublishAsync(good, Ct);

        Assert.Equal(good.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Fact]
    public async Task A_batch_larger_than_any_broker_limit_arrives_whole_through_the_batch_api()
    {
        var publisher = await NewPublisherAsync();
        if (publisher is not IOutboxBatchPublisher batchPublisher)
        {
            // The publisher has no batch API; the dispatcher publishes its messages one by one (covered by the other tests).
            return;
        }

        var messages = Enumerable.Range(0, 523).Select(i => NewRoutedMessage($"batch {i}")).ToList();

        var results = await batchPublisher.PublishBatchAsync(messages, Ct);

        Assert.Equal(messages.Count, results.Count);
        Assert.All(results, Assert.Null);
        var received = await ReceiveExactlyAsync(messages.Count);
        Assert.Equal(messages.Select(m => m.MessageId.ToString()).Order(), received.Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task A_bad_message_in_a_batch_fails_alone_without_retry()
    {
        var publisher = await NewPublisherAsync();
        if (publisher is not IOutboxBatchPublisher batchPublisher)
        {
            return;
        }

        var messages = Enumerable.Range(0, 5).Select(i => NewRoutedMessage($"batch {i}")).ToList();
        messages[2].Options[messages[2].Options.Keys.First()] = new List<object?> { "not", "a", "string" };

        var results = await batchPublisher.PublishBatchAsync(messages, Ct);

        Assert.Equal(5, results.Count);
        Assert.False(Assert.IsType<OutboxException>(results[2]).IsTransient);
        Assert.All(results.Where((_, i) => i != 2), Assert.Null);
        var received = await ReceiveExactlyAsync(4);
        Assert.DoesNotContain(messages[2].MessageId.ToString(), received.Select(r => r.MessageId));
    }

    /// <summary>
    /// The broker got the message (it arrives), but its answer (confirm, acknowledgement, response) was lost with the connection: the
    /// publisher cannot know whether the broker took it, so it fails with <see cref="OutboxException.IsOutcomeUnknown"/>, which the
    /// dispatcher retries and counts as a possible duplicate instead of moving the message to the dead letters.
    /// </summary>
    [Fact]
    public async Task A_message_whose_answer_was_lost_with_the_connection_fails_with_an_unknown_outcome()
    {
        if (BrokerPort is not { } brokerPort)
        {
            return;
        }

        await using var proxy = new TcpProxy(brokerPort);
        var publisher = await ConnectedThroughAsync(proxy);
        var message = NewRoutedMessage("its answer is lost");

        proxy.DropReplies();
        var publishing = publisher.PublishAsync(message, Ct).AsTask();
        var failure = await CutAfterArrivalAsync(proxy, publishing, [message]);

        var ex = Assert.IsType<OutboxException>(failure);
        AssertUnknownOutcome(ex);
    }

    /// <summary>As <see cref="A_message_whose_answer_was_lost_with_the_connection_fails_with_an_unknown_outcome"/>, through the batch API.</summary>
    [Fact]
    public async Task A_batch_whose_answers_were_lost_with_the_connection_fails_with_unknown_outcomes()
    {
        if (BrokerPort is not { } brokerPort)
        {
            return;
        }

        await using var proxy = new TcpProxy(brokerPort);
        if (await ConnectedThroughAsync(proxy) is not IOutboxBatchPublisher publisher)
        {
            return;
        }

        var messages = Enumerable.Range(0, 3).Select(i => NewRoutedMessage($"batch answer {i} is lost")).ToList();

        proxy.DropReplies();
        var publishing = publisher.PublishBatchAsync(messages, Ct);
        var failure = await CutAfterArrivalAsync(proxy, publishing, messages);

        if (failure is null)
        {
            Assert.All(publishing.Result, result => AssertUnknownOutcome(Assert.IsType<OutboxException>(result)));
        }
        else
        {
            // Throwing fails every message of the batch with that exception.
            AssertUnknownOutcome(Assert.IsType<OutboxException>(failure));
        }
    }

    /// <summary>Creates a publisher that the suite disposes at the end of the test.</summary>
    protected async Task<IOutboxPublisher> NewPublisherAsync()
    {
        var publisher = await CreatePublisherAsync();
        _publishers.Add(publisher);
        return publisher;
    }

    /// <summary>Checks that <paramref name="ex"/> says the broker may have taken the message: unknown outcome, transient, and says so.</summary>
    protected static void AssertUnknownOutcome(OutboxException ex)
    {
        ArgumentNullException.ThrowIfNull(ex);
        Assert.True(ex.IsOutcomeUnknown, $"Expected an unknown outcome, got: {ex}");
        Assert.True(ex.IsTransient, ex.ToString());
        Assert.Contains("unknown", ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Creates a publisher through <paramref name="proxy"/> and publishes one message through it, so that it is connected.</summary>
    private async Task<IOutboxPublisher> ConnectedThroughAsync(TcpProxy proxy)
    {
        var publisher = await CreatePublisherAsync(proxy.Port);
        _publishers.Add(publisher);
        var first = NewRoutedMessage("through the proxy");
        await publisher.PublishAsync(first, Ct);
        Assert.Equal(first.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
        return publisher;
    }

    /// <summary>
    /// Waits until <paramref name="messages"/> arrived at the destination while <paramref name="publishing"/> still waits for the answers
    /// the proxy drops, then cuts the connections (refusing new ones for a few seconds, so a client that retries does not get through)
    /// and returns what <paramref name="publishing"/> failed with, or <see langword="null"/> when it completed.
    /// </summary>
    private async Task<Exception?> CutAfterArrivalAsync(TcpProxy proxy, Task publishing, IReadOnlyList<OutboxMessage> messages)
    {
        var received = await ReceiveExactlyAsync(messages.Count);
        Assert.Equal(messages.Select(m => m.MessageId.ToString()).Order(), received.Select(r => r.MessageId).Order());
        Assert.False(publishing.IsCompleted, $"The publish completed although its answer was dropped: {publishing.Exception}");

        var cut = proxy.CutAsync(TimeSpan.FromSeconds(5), Ct);
        Exception? failure = null;
        try
        {
            await publishing.WaitAsync(TimeSpan.FromSeconds(60), Ct);
        }
        catch (Exception ex) when (ex is not TimeoutException)
        {
            failure = ex;
        }

        await cut;
        return failure;
    }

    /// <summary>Creates a message with the id and creation time an <see cref="Outbox"/> would assign, routed to this test's destination.</summary>
    protected OutboxMessage NewRoutedMessage(string payload)
    {
        var message = NewMessage(payload);
        Route(message);
        return message;
    }

    /// <summary>Creates a message with the id and creation time an <see cref="Outbox"/> would assign, without options.</summary>
    protected static OutboxMessage NewMessage(string payload) =>
        new(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = T0.AddSeconds(Random.Shared.Next(1, 1000)) };

    /// <summary>Waits (bounded by <see cref="ReceiveTimeout"/>) until <paramref name="count"/> messages arrived, and fails unless exactly that many did.</summary>
    protected async Task<IReadOnlyList<ReceivedMessage>> ReceiveExactlyAsync(int count)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(ReceiveTimeout);
        var received = await ReceiveAsync(count, timeout.Token);
        Ct.ThrowIfCancellationRequested();
        Assert.True(received.Count == count, $"Expected {count} message(s) to arrive within {ReceiveTimeout}, but {received.Count} did.");
        return received;
    }

    /// <summary>Publishes a valid marker message and checks that it arrives and that <paramref name="notExpected"/> did not.</summary>
    protected async Task AssertOnlyMarkerArrivesAsync(IOutboxPublisher publisher, OutboxMessage notExpected)
    {
        var marker = NewRoutedMessage("marker");
        await publisher.PublishAsync(marker, Ct);
        var received = await ReceiveExactlyAsync(1);
        Assert.DoesNotContain(received, r => r.MessageId == notExpected.MessageId.ToString());
        Assert.Equal(marker.MessageId.ToString(), Assert.Single(received).MessageId);
    }

    /// <summary>A message read back from the broker.</summary>
    /// <param name="Payload">The body.</param>
    /// <param name="MessageId">The broker message id (AMQP <c>message-id</c>, an attribute, ...), or <see langword="null"/> when absent.</param>
    /// <param name="Headers">The headers or attributes; values the broker delivers as bytes are decoded as UTF-8 strings.</param>
    public sealed record ReceivedMessage(byte[] Payload, string? MessageId, IReadOnlyDictionary<string, object?> Headers);
}
