using System.Net;
using Amazon.Runtime;
using Xunit;

namespace Outboxer.Kinesis.Tests;

/// <summary>
/// How Kinesis's answers map to per-message results, with the answers kinesalite never gives (throttling, partial failures, server
/// errors, lost connections) produced by a stub.
/// </summary>
public sealed class KinesisErrorMappingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_failed_record_of_a_PutRecords_answer_fails_its_own_message_and_the_others_succeed()
    {
        var codes = new Dictionary<int, string>
        {
            [1] = "ProvisionedThroughputExceededException",
            [3] = "InternalFailure",
            [4] = "KMSThrottlingException",
            [5] = "KMSDisabledException",
            [6] = "KMSAccessDeniedException",
        };
        var (publisher, handler) = Create(r => StubHandler.PutRecordsResult(r, i => codes.GetValueOrDefault(i)));
        await using var _ = publisher;
        var messages = Messages(8);

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.Single(handler.Requests);
        Assert.Equal(8, results.Count);
        foreach (var index in new[] { 0, 2, 7 })
        {
            Assert.Null(results[index]);
        }

        foreach (var (index, code) in codes)
        {
            var failure = Assert.IsType<OutboxException>(results[index]);
            Assert.Contains(code, failure.Message, StringComparison.Ordinal);
            Assert.Contains(messages[index].MessageId.ToString(), failure.Message, StringComparison.Ordinal);
            Assert.Equal(index is 1 or 3 or 4, failure.IsTransient);
            Assert.False(failure.IsOutcomeUnknown);
        }
    }

    [Theory]
    [InlineData(HttpStatusCode.BadRequest, "ProvisionedThroughputExceededException", true)]
    [InlineData(HttpStatusCode.BadRequest, "LimitExceededException", true)]
    [InlineData(HttpStatusCode.BadRequest, "com.amazonaws.kinesis.v20131202#ThrottlingException", true)]
    [InlineData(HttpStatusCode.InternalServerError, "InternalFailure", true)]
    [InlineData(HttpStatusCode.ServiceUnavailable, "ServiceUnavailable", true)]
    [InlineData(HttpStatusCode.BadGateway, null, true)]
    [InlineData(HttpStatusCode.BadRequest, "AccessDeniedException", false)]
    [InlineData(HttpStatusCode.BadRequest, "UnrecognizedClientException", false)]
    [InlineData(HttpStatusCode.BadRequest, "KMSDisabledException", false)]
    [InlineData(HttpStatusCode.BadRequest, "ValidationException", false)]
    public async Task A_request_that_fails_as_a_whole_fails_all_its_messages_transient_or_not_by_error_type(HttpStatusCode status, string? type, bool transient)
    {
        var (publisher, _) = Create(_ => type is null ? new HttpResponseMessage(status) : StubHandler.Error(status, type, "refused by the stub"));
        await using var __ = publisher;
        var messages = Messages(3);

        var results = await publisher.PublishBatchAsync(messages, Ct);
        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(messages[0], Ct));

        Assert.All(results, r => Assert.Equal(transient, Assert.IsType<OutboxException>(r).IsTransient));
        Assert.Equal(transient, single.IsTransient);
        Assert.All(results, r => Assert.False(Assert.IsType<OutboxException>(r).IsOutcomeUnknown));
        Assert.False(single.IsOutcomeUnknown);
        Assert.Contains("'orders'", single.Message, StringComparison.Ordinal);
        Assert.Contains(((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture), single.Message, StringComparison.Ordinal);
        if (type is not null)
        {
            Assert.Contains(type.Split('#')[^1], single.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_missing_stream_fails_without_retry_naming_the_stream()
    {
        var (publisher, _) = Create(_ => StubHandler.Error(HttpStatusCode.BadRequest, "ResourceNotFoundException", "Stream orders under account 123456789012 not found."));
        await using var __ = publisher;

        var results = await publisher.PublishBatchAsync(Messages(2), Ct);

        Assert.All(results, r =>
        {
            var failure = Assert.IsType<OutboxException>(r);
            Assert.False(failure.IsTransient);
            Assert.Contains("stream 'orders' does not exist", failure.Message, StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task A_connection_that_could_not_be_opened_fails_the_messages_transiently_with_a_known_outcome()
    {
        var (publisher, _) = Create(_ => throw new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused (kinesis.test:443)"));
        await using var __ = publisher;

        var results = await publisher.PublishBatchAsync(Messages(2), Ct);
        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(Messages(1)[0], Ct));

        Assert.All(results, r => Assert.True(Assert.IsType<OutboxException>(r).IsTransient));
        Assert.All(results, r => Assert.False(Assert.IsType<OutboxException>(r).IsOutcomeUnknown));
        Assert.True(single.IsTransient);
        Assert.False(single.IsOutcomeUnknown);
        Assert.Contains("Connection refused", single.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string> NoAnswerAfterSending => ["reset", "ended", "timeout"];

    [Theory]
    [MemberData(nameof(NoAnswerAfterSending))]
    public async Task A_request_sent_without_an_answer_fails_the_messages_with_an_unknown_outcome(string how)
    {
        var (publisher, _) = Create(_ => throw (how switch
        {
            "reset" => new HttpRequestException("An error occurred while sending the request.", new IOException("Connection reset by peer")),
            "ended" => new HttpRequestException(HttpRequestError.ResponseEnded, "The response ended prematurely."),
            _ => new TaskCanceledException("The request was canceled due to the configured HttpClient.Timeout.", new TimeoutException()),
        }));
        await using var __ = publisher;

        var results = await publisher.PublishBatchAsync(Messages(2), Ct);
        var single = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(Messages(1)[0], Ct));

        Assert.All(results, r => Assert.True(Assert.IsType<OutboxException>(r).IsOutcomeUnknown));
        Assert.True(single.IsOutcomeUnknown);
        Assert.True(single.IsTransient);
        Assert.Contains("unknown", single.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_answer_with_the_wrong_number_of_results_fails_the_messages_with_an_unknown_outcome()
    {
        var (publisher, _) = Create(_ => StubHandler.Json(HttpStatusCode.OK, """{"FailedRecordCount":0,"Records":[{"ShardId":"shardId-000000000000","SequenceNumber":"1"}]}"""));
        await using var __ = publisher;

        var results = await publisher.PublishBatchAsync(Messages(2), Ct);

        Assert.All(results, r => Assert.True(Assert.IsType<OutboxException>(r).IsTransient));
        Assert.All(results, r => Assert.True(Assert.IsType<OutboxException>(r).IsOutcomeUnknown));
    }

    [Fact]
    public async Task After_a_record_fails_the_batchs_later_records_with_its_partition_key_are_not_sent()
    {
        // The first request's record 0 is throttled; record 500, with the same key, would go in the second request and overtake it.
        var requests = 0;
        var (publisher, handler) = Create(r =>
        {
            var first = Interlocked.Increment(ref requests) == 1;
            return StubHandler.PutRecordsResult(r, i => first && i == 0 ? "ProvisionedThroughputExceededException" : null);
        });
        await using var __ = publisher;
        var messages = Messages(502);
        messages[0].Options[KinesisOptionKeys.PartitionKey] = "order-42";
        messages[500].Options[KinesisOptionKeys.PartitionKey] = "order-42";

        var results = await publisher.PublishBatchAsync(messages, Ct);

        Assert.True(Assert.IsType<OutboxException>(results[0]).IsTransient);
        var blocked = Assert.IsType<OutboxException>(results[500]);
        Assert.True(blocked.IsTransient);
        Assert.Contains("'order-42'", blocked.Message, StringComparison.Ordinal);
        Assert.Null(results[501]);
        Assert.Equal([500, 1], handler.Requests.Select(r => r.Json.GetProperty("Records").GetArrayLength()));
    }

    [Fact]
    public async Task Cancelling_the_publish_throws_and_the_dispatcher_counts_it_as_a_failure()
    {
        var (publisher, _) = Create(_ => StubHandler.PutRecordResult());
        await using var __ = publisher;
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await publisher.PublishBatchAsync(Messages(2), cancelled.Token));
    }

    [Fact]
    public async Task A_disposed_publisher_refuses_to_publish()
    {
        var (publisher, _) = Create(_ => StubHandler.PutRecordResult());
        await publisher.DisposeAsync();
        await publisher.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await publisher.PublishAsync(Messages(1)[0], Ct));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => publisher.PublishBatchAsync(Messages(1), Ct));
    }

    private static (KinesisPublisher Publisher, StubHandler Handler) Create(Func<CapturedRequest, HttpResponseMessage> respond)
    {
        var handler = new StubHandler(respond);
        var publisher = new KinesisPublisher(
            new KinesisPublisherOptions { ServiceUrl = new Uri("https://kinesis.test"), Region = "us-east-1", Credentials = new BasicAWSCredentials("a", "b") },
#pragma warning disable CA2000 // The stub client lives as long as the test; nothing to release.
            new HttpClient(handler));
#pragma warning restore CA2000
        return (publisher, handler);
    }

    private static List<OutboxMessage> Messages(int count) =>
        Enumerable.Range(0, count).Select(i =>
        {
            var message = new OutboxMessage($"m{i}") { MessageId = Guid.CreateVersion7() };
            message.Options[KinesisOptionKeys.StreamName] = "orders";
            return message;
        }).ToList();
}
