using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using Outboxer.Providers;
using Outboxer.Sqlite;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Nats.Tests;

/// <summary>
/// The publisher conformance suite and the NATS-specific behaviour, against a real NATS server with JetStream. Each test gets a stream
/// of its own, storing <c>outboxer.test.&lt;id&gt;.&gt;</c>, read back by an ordered consumer, and deleted afterwards.
/// </summary>
public sealed class NatsPublisherTests : OutboxPublisherConformanceTests
{
    private readonly string _id = Guid.NewGuid().ToString("N");
    private readonly List<string> _streams = [];
    private readonly CancellationTokenSource _stopReading = new();
    private NatsConnection? _connection;
    private NatsJSContext? _jetStream;
    private Channel<ReceivedMessage>? _received;
    private Task? _reader;

    private string Stream => $"OUTBOXER_TEST_{_id}";

    private string Prefix => $"outboxer.test.{_id}";

    private string OrdersSubject => $"{Prefix}.orders";

    private NatsConnection Connection => _connection ?? throw new InvalidOperationException("Not initialized.");

    private NatsJSContext JetStream => _jetStream ?? throw new InvalidOperationException("Not initialized.");

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        _connection = await NatsServer.ConnectAsync("Outboxer.Nats.Tests");
        _jetStream = new NatsJSContext(_connection);
        await CreateStreamAsync(new StreamConfig(Stream, [$"{Prefix}.>"]));
        var consumer = await JetStream.CreateOrderedConsumerAsync(Stream, cancellationToken: Ct);
        _received = Channel.CreateUnbounded<ReceivedMessage>();
        _reader = Task.Run(async () =>
        {
            try
            {
                await foreach (var msg in consumer.ConsumeAsync<byte[]>(cancellationToken: _stopReading.Token))
                {
                    var headers = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (var (key, values) in msg.Headers ?? [])
                    {
                        headers[key] = values.ToString();
                    }

                    headers.TryGetValue("Nats-Msg-Id", out var msgId);
                    await _received.Writer.WriteAsync(new ReceivedMessage(msg.Data ?? [], msgId as string, headers));
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        await _stopReading.CancelAsync();
        if (_reader is not null)
        {
            await _reader;
        }

        if (_jetStream is not null)
        {
            foreach (var stream in _streams)
            {
                await _jetStream.DeleteStreamAsync(stream);
            }
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }

        _stopReading.Dispose();
    }

    protected override Task<IOutboxPublisher> CreatePublisherAsync() =>
        Task.FromResult<IOutboxPublisher>(NatsPublisher.Create(NatsServer.Url));

    protected override int? BrokerPort => new Uri(NatsServer.Url).Port;

    protected override Task<IOutboxPublisher> CreatePublisherAsync(int port) =>
        Task.FromResult<IOutboxPublisher>(NatsPublisher.Create(new UriBuilder(NatsServer.Url) { Port = port }.Uri.ToString()));

    protected override void Route(OutboxMessage message) => message.Options[NatsOptionKeys.Subject] = OrdersSubject;

    protected override string? ExpectedDestinationName => OrdersSubject;

    protected override async Task<IReadOnlyList<ReceivedMessage>> ReceiveAsync(int count, CancellationToken cancellationToken)
    {
        var reader = _received!.Reader;
        var messages = new List<ReceivedMessage>();
        try
        {
            while (messages.Count < count)
            {
                messages.Add(await reader.ReadAsync(cancellationToken));
            }

            // Whatever else is already there counts too, so that duplicates show.
            while (reader.TryRead(out var extra))
            {
                messages.Add(extra);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }

        return messages;
    }

    [Fact]
    public void The_option_keys_are_documented_strings()
    {
        Assert.Equal("subject", NatsOptionKeys.Subject);
        Assert.Equal("expected_stream", NatsOptionKeys.ExpectedStream);
    }

    [Fact]
    public void The_default_options_have_no_default_subject()
    {
        Assert.Null(new NatsPublisherOptions().DefaultSubject);
    }

    [Theory]
    [InlineData("")]
    [InlineData("orders..created")]
    [InlineData(".orders")]
    [InlineData("orders.*")]
    [InlineData("orders.>")]
    [InlineData("orders created")]
    public void An_invalid_default_subject_is_rejected_naming_the_option_and_the_value(string subject)
    {
        var options = new NatsPublisherOptions { DefaultSubject = subject };

        var ex = Assert.Throws<ArgumentException>(() => NatsPublisher.Create(NatsServer.Url, options));

        Assert.Equal("NatsPublisherOptions.DefaultSubject", ex.ParamName);
        Assert.Contains($"'{subject}'", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("orders..created")]
    [InlineData("orders.*")]
    [InlineData("orders.>")]
    [InlineData("orders\tcreated")]
    public async Task An_invalid_subject_option_fails_without_retry_naming_the_key_and_the_value(string subject)
    {
        var publisher = await NewPublisherAsync();
        var message = NewMessage("bad subject");
        message.Options[NatsOptionKeys.Subject] = subject;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains($"'{NatsOptionKeys.Subject}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"'{subject}'", ex.Message, StringComparison.Ordinal);
        Assert.Null(publisher.GetDestinationName(message));
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task A_message_without_subject_goes_to_the_default_subject_or_fails_without_retry()
    {
        await using var withDefault = NatsPublisher.Create(NatsServer.Url, new NatsPublisherOptions { DefaultSubject = OrdersSubject });
        await using var withoutDefault = NatsPublisher.Create(NatsServer.Url);
        var message = NewMessage("to the default");

        Assert.Equal(OrdersSubject, withDefault.GetDestinationName(message));
        Assert.Null(withoutDefault.GetDestinationName(message));
        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await withoutDefault.PublishAsync(message, Ct));
        Assert.False(ex.IsTransient);
        Assert.Contains($"'{NatsOptionKeys.Subject}'", ex.Message, StringComparison.Ordinal);

        await withDefault.PublishAsync(message, Ct);
        Assert.Equal(message.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Fact]
    public async Task A_message_published_twice_with_the_same_message_id_is_stored_once()
    {
        var publisher = (NatsPublisher)await NewPublisherAsync();
        var first = NewRoutedMessage("once");
        var again = new OutboxMessage(first.Payload) { MessageId = first.MessageId, CreatedAt = first.CreatedAt };
        Route(again);
        var other = NewRoutedMessage("another");

        await publisher.PublishAsync(first, Ct);
        await publisher.PublishAsync(again, Ct);
        var results = await publisher.PublishBatchAsync([again, other, first], Ct);

        Assert.All(results, Assert.Null);
        Assert.Equal(2UL, await CountAsync(Stream));
        var received = await ReceiveExactlyAsync(2);
        Assert.Equal([first.MessageId.ToString(), other.MessageId.ToString()], received.Select(r => r.MessageId));
    }

    [Fact]
    public async Task Headers_round_trip_as_nats_headers_with_the_message_id_and_trace_context()
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("with headers");
        message.Headers["tenant"] = "Café Zürich";
        message.Headers["attempt"] = 3;
        message.Headers["ratio"] = 0.25;
        message.Headers["urgent"] = false;
        message.Headers["tags"] = new List<object?> { "a", 1 };
        message.Headers["nothing"] = null;
        message.Headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        message.Headers["Nats-Msg-Id"] = "replaced by the message id";

        await publisher.PublishAsync(message, Ct);

        var headers = Assert.Single(await ReceiveExactlyAsync(1)).Headers;
        Assert.Equal("Café Zürich", headers["tenant"]);
        Assert.Equal("3", headers["attempt"]);
        Assert.Equal("0.25", headers["ratio"]);
        Assert.Equal("false", headers["urgent"]);
        Assert.Equal("[\"a\",1]", headers["tags"]);
        Assert.Equal(string.Empty, headers["nothing"]);
        Assert.Equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", headers["traceparent"]);
        Assert.Equal(message.MessageId.ToString(), headers["Nats-Msg-Id"]);
    }

    [Theory]
    [InlineData("has space")]
    [InlineData("has:colon")]
    [InlineData("näme")]
    public async Task A_header_name_nats_cannot_carry_fails_without_retry_naming_it(string name)
    {
        var publisher = await NewPublisherAsync();
        var message = NewRoutedMessage("bad header");
        message.Headers[name] = "value";

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains($"'{name}'", ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task A_non_ascii_header_value_over_an_ascii_connection_fails_without_retry_instead_of_arriving_mangled()
    {
        await using var asciiConnection = new NatsConnection(new NatsOpts { Url = NatsServer.Url });
        var publisher = new NatsPublisher(asciiConnection);
        var message = NewRoutedMessage("café");
        message.Headers["tenant"] = "Café";

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains("'tenant'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("HeaderEncoding", ex.Message, StringComparison.Ordinal);
        message.Headers["tenant"] = "Cafe";
        await publisher.PublishAsync(message, Ct);
        Assert.Equal("Cafe", Assert.Single(await ReceiveExactlyAsync(1)).Headers["tenant"]);
    }

    [Fact]
    public async Task A_subject_no_stream_stores_fails_without_retry_naming_the_subject()
    {
        var publisher = await NewPublisherAsync();
        var message = NewMessage("nobody stores it");
        var subject = $"outboxer.nostream.{_id}";
        message.Options[NatsOptionKeys.Subject] = subject;
        var stopwatch = Stopwatch.StartNew();

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains($"'{subject}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("no responders", ex.Message, StringComparison.Ordinal);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(4), $"Took {stopwatch.Elapsed}: the failure should come from 'no responders', not a timeout.");
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task A_payload_over_the_servers_max_payload_fails_without_retry()
    {
        var publisher = await NewPublisherAsync();
        var message = new OutboxMessage(new byte[(int)Connection.ServerInfo!.MaxPayload + 1]) { MessageId = Guid.NewGuid() };
        Route(message);

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.False(ex.IsTransient);
        Assert.Contains("max_payload", ex.Message, StringComparison.Ordinal);
        await AssertOnlyMarkerArrivesAsync(publisher, message);
    }

    [Fact]
    public async Task The_expected_stream_option_stores_in_that_stream_and_fails_without_retry_for_another()
    {
        var publisher = await NewPublisherAsync();
        var wrong = NewRoutedMessage("wrong stream");
        wrong.Options[NatsOptionKeys.ExpectedStream] = "SOME_OTHER_STREAM";
        var right = NewRoutedMessage("right stream");
        right.Options[NatsOptionKeys.ExpectedStream] = Stream;

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(wrong, Ct));
        await publisher.PublishAsync(right, Ct);

        Assert.False(ex.IsTransient);
        Assert.Contains($"'{NatsOptionKeys.ExpectedStream}'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(right.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Fact]
    public async Task Messages_of_one_ordering_key_are_stored_in_batch_order_among_unordered_ones()
    {
        var publisher = (NatsPublisher)await NewPublisherAsync();
        var messages = new List<OutboxMessage>();
        for (var i = 0; i < 60; i++)
        {
            var message = NewRoutedMessage($"m{i}");
            message.OrderingKey = i % 3 == 0 ? "customer-1" : i % 3 == 1 ? "customer-2" : null;
            messages.Add(message);
        }

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.All(results, Assert.Null);
        var received = await ReceiveExactlyAsync(60);
        foreach (var key in new[] { "customer-1", "customer-2" })
        {
            var expected = messages.Where(m => m.OrderingKey == key).Select(m => m.MessageId.ToString());
            var stored = received.Select(r => r.MessageId).Where(expected.Contains);
            Assert.Equal(expected, stored);
        }
    }

    [Fact]
    public async Task After_a_transient_failure_the_later_messages_of_its_key_are_held_back_and_others_go_on()
    {
        // A stream that keeps one message and refuses more (discard new) refuses with a 503, which may pass: a transient failure.
        var full = $"OUTBOXER_TEST_FULL_{_id}";
        var fullSubject = $"outboxer.full.{_id}";
        await CreateStreamAsync(new StreamConfig(full, [fullSubject]) { MaxMsgs = 1, Discard = StreamConfigDiscard.New });
        var publisher = (NatsPublisher)await NewPublisherAsync();
        await publisher.PublishAsync(WithSubject(NewMessage("fills it"), fullSubject), Ct);
        var refused = WithSubject(NewMessage("refused"), fullSubject);
        refused.OrderingKey = "k";
        var heldBack = NewRoutedMessage("held back");
        heldBack.OrderingKey = "k";
        var otherKey = NewRoutedMessage("other key");
        otherKey.OrderingKey = "other";
        var unordered = NewRoutedMessage("unordered");

        var results = await publisher.PublishBatchAsync([refused, heldBack, otherKey, unordered], Ct);

        Assert.True(Assert.IsType<OutboxException>(results[0]).IsTransient, results[0]?.Message);
        var held = Assert.IsType<OutboxException>(results[1]);
        Assert.True(held.IsTransient);
        Assert.Contains("'k'", held.Message, StringComparison.Ordinal);
        Assert.Null(results[2]);
        Assert.Null(results[3]);
        var received = await ReceiveExactlyAsync(2);
        Assert.Equal(new[] { otherKey.MessageId.ToString(), unordered.MessageId.ToString() }.Order(), received.Select(r => r.MessageId).Order());
    }

    [Fact]
    public async Task An_unreachable_server_fails_transiently()
    {
        await using var publisher = NatsPublisher.Create("nats://127.0.0.1:1");
        var message = NewRoutedMessage("nowhere");

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.True(ex.IsTransient, ex.Message);
    }

    [Fact]
    public async Task An_outbox_over_sqlite_publishes_the_committed_messages_once_even_when_a_restarted_relay_publishes_them_again()
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-nats-{Guid.NewGuid():N}.db");
        var connectionString = new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString();
        try
        {
            var store = new SqliteOutboxStore(connectionString);
            await store.MigrateAsync(Ct);
            await using var publisher = NatsPublisher.Create(NatsServer.Url);
            await using var outbox = new Outbox(store, publisher);
            var committed = new List<OutboxMessage>();
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
                    committed.Add(message);
                }
            }

            Assert.Equal(20, await outbox.DispatchPendingAsync(Ct));

            // What a relay that crashed before marking does after the lease: publish the same rows (same message ids) again.
            var again = await publisher.PublishBatchAsync(committed, Ct);

            Assert.All(again, Assert.Null);
            Assert.Equal(20UL, await CountAsync(Stream));
            var received = await ReceiveExactlyAsync(20);
            Assert.Equal(committed.Select(m => m.MessageId.ToString()).Order(), received.Select(r => r.MessageId).Order());
        }
        finally
        {
            foreach (var file in new[] { path, path + "-wal", path + "-shm" })
            {
                File.Delete(file);
            }
        }
    }

    [Fact]
    public async Task An_outbox_registered_with_UseNats_and_a_url_publishes_to_the_configured_default_subject()
    {
        var services = new ServiceCollection();
        services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UseNats(NatsServer.Url, o => o.DefaultSubject = OrdersSubject);
        var message = new OutboxMessage("through UseNats(url)");
        await using (var provider = services.BuildServiceProvider())
        {
            var outbox = provider.GetRequiredService<Outbox>();
            await outbox.SendAsync(message, Ct);
            Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));
        }

        Assert.Equal(message.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
    }

    [Fact]
    public async Task An_outbox_registered_with_UseNats_publishes_over_the_registered_connection_which_it_leaves_open()
    {
        var services = new ServiceCollection();
        services.AddSingleton<INatsConnection>(Connection);
        services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UseNats(o => o.DefaultSubject = OrdersSubject);
        var message = new OutboxMessage("through UseNats()");
        await using (var provider = services.BuildServiceProvider())
        {
            var outbox = provider.GetRequiredService<Outbox>();
            await outbox.SendAsync(message, Ct);
            Assert.Equal(1, await outbox.DispatchPendingAsync(Ct));
        }

        Assert.Equal(message.MessageId.ToString(), Assert.Single(await ReceiveExactlyAsync(1)).MessageId);
        Assert.Equal(NatsConnectionState.Open, Connection.ConnectionState);
    }

    private static OutboxMessage WithSubject(OutboxMessage message, string subject)
    {
        message.Options[NatsOptionKeys.Subject] = subject;
        return message;
    }

    private async Task CreateStreamAsync(StreamConfig config)
    {
        await JetStream.CreateStreamAsync(config, Ct);
        _streams.Add(config.Name!);
    }

    private async Task<ulong> CountAsync(string stream) =>
        (ulong)(await JetStream.GetStreamAsync(stream, cancellationToken: Ct)).Info.State.Messages;
}
