using Amazon.Runtime;
using Amazon.SQS;
using Xunit;

namespace Outboxer.Sqs.Tests;

/// <summary>What <see cref="SqsPublisher.GetDestinationName"/> says for a message's options. No server: nothing is sent or resolved.</summary>
public sealed class SqsDestinationNameTests : IDisposable
{
    private const string QueueUrl = "http://127.0.0.1:1/000000000000/orders";

    private readonly AmazonSQSClient _client = new(new BasicAWSCredentials("test", "test"), new AmazonSQSConfig { ServiceURL = "http://127.0.0.1:1" });

    public void Dispose() => _client.Dispose();

    [Theory]
    [InlineData("orders", null, "orders")]
    [InlineData("orders.fifo", "fallback", "orders.fifo")]
    [InlineData(QueueUrl, "fallback", QueueUrl)]
    [InlineData(null, "fallback", "fallback")]
    [InlineData("", QueueUrl, QueueUrl)]
    [InlineData(null, null, null)]
    [InlineData("has space", "fallback", null)]
    [InlineData("ftp://127.0.0.1/000000000000/orders", null, null)]
    public void The_destination_is_the_queue_option_as_given_or_the_default_queue(string? queueName, string? defaultQueue, string? expected)
    {
        var publisher = new SqsPublisher(_client, new SqsPublisherOptions { DefaultQueueName = defaultQueue });
        var message = new OutboxMessage("x");
        message.Options[SqsOptionKeys.QueueName] = queueName;

        Assert.Equal(expected, publisher.GetDestinationName(message));
    }

    [Fact]
    public void A_queue_option_of_a_wrong_type_names_no_destination_and_does_not_throw()
    {
        var publisher = new SqsPublisher(_client, new SqsPublisherOptions { DefaultQueueName = "fallback" });
        var message = new OutboxMessage("x");
        message.Options[SqsOptionKeys.QueueName] = new Dictionary<string, object?> { ["not"] = "a name" };

        Assert.Null(publisher.GetDestinationName(message));
    }

    [Fact]
    public void The_publisher_reports_aws_sqs_and_the_host_and_port_of_the_service_url_for_telemetry()
    {
        var publisher = new SqsPublisher(_client);

        Assert.Equal("aws_sqs", publisher.MessagingSystem);
        Assert.Equal("127.0.0.1", publisher.ServerEndPoint?.Host);
        Assert.Equal(1, publisher.ServerEndPoint?.Port);
    }
}
