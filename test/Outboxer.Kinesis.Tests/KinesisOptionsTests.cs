using Amazon.Runtime;
using Xunit;

namespace Outboxer.Kinesis.Tests;

/// <summary>The option keys, the publisher settings and their validation, and the checks on per-message option values. No server.</summary>
public sealed class KinesisOptionsTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void The_seeds_keys_have_the_seeds_strings_and_sequence_number_for_ordering_is_distinct_from_partition_key()
    {
        Assert.Equal("stream_name", KinesisOptionKeys.StreamName);
        Assert.Equal("partition_key", KinesisOptionKeys.PartitionKey);
        Assert.Equal("explicit_hash_key", KinesisOptionKeys.ExplicitHashKey);

        // The Go outboxer's SequenceNumberForOrderingOption was "partition_key" too: every partition key was sent as a sequence number.
        Assert.Equal("sequence_number_for_ordering", KinesisOptionKeys.SequenceNumberForOrdering);
        Assert.NotEqual(KinesisOptionKeys.PartitionKey, KinesisOptionKeys.SequenceNumberForOrdering);
        string[] keys = [KinesisOptionKeys.StreamName, KinesisOptionKeys.PartitionKey, KinesisOptionKeys.ExplicitHashKey, KinesisOptionKeys.SequenceNumberForOrdering];
        Assert.Equal(keys.Length, keys.Distinct().Count());
    }

    [Fact]
    public void The_defaults_send_raw_payloads_signed_with_the_credential_chain_and_the_system_clock()
    {
        var options = new KinesisPublisherOptions();

        Assert.Null(options.ServiceUrl);
        Assert.Null(options.Region);
        Assert.Null(options.DefaultStreamName);
        Assert.Null(options.Credentials);
        Assert.False(options.UseEnvelope);
        Assert.Same(TimeProvider.System, options.TimeProvider);
    }

    public static TheoryData<string, Action<KinesisPublisherOptions>> InvalidSettings => new()
    {
        { "ServiceUrl", o => o.ServiceUrl = new Uri("ftp://kinesis.test") },
        { "ServiceUrl", o => o.ServiceUrl = new Uri("/relative", UriKind.Relative) },
        { "ServiceUrl", o => o.ServiceUrl = new Uri("https://kinesis.test/some/path") },
        { "ServiceUrl", o => o.ServiceUrl = new Uri("https://kinesis.test/?a=b") },
        { "Region", o => o.Region = "EU West 1" },
        { "Region", o => o.Region = string.Empty },
        { "DefaultStreamName", o => o.DefaultStreamName = "orders/created" },
        { "DefaultStreamName", o => o.DefaultStreamName = new string('s', 129) },
        { "DefaultStreamName", o => o.DefaultStreamName = string.Empty },
        { "TimeProvider", o => o.TimeProvider = null! },
    };

    [Theory]
    [MemberData(nameof(InvalidSettings))]
    public void An_invalid_setting_is_rejected_by_name(string property, Action<KinesisPublisherOptions> configure)
    {
        var options = new KinesisPublisherOptions { Region = "us-east-1", Credentials = new BasicAWSCredentials("a", "b") };
        configure(options);

        var ex = Assert.Throws<ArgumentException>(() => new KinesisPublisher(options));

        Assert.Equal($"KinesisPublisherOptions.{property}", ex.ParamName);
    }

    [Fact]
    public async Task The_settings_are_copied_when_the_publisher_is_created()
    {
        var handler = new StubHandler(_ => StubHandler.PutRecordResult());
        using var http = new HttpClient(handler);
        var options = new KinesisPublisherOptions { ServiceUrl = new Uri("https://kinesis.test"), Region = "us-east-1", Credentials = new BasicAWSCredentials("a", "b"), DefaultStreamName = "orders" };
        await using var publisher = new KinesisPublisher(options, http);
        options.DefaultStreamName = "changed";
        options.ServiceUrl = new Uri("https://elsewhere.test");

        await publisher.PublishAsync(new OutboxMessage("x") { MessageId = Guid.CreateVersion7() }, Ct);

        var request = Assert.Single(handler.Requests);
        Assert.Equal("kinesis.test", request.Uri.Host);
        Assert.Equal("orders", request.Json.GetProperty("StreamName").GetString());
    }

    public static TheoryData<string, object> InvalidValues => new()
    {
        { KinesisOptionKeys.StreamName, "orders/created" },
        { KinesisOptionKeys.StreamName, new List<object?> { "orders" } },
        { KinesisOptionKeys.PartitionKey, new string('k', 257) },
        { KinesisOptionKeys.PartitionKey, new Dictionary<string, object?> { ["id"] = 42 } },
        { KinesisOptionKeys.ExplicitHashKey, "abc" },
        { KinesisOptionKeys.ExplicitHashKey, "-1" },
        { KinesisOptionKeys.ExplicitHashKey, "007" },
        { KinesisOptionKeys.ExplicitHashKey, "340282366920938463463374607431768211456" },
        { KinesisOptionKeys.ExplicitHashKey, 1.5 },
        { KinesisOptionKeys.SequenceNumberForOrdering, "not-a-number" },
    };

    [Theory]
    [MemberData(nameof(InvalidValues))]
    public async Task An_invalid_option_value_fails_the_message_without_retry_naming_the_key_and_sends_nothing(string key, object value)
    {
        var handler = new StubHandler(r => StubHandler.PutRecordsResult(r, _ => null));
        using var http = new HttpClient(handler);
        await using var publisher = new KinesisPublisher(
            new KinesisPublisherOptions { ServiceUrl = new Uri("https://kinesis.test"), Region = "us-east-1", Credentials = new BasicAWSCredentials("a", "b") },
            http);
        var message = new OutboxMessage("x") { MessageId = Guid.CreateVersion7() };
        message.Options[KinesisOptionKeys.StreamName] = "orders";
        message.Options[key] = value;

        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));
        var batched = Assert.IsType<OutboxException>(Assert.Single(await publisher.PublishBatchAsync([message], Ct)));

        Assert.Empty(handler.Requests);
        foreach (var failure in new[] { single, batched })
        {
            Assert.False(failure.IsTransient);
            Assert.Contains($"'{key}'", failure.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Option_values_after_the_json_round_trip_are_read_as_text()
    {
        var handler = new StubHandler(r => StubHandler.PutRecordsResult(r, _ => null));
        using var http = new HttpClient(handler);
        await using var publisher = new KinesisPublisher(
            new KinesisPublisherOptions { ServiceUrl = new Uri("https://kinesis.test"), Region = "us-east-1", Credentials = new BasicAWSCredentials("a", "b") },
            http);
        var message = new OutboxMessage("x") { MessageId = Guid.CreateVersion7() };
        message.Options[KinesisOptionKeys.StreamName] = "orders";
        message.Options[KinesisOptionKeys.PartitionKey] = 42;
        message.Options[KinesisOptionKeys.ExplicitHashKey] = 7;
        var stored = new OutboxMessage(message.Payload) { MessageId = message.MessageId };
        foreach (var (key, value) in OutboxValues.FromJson(message.Options.ToJson()))
        {
            stored.Options[key] = value;
        }

        Assert.All(await publisher.PublishBatchAsync([stored], Ct), Assert.Null);

        var record = Assert.Single(handler.Requests).Json.GetProperty("Records")[0];
        Assert.Equal("42", record.GetProperty("PartitionKey").GetString());
        Assert.Equal("7", record.GetProperty("ExplicitHashKey").GetString());
    }
}
