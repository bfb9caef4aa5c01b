using Grpc.Net.Client;
using Xunit;

namespace Outboxer.PubSub.Tests;

/// <summary>What <see cref="PubSubPublisher.GetDestinationName"/> says for a message's options. No server: the channel connects on the first call only.</summary>
public sealed class PubSubDestinationNameTests : IDisposable
{
    private readonly GrpcChannel _channel = GrpcChannel.ForAddress("http://127.0.0.1:1");

    public void Dispose() => _channel.Dispose();

    [Theory]
    [InlineData("orders", "p", null, "projects/p/topics/orders")]
    [InlineData("projects/other/topics/orders", "p", null, "projects/other/topics/orders")]
    [InlineData("projects/other/topics/orders", null, null, "projects/other/topics/orders")]
    [InlineData(null, "p", "fallback", "projects/p/topics/fallback")]
    [InlineData("", null, "projects/q/topics/fallback", "projects/q/topics/fallback")]
    [InlineData(null, "p", null, null)]
    [InlineData("orders", null, null, null)]
    [InlineData("projects/p/subscriptions/orders", "p", "fallback", null)]
    [InlineData("google-reserved", "p", null, null)]
    public void The_destination_is_the_full_name_of_the_topic_option_or_of_the_default_topic(string? topic, string? projectId, string? defaultTopic, string? expected)
    {
        var publisher = new PubSubPublisher(_channel, new PubSubPublisherOptions { ProjectId = projectId, DefaultTopicName = defaultTopic });
        var message = new OutboxMessage("x");
        message.Options[PubSubOptionKeys.TopicName] = topic;

        Assert.Equal(expected, publisher.GetDestinationName(message));
    }

    [Fact]
    public void A_topic_option_of_a_wrong_type_names_no_destination_and_does_not_throw()
    {
        var publisher = new PubSubPublisher(_channel, new PubSubPublisherOptions { ProjectId = "p", DefaultTopicName = "fallback" });
        var message = new OutboxMessage("x");
        message.Options[PubSubOptionKeys.TopicName] = new Dictionary<string, object?> { ["not"] = "a topic" };

        Assert.Null(publisher.GetDestinationName(message));
    }

    [Fact]
    public void The_publisher_reports_gcp_pubsub_and_the_channels_host_and_port_for_telemetry()
    {
        var publisher = new PubSubPublisher(_channel, new PubSubPublisherOptions { ProjectId = "p" });

        Assert.Equal("gcp_pubsub", publisher.MessagingSystem);
        Assert.Equal("127.0.0.1", publisher.ServerEndPoint?.Host);
        Assert.Equal(1, publisher.ServerEndPoint?.Port);
    }
}
