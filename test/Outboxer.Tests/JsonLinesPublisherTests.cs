using System.Text.Json;
using Xunit;

namespace Outboxer.Tests;

public sealed class JsonLinesPublisherTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_message_becomes_one_json_line_with_its_ids_payload_options_and_headers()
    {
        var output = new StringWriter();
        await using var publisher = new JsonLinesPublisher(output);
        var message = new OutboxMessage("""{"order":1}""") { Id = 7, MessageId = Guid.NewGuid(), CreatedAt = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero) };
        message.Options["routing_key"] = "orders";
        message.Headers["attempt"] = 2;

        await publisher.PublishAsync(message, Ct);

        var line = Assert.Single(output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        using var json = JsonDocument.Parse(line);
        var root = json.RootElement;
        Assert.Equal(7, root.GetProperty("id").GetInt64());
        Assert.Equal(message.MessageId, root.GetProperty("message_id").GetGuid());
        Assert.Equal(message.CreatedAt, root.GetProperty("created_at").GetDateTimeOffset());
        Assert.Equal("""{"order":1}""", root.GetProperty("payload").GetString());
        Assert.False(root.TryGetProperty("payload_encoding", out _));
        Assert.Equal("orders", root.GetProperty("options").GetProperty("routing_key").GetString());
        Assert.Equal(2, root.GetProperty("headers").GetProperty("attempt").GetInt32());
    }

    [Fact]
    public async Task No_message_has_a_destination_name_since_every_line_goes_to_the_same_writer()
    {
        await using var publisher = new JsonLinesPublisher(new StringWriter());
        var routed = new OutboxMessage("routed");
        routed.Options["topic"] = "orders";
        var invalid = new OutboxMessage("invalid");
        invalid.Options["topic"] = new List<object?> { "not", "a", "name" };

        Assert.Null(publisher.GetDestinationName(routed));
        Assert.Null(publisher.GetDestinationName(invalid));
        Assert.Null(((Providers.IOutboxPublisher)publisher).GetDestinationName(new OutboxMessage("plain")));
    }

    [Fact]
    public async Task A_payload_that_is_not_utf8_is_written_as_base64()
    {
        var output = new StringWriter();
        await using var publisher = new JsonLinesPublisher(output);

        await publisher.PublishAsync(new OutboxMessage([0xff, 0x00, 0xfe]) { MessageId = Guid.NewGuid() }, Ct);

        using var json = JsonDocument.Parse(output.ToString());
        Assert.Equal("base64", json.RootElement.GetProperty("payload_encoding").GetString());
        Assert.Equal(new byte[] { 0xff, 0x00, 0xfe }, json.RootElement.GetProperty("payload").GetBytesFromBase64());
        Assert.Equal(JsonValueKind.Object, json.RootElement.GetProperty("options").ValueKind);
    }

    [Fact]
    public async Task Concurrent_publishes_never_interleave_lines()
    {
        var output = new StringWriter();
        await using var publisher = new JsonLinesPublisher(output);

        await Task.WhenAll(Enumerable.Range(0, 200).Select(i => publisher.PublishAsync(new OutboxMessage(new string('x', i * 10)) { Id = i, MessageId = Guid.NewGuid() }, Ct).AsTask()));

        var ids = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetInt64());
        Assert.Equal(Enumerable.Range(0, 200).Select(i => (long)i), ids.Order());
    }

    [Fact]
    public async Task A_file_publisher_appends_and_closes_its_file()
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-{Guid.NewGuid():N}.jsonl");
        try
        {
            for (var run = 0; run < 2; run++)
            {
                await using var publisher = JsonLinesPublisher.ToFile(path);
                await publisher.PublishAsync(new OutboxMessage($"run {run}") { MessageId = Guid.NewGuid() }, Ct);
            }

            Assert.Equal(2, (await File.ReadAllLinesAsync(path, Ct)).Length);
            Assert.Equal((byte)'{', (await File.ReadAllBytesAsync(path, Ct))[0]); // JSON Lines: no byte order mark
        }
        finally
        {
            File.Delete(path);
        }
    }
}
