using System.Text;
using System.Text.Json;
using Xunit;

namespace Outboxer.Kinesis.Tests;

/// <summary>
/// The publisher conformance suite against kinesalite with <see cref="KinesisPublisherOptions.UseEnvelope"/>: the record's data is a
/// JSON envelope carrying the message id, creation time, headers and payload, which is where a consumer finds them.
/// </summary>
public sealed class KinesisEnvelopePublisherTests : KinesisConformanceTestsBase
{
    protected override bool UseEnvelope => true;

    protected override bool SupportsHeaders => true;

    internal override ReceivedMessage ToReceivedMessage(KinesisAdmin.ReceivedRecord record)
    {
        var envelope = Envelope.Parse(record.Data);
        return new ReceivedMessage(envelope.Payload, envelope.MessageId, envelope.Headers);
    }

    [Fact]
    public async Task The_envelope_carries_the_message_id_creation_time_headers_and_base64_payload()
    {
        var publisher = NewKinesisPublisher();
        var message = NewRoutedMessage("""{"orderId":42}""");
        message.Headers["tenant"] = "acme";
        message.Headers["attempt"] = 3;
        message.Headers["nested"] = new Dictionary<string, object?> { ["a"] = true };
        message.Options[KinesisOptionKeys.PartitionKey] = "order-42";

        await publisher.PublishAsync(message, Ct);

        var record = Assert.Single(await ReadExactlyAsync(1));
        Assert.Equal("order-42", record.PartitionKey);
        using var json = JsonDocument.Parse(record.Data);
        var root = json.RootElement;
        Assert.Equal(["messageId", "createdAt", "headers", "payload"], root.EnumerateObject().Select(p => p.Name));
        Assert.Equal(message.MessageId, root.GetProperty("messageId").GetGuid());
        Assert.Equal(message.CreatedAt, root.GetProperty("createdAt").GetDateTimeOffset());
        Assert.Equal("acme", root.GetProperty("headers").GetProperty("tenant").GetString());
        Assert.Equal(3, root.GetProperty("headers").GetProperty("attempt").GetInt32());
        Assert.True(root.GetProperty("headers").GetProperty("nested").GetProperty("a").GetBoolean());
        Assert.Equal("""{"orderId":42}""", Encoding.UTF8.GetString(root.GetProperty("payload").GetBytesFromBase64()));
    }

    [Fact]
    public async Task A_message_without_headers_or_creation_time_has_a_smaller_envelope()
    {
        var publisher = NewKinesisPublisher();
        var message = new OutboxMessage([1, 2, 3]) { MessageId = Guid.CreateVersion7() };
        Route(message);

        var results = await publisher.PublishBatchAsync([message], Ct);

        Assert.All(results, Assert.Null);
        using var json = JsonDocument.Parse(Assert.Single(await ReadExactlyAsync(1)).Data);
        Assert.Equal(["messageId", "payload"], json.RootElement.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task The_1_MiB_limit_applies_to_the_envelope()
    {
        var publisher = NewKinesisPublisher();

        // 800,000 bytes are within the 1 MiB limit raw, but their 1,066,668 base64 characters in the envelope are not.
        var message = new OutboxMessage(new byte[800_000]) { MessageId = Guid.CreateVersion7() };
        Route(message);

        var result = Assert.Single(await publisher.PublishBatchAsync([message], Ct));

        var failure = Assert.IsType<OutboxException>(result);
        Assert.False(failure.IsTransient);
        Assert.Contains("envelope", failure.Message, StringComparison.Ordinal);
    }

    /// <summary>What a consumer reads from an envelope record.</summary>
    private sealed record Envelope(string MessageId, byte[] Payload, IReadOnlyDictionary<string, object?> Headers)
    {
        public static Envelope Parse(byte[] data)
        {
            using var json = JsonDocument.Parse(data);
            var root = json.RootElement;
            var headers = root.TryGetProperty("headers", out var value) ? OutboxValues.FromJson(value.GetRawText()) : new OutboxValues();
            return new Envelope(root.GetProperty("messageId").GetString()!, root.GetProperty("payload").GetBytesFromBase64(), headers);
        }
    }
}
