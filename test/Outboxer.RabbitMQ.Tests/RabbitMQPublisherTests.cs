using System.Text;
using System.Threading.Channels;
using Microsoft.Data.Sqlite;
using Outboxer.Providers;
using Outboxer.Sqlite;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Xunit;

namespace Outboxer.RabbitMQ.Tests;

/// <summary>
/// The publisher conformance suite and the RabbitMQ-specific behaviour, against a real RabbitMQ. Each test gets a durable topic
/// exchange of its own with an exclusive queue bound to <c>orders.#</c>.
/// </summary>
public sealed class RabbitMQPublisherTests : OutboxPublisherConformanceTests
{
    private const string BindingKey = "orders.#";
    private const string OrdersRoutingKey = "orders.created";

    private readonly string _exchange = UniqueName("topic");
    private readonly List<string> _exchangesToDelete = [];
    private readonly List<RabbitMQPublisher> _publishers = [];
    private IConnection? _connection;
    private IChannel? _channel;
    private ChannelReader<Delivery>? _deliveries;

    private IConnection Connection => _connection ?? throw new InvalidOperationException("Not initialized.");

    private IChannel AdminChannel => _channel ?? throw new InvalidOperationException("Not initialized.");

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        _connection = await RabbitMQServer.ConnectAsync("Outboxer.RabbitMQ.Tests");
        _channel = await _connection.CreateChannelAsync(cancellationToken: Ct);
        await DeclareExchangeAsync(_exchange, ExchangeType.Topic, durable: true, autoDelete: false);
        _deliveries = await ConsumeNewQueueAsync(_exchange, BindingKey);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var publisher in _publishers)
        {
            await publisher.DisposeAsync();
        }

        if (_connection is { IsOpen: true })
        {
            foreach (var exchange in _exchangesToDelete)
            {
                // A fresh channel each time: a failed delete closes its channel.
                await using var channel = await _connection.CreateChannelAsync();
                await channel.ExchangeDeleteAsync(exchange);
            }
        }

        if (_channel is not null)
        {
            await _channel.DisposeAsync();
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
    }

    protected override async Task<IOutboxPublisher> CreatePublisherAsync() =>
        await RabbitMQPublisher.ConnectAsync(RabbitMQServer.Url, cancellationToken: Ct);

    protected override int? BrokerPort => RabbitMQServer.Url.Port;

    protected override async Task<IOutboxPublisher> CreatePublisherAsync(int port) =>
        await RabbitMQPublisher.ConnectAsync(new UriBuilder(RabbitMQServer.Url) { Port = port }.Uri, cancellationToken: Ct);

    protected override void Route(OutboxMessage message)
    {
        message.Options[RabbitMQOptionKeys.ExchangeName] = _exchange;
        message.Options[RabbitMQOptionKeys.RoutingKey] = OrdersRoutingKey;
    }

    protected override string? ExpectedDestinationName => _exchange;

    protected override async Task<IReadOnlyList<ReceivedMessage>> ReceiveAsync(int count, CancellationToken cancellationToken) =>
        (await ReadAsync(_deliveries!, count, cancellationToken)).Select(d => d.Message).ToList();

    [Fact]
    public void The_option_keys_are_the_go_seeds_strings()
    {
        Assert.Equal("exchange.name", RabbitMQOptionKeys.ExchangeName);
        Assert.Equal("exchange.type", RabbitMQOptionKeys.ExchangeType);
        Assert.Equal("exchange.durable", RabbitMQOptionKeys.ExchangeDurable);
        Assert.Equal("exchange.auto_delete", RabbitMQOptionKeys.ExchangeAutoDelete);
        Assert.Equal("exchange.internal", RabbitMQOptionKeys.ExchangeInternal);
        Assert.Equal("exchange.no_wait", RabbitMQOptionKeys.ExchangeNoWait);
        Assert.Equal("routing_key", RabbitMQOptionKeys.RoutingKey);
        Assert.Equal("content_type", RabbitMQOptionKeys.ContentType);
    }

    [Fact]
    public void The_default_options_are_the_safe_ones()
    {
        var options = new RabbitMQPublisherOptions();
        Assert.Equal("application/octet-stream", options.DefaultContentType);
        Assert.True(options.Persistent);
        Assert.True(options.Mandatory);
        Assert.True(options.DeclareExchanges);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void An_empty_default_content_type_is_rejected_by_name(string contentType)
    {
        var ex = Assert.Throws<ArgumentException>(() => new RabbitMQPublisher(Connection, new RabbitMQPublisherOptions { DefaultContentType = contentType }));
        Assert.Equal("RabbitMQPublisherOptions.DefaultContentType", ex.ParamName);
    }

    [Fact]
    public async Task An_unroutable_message_fails_without_retry_naming_exchange_and_routing_key_and_the_publisher_keeps_working()
    {
        var publisher = await NewPublisherAsync();
        var unbound = UniqueName("unbound");
        _exchangesToDelete.Add(unbound);
        var message = NewMessage("nobody listens");
        message.Options[RabbitMQOptionKeys.ExchangeName] = unbound;
        message.Options[RabbitMQOptionKeys.RoutingKey] = "invoices.created";

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.False(ex.IsOutcomeUnknown);
        Assert.Contains("unroutable", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"'{unbound}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("'invoices.created'", ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task A_routing_key_no_binding_matches_is_unroutable_too()
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("wrong key");
        message.Options[RabbitMQOptionKeys.RoutingKey] = "invoices.created";

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task The_default_exchange_delivers_straight_to_the_queue_named_by_the_routing_key()
    {
        var queue = UniqueName("direct");
        await AdminChannel.QueueDeclareAsync(queue, durable: false, exclusive: true, autoDelete: true, cancellationToken: Ct);
        var deliveries = await ConsumeAsync(queue);
        var publisher = await NewPublisherAsync();
        var message = NewMessage("to the queue");
        message.Options[RabbitMQOptionKeys.RoutingKey] = queue;

        await publisher.PublishAsync(message, Ct);

        var delivery = Assert.Single(await ReadExactlyAsync(deliveries, 1));
        Assert.Equal(string.Empty, delivery.Exchange);
        Assert.Equal(queue, delivery.RoutingKey);
        Assert.Equal(message.MessageId.ToString(), delivery.Message.MessageId);
    }

    [Fact]
    public async Task A_message_the_broker_nacks_fails_transiently_so_the_outbox_retries_it()
    {
        // A full queue with reject-publish overflow makes the broker nack instead of confirming.
        var queue = UniqueName("full");
        var arguments = new Dictionary<string, object?> { ["x-max-length"] = 1, ["x-overflow"] = "reject-publish" };
        await AdminChannel.QueueDeclareAsync(queue, durable: false, exclusive: true, autoDelete: true, arguments, cancellationToken: Ct);
        var publisher = await NewPublisherAsync();
        OutboxMessage ToFullQueue(string payload)
        {
            var message = NewMessage(payload);
            message.Options[RabbitMQOptionKeys.RoutingKey] = queue;
            return message;
        }

        await publisher.PublishAsync(ToFullQueue("fills the queue"), Ct);
        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(ToFullQueue("one too many"), Ct));

        Assert.True(ex.IsTransient);
        Assert.False(ex.IsOutcomeUnknown);
        Assert.Contains("nack", ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, new OutboxMessage("none") { MessageId = Guid.NewGuid() });
    }

    [Fact]
    public async Task Messages_are_persistent_and_carry_message_id_timestamp_and_content_type()
    {
        var publisher = await NewPublisherAsync();
        var json = NewRoutedMessage("{\"id\":1}");
        json.Options[RabbitMQOptionKeys.ContentType] = "application/json";
        var plain = NewRoutedMessage("bytes");

        await publisher.PublishAsync(json, Ct);
        await publisher.PublishAsync(plain, Ct);

        var deliveries = await ReadExactlyAsync(_deliveries!, 2);
        Assert.All(deliveries, d => Assert.Equal(DeliveryModes.Persistent, d.DeliveryMode));
        Assert.Equal([json.MessageId.ToString(), plain.MessageId.ToString()], deliveries.Select(d => d.Message.MessageId));
        Assert.Equal([json.CreatedAt.ToUnixTimeSeconds(), plain.CreatedAt.ToUnixTimeSeconds()], deliveries.Select(d => d.Timestamp));
        Assert.Equal(["application/json", "application/octet-stream"], deliveries.Select(d => d.ContentType));
    }

    [Fact]
    public async Task The_publisher_options_can_restore_the_go_seeds_transient_unmandatory_text_messages()
    {
        var publisher = await NewRabbitPublisherAsync(new RabbitMQPublisherOptions { Persistent = false, Mandatory = false, DefaultContentType = "text/plain" });
        var unroutable = NewRoutedMessage("dropped by the broker");
        unroutable.Options[RabbitMQOptionKeys.RoutingKey] = "invoices.created";
        var routed = NewRoutedMessage("delivered");

        await publisher.PublishAsync(unroutable, Ct);
        await publisher.PublishAsync(routed, Ct);

        var delivery = Assert.Single(await ReadExactlyAsync(_deliveries!, 1));
        Assert.Equal(routed.MessageId.ToString(), delivery.Message.MessageId);
        Assert.Equal(DeliveryModes.Transient, delivery.DeliveryMode);
        Assert.Equal("text/plain", delivery.ContentType);
    }

    [Fact]
    public async Task An_exchange_the_publisher_declares_has_the_type_and_flags_of_the_options()
    {
        var fanout = UniqueName("fanout");
        _exchangesToDelete.Add(fanout);
        var publisher = await NewPublisherAsync();
        OutboxMessage ToFanout(string payload)
        {
            var message = NewMessage(payload);
            message.Options[RabbitMQOptionKeys.ExchangeName] = fanout;
            message.Options[RabbitMQOptionKeys.ExchangeType] = "fanout";
            message.Options[RabbitMQOptionKeys.ExchangeDurable] = false;
            message.Options[RabbitMQOptionKeys.ExchangeAutoDelete] = "false";
            message.Options[RabbitMQOptionKeys.ExchangeNoWait] = true;
            message.Options[RabbitMQOptionKeys.RoutingKey] = "ignored.by.fanout";
            return message;
        }

        // Nothing is bound yet: the publisher declares the exchange, and the broker returns the message.
        var first = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(ToFanout("first"), Ct));
        Assert.False(first.IsTransient);

        // Declaring it again with the same settings succeeds only if the publisher declared exactly those; other settings fail.
        await DeclareExchangeAsync(fanout, ExchangeType.Fanout, durable: false, autoDelete: false, deleteAfterTest: false);
        await using (var probe = await Connection.CreateChannelAsync(cancellationToken: Ct))
        {
            await Assert.ThrowsAnyAsync<Exception>(() => probe.ExchangeDeclareAsync(fanout, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: Ct));
        }

        var first1 = await ConsumeNewQueueAsync(fanout, string.Empty);
        var second = await ConsumeNewQueueAsync(fanout, string.Empty);
        var message = ToFanout("to every queue");
        await publisher.PublishAsync(message, Ct);

        Assert.Equal(message.MessageId.ToString(), Assert.Single(await ReadExactlyAsync(first1, 1)).Message.MessageId);
        Assert.Equal(message.MessageId.ToString(), Assert.Single(await ReadExactlyAsync(second, 1)).Message.MessageId);
    }

    [Fact]
    public async Task An_existing_exchange_of_another_type_fails_without_retry_naming_it_and_the_publisher_keeps_working()
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("wrong type");
        message.Options[RabbitMQOptionKeys.ExchangeType] = "direct";

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.False(ex.IsOutcomeUnknown);
        Assert.Contains($"'{_exchange}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("PRECONDITION_FAILED", ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task A_refused_declaration_does_not_fail_the_messages_published_alongside_it()
    {
        var publisher = await NewPublisherAsync();
        var good = Enumerable.Range(0, 50).Select(i => NewRoutedMessage($"good {i}")).ToList();
        var bad = NewRoutedMessage("wrong type");
        bad.Options[RabbitMQOptionKeys.ExchangeType] = "fanout";

        var badTask = publisher.PublishAsync(bad, Ct).AsTask();
        await Task.WhenAll(good.Select(m => publisher.PublishAsync(m, Ct).AsTask()));

        Assert.False((await Assert.ThrowsAsync<OutboxException>(() => badTask)).IsTransient);
        var received = await ReceiveExactlyAsync(50);
        Assert.Equal(good.Select(m => m.MessageId.ToString()).Order(), received.Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task A_missing_exchange_fails_without_retry_when_declaring_is_off_and_the_channel_is_reopened()
    {
        var publisher = await NewRabbitPublisherAsync(new RabbitMQPublisherOptions { DeclareExchanges = false });
        var missing = UniqueName("missing");
        var message = NewMessage("to nowhere");
        message.Options[RabbitMQOptionKeys.ExchangeName] = missing;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.False(ex.IsOutcomeUnknown);
        Assert.Contains($"'{missing}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Theory]
    [InlineData(RabbitMQOptionKeys.ExchangeDurable, "maybe", "'exchange.durable'")]
    [InlineData(RabbitMQOptionKeys.ExchangeAutoDelete, 1, "'exchange.auto_delete'")]
    [InlineData(RabbitMQOptionKeys.ExchangeNoWait, "sometimes", "'exchange.no_wait'")]
    [InlineData(RabbitMQOptionKeys.ExchangeInternal, true, "internal")]
    [InlineData(RabbitMQOptionKeys.ExchangeType, "topix", "'exchange.type'")]
    [InlineData(RabbitMQOptionKeys.RoutingKey, 1.5, "'routing_key'")]
    public async Task An_option_the_broker_cannot_use_fails_without_retry_naming_it_and_the_connection_stays_up(string key, object value, string expected)
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("bad option");
        message.Options[key] = key == RabbitMQOptionKeys.RoutingKey ? new List<object?> { value } : value;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task Headers_of_every_stored_type_arrive_as_amqp_values()
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("typed headers");
        message.Headers["nested"] = new Dictionary<string, object?> { ["list"] = new List<object?> { 1, "two", true }, ["deeper"] = new Dictionary<string, object?> { ["x"] = 0.5 } };
        message.Headers["nothing"] = null;
        message.Headers["ratio"] = 0.25;
        message.Headers["when"] = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
        var stored = NewMessage("typed headers");
        stored.MessageId = message.MessageId;
        foreach (var (key, value) in message.Options)
        {
            stored.Options[key] = value;
        }

        foreach (var (key, value) in OutboxValues.FromJson(message.Headers.ToJson()))
        {
            stored.Headers[key] = value;
        }

        await publisher.PublishAsync(message, Ct);
        await publisher.PublishAsync(stored, Ct);

        foreach (var received in await ReceiveExactlyAsync(2))
        {
            var nested = Assert.IsType<Dictionary<string, object?>>(received.Headers["nested"]);
            Assert.Equal(new List<object?> { 1L, "two", true }, nested["list"]);
            Assert.Equal(0.5, Assert.IsType<Dictionary<string, object?>>(nested["deeper"])["x"]);
            Assert.Null(received.Headers["nothing"]);
            Assert.Equal(0.25, received.Headers["ratio"]);
            Assert.StartsWith("2026-01-02T03:04:05", Assert.IsType<string>(received.Headers["when"]), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_header_an_amqp_table_cannot_carry_fails_without_retry_naming_it()
    {
        var publisher = await NewPublisherAsync();
        var stream = NewRoutedMessage("stream header");
        stream.Headers["stream"] = new MemoryStream();
        var longName = NewRoutedMessage("long header name");
        longName.Headers[new string('h', 256)] = "x";

        var streamError = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(stream, Ct));
        var nameError = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(longName, Ct));

        Assert.False(streamError.IsTransient);
        Assert.Contains("'stream'", streamError.Message, StringComparison.Ordinal);
        Assert.False(nameError.IsTransient);
        Assert.Contains("255 bytes", nameError.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, stream);
    }

    [Fact]
    public async Task Disposing_is_idempotent_and_leaves_a_callers_connection_open()
    {
        var publisher = new RabbitMQPublisher(Connection);
        await publisher.PublishAsync(NewRoutedMessage("before dispose"), Ct);

        await publisher.DisposeAsync();
        await publisher.DisposeAsync();

        Assert.True(Connection.IsOpen);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await publisher.PublishAsync(NewRoutedMessage("after dispose"), Ct));
        Assert.Single(await ReceiveExactlyAsync(1));
    }

    [Fact]
    public async Task Connecting_to_a_port_nobody_listens_on_fails_with_a_transient_error()
    {
        var closed = new UriBuilder(RabbitMQServer.Url) { Port = 1 }.Uri;

        var ex = await Assert.ThrowsAsync<OutboxException>(() => RabbitMQPublisher.ConnectAsync(closed, cancellationToken: Ct));

        Assert.True(ex.IsTransient);
        Assert.DoesNotContain("outboxer:outboxer", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connecting_with_a_wrong_password_fails_without_retry_and_without_the_password()
    {
        var wrong = new UriBuilder(RabbitMQServer.Url) { UserName = "outboxer", Password = "not-the-password" }.Uri;

        var ex = await Assert.ThrowsAsync<OutboxException>(() => RabbitMQPublisher.ConnectAsync(wrong, cancellationToken: Ct));

        Assert.False(ex.IsTransient);
        Assert.DoesNotContain("not-the-password", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_outbox_over_sqlite_publishes_exactly_the_committed_messages_to_rabbitmq()
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-rabbitmq-{Guid.NewGuid():N}.db");
        var connectionString = new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString();
        try
        {
            var store = new SqliteOutboxStore(connectionString);
            await store.MigrateAsync(Ct);
            await using var publisher = await RabbitMQPublisher.ConnectAsync(RabbitMQServer.Url, cancellationToken: Ct);
            await using var outbox = new Outbox(store, publisher);
            var committed = new List<Guid>();
            for (var i = 0; i < 30; i++)
            {
                await using var connection = new SqliteConnection(connectionString);
                await connection.OpenAsync(Ct);
                await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync(Ct);
                var message = new OutboxMessage($"order {i}");
                Route(message);
                message.Headers["order"] = i;
                await outbox.EnqueueAsync(transaction, message, Ct);
                if (i % 3 == 0)
                {
                    await transaction.RollbackAsync(Ct);
                }
                else
                {
                    await transaction.CommitAsync(Ct);
                    committed.Add(message.MessageId);
                }
            }

            Assert.Equal(20, await outbox.DispatchPendingAsync(Ct));

            var received = await ReceiveExactlyAsync(20);
            Assert.Equal(committed.Select(id => id.ToString()).Order(), received.Select(r => r.MessageId).Order());
            Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));
            await AssertOnlyMarkerArrivesAsync(publisher, new OutboxMessage("none") { MessageId = Guid.NewGuid() });
        }
        finally
        {
            foreach (var file in new[] { path, path + "-wal", path + "-shm" })
            {
                File.Delete(file);
            }
        }
    }

    private static string UniqueName(string kind) => $"outboxer-test-{kind}-{Guid.NewGuid():N}";

    private async Task<RabbitMQPublisher> NewRabbitPublisherAsync(RabbitMQPublisherOptions options)
    {
        var publisher = await RabbitMQPublisher.ConnectAsync(RabbitMQServer.Url, options, cancellationToken: Ct);
        _publishers.Add(publisher);
        return publisher;
    }

    private async Task DeclareExchangeAsync(string name, string type, bool durable, bool autoDelete, bool deleteAfterTest = true)
    {
        await AdminChannel.ExchangeDeclareAsync(name, type, durable, autoDelete, cancellationToken: Ct);
        if (deleteAfterTest)
        {
            _exchangesToDelete.Add(name);
        }
    }

    /// <summary>Declares an exclusive queue bound to <paramref name="exchange"/> and consumes it.</summary>
    private async Task<ChannelReader<Delivery>> ConsumeNewQueueAsync(string exchange, string bindingKey)
    {
        var queue = UniqueName("queue");
        await AdminChannel.QueueDeclareAsync(queue, durable: false, exclusive: true, autoDelete: true, cancellationToken: Ct);
        await AdminChannel.QueueBindAsync(queue, exchange, bindingKey, cancellationToken: Ct);
        return await ConsumeAsync(queue);
    }

    private async Task<ChannelReader<Delivery>> ConsumeAsync(string queue)
    {
        var deliveries = System.Threading.Channels.Channel.CreateUnbounded<Delivery>();
        var consumer = new AsyncEventingBasicConsumer(AdminChannel);
        consumer.ReceivedAsync += (_, e) =>
        {
            deliveries.Writer.TryWrite(Delivery.From(e));
            return Task.CompletedTask;
        };
        await AdminChannel.BasicConsumeAsync(queue, autoAck: true, consumer, Ct);
        return deliveries.Reader;
    }

    private async Task<IReadOnlyList<Delivery>> ReadExactlyAsync(ChannelReader<Delivery> reader, int count)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(ReceiveTimeout);
        var deliveries = await ReadAsync(reader, count, timeout.Token);
        Assert.True(deliveries.Count == count, $"Expected {count} message(s) to arrive within {ReceiveTimeout}, but {deliveries.Count} did.");
        return deliveries;
    }

    private static async Task<IReadOnlyList<Delivery>> ReadAsync(ChannelReader<Delivery> reader, int count, CancellationToken cancellationToken)
    {
        var deliveries = new List<Delivery>();
        try
        {
            while (deliveries.Count < count)
            {
                deliveries.Add(await reader.ReadAsync(cancellationToken));
            }

            // Whatever else is already there counts too, so that duplicates show.
            while (reader.TryRead(out var extra))
            {
                deliveries.Add(extra);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }

        return deliveries;
    }

    /// <summary>A delivered message with the AMQP properties the tests check, copied out of the consumer callback.</summary>
    private sealed record Delivery(ReceivedMessage Message, string Exchange, string RoutingKey, DeliveryModes DeliveryMode, long? Timestamp, string? ContentType)
    {
        public static Delivery From(BasicDeliverEventArgs e)
        {
            var properties = e.BasicProperties;
            var headers = properties.Headers?.ToDictionary(h => h.Key, h => Normalize(h.Value)) ?? [];
            return new Delivery(
                new ReceivedMessage(e.Body.ToArray(), properties.MessageId, headers),
                e.Exchange,
                e.RoutingKey,
                properties.DeliveryMode,
                properties.IsTimestampPresent() ? properties.Timestamp.UnixTime : null,
                properties.ContentType);
        }

        private static object? Normalize(object? value) => value switch
        {
            byte[] bytes => Encoding.UTF8.GetString(bytes),
            IDictionary<string, object?> table => table.ToDictionary(t => t.Key, t => Normalize(t.Value)),
            IList<object?> array => array.Select(Normalize).ToList(),
            _ => value,
        };
    }
}
