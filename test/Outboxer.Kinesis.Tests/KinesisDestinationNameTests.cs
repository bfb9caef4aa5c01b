using Xunit;

namespace Outboxer.Kinesis.Tests;

/// <summary>What <see cref="KinesisPublisher.GetDestinationName"/> says for a message's options. No server: nothing is sent.</summary>
public sealed class KinesisDestinationNameTests
{
    [Theory]
    [InlineData("orders", null, "orders")]
    [InlineData("orders", "fallback", "orders")]
    [InlineData(null, "fallback", "fallback")]
    [InlineData("", "fallback", "fallback")]
    [InlineData(null, null, null)]
    [InlineData("not a stream!", "fallback", null)]
    public async Task The_destination_is_the_stream_option_or_the_default_stream(string? stream, string? defaultStream, string? expected)
    {
        var options = KinesisServer.Options();
        options.DefaultStreamName = defaultStream;
        await using var publisher = new KinesisPublisher(options);
        var message = new OutboxMessage("x");
        message.Options[KinesisOptionKeys.StreamName] = stream;

        Assert.Equal(expected, publisher.GetDestinationName(message));
    }

    [Fact]
    public async Task A_stream_option_of_a_wrong_type_names_no_destination_and_does_not_throw()
    {
        var options = KinesisServer.Options();
        options.DefaultStreamName = "fallback";
        await using var publisher = new KinesisPublisher(options);
        var message = new OutboxMessage("x");
        message.Options[KinesisOptionKeys.StreamName] = new List<object?> { "orders" };

        Assert.Null(publisher.GetDestinationName(message));
    }

    [Fact]
    public async Task The_publisher_reports_aws_kinesis_and_its_endpoints_host_and_port_for_telemetry()
    {
        var options = KinesisServer.Options();
        options.ServiceUrl = new Uri("http://127.0.0.1:4567");
        await using var publisher = new KinesisPublisher(options);

        Assert.Equal("aws.kinesis", publisher.MessagingSystem);
        Assert.Equal("127.0.0.1", publisher.ServerEndPoint.Host);
        Assert.Equal(4567, publisher.ServerEndPoint.Port);
    }
}
