using Xunit;

namespace Outboxer.RabbitMQ.Tests;

/// <summary>What <see cref="RabbitMQPublisher.GetDestinationName"/> says for a message's options. No server: the publisher connects on its first publish only.</summary>
public sealed class RabbitMQDestinationNameTests : IAsyncDisposable
{
    private readonly RabbitMQPublisher _publisher = new(new Uri("amqp://guest:guest@127.0.0.1:1/"));

    public ValueTask DisposeAsync() => _publisher.DisposeAsync();

    [Theory]
    [InlineData("orders", "orders.created", "orders")]
    [InlineData("orders", null, "orders")]
    [InlineData("", "order-queue", "order-queue")]
    [InlineData(null, "order-queue", "order-queue")]
    [InlineData(null, null, null)]
    [InlineData("", "", null)]
    public void The_destination_is_the_exchange_or_the_queue_the_routing_key_names_through_the_default_exchange(string? exchange, string? routingKey, string? expected)
    {
        var message = new OutboxMessage("x");
        message.Options[RabbitMQOptionKeys.ExchangeName] = exchange;
        message.Options[RabbitMQOptionKeys.RoutingKey] = routingKey;

        Assert.Equal(expected, _publisher.GetDestinationName(message));
    }

    [Theory]
    [InlineData(RabbitMQOptionKeys.ExchangeName)]
    [InlineData(RabbitMQOptionKeys.RoutingKey)]
    [InlineData(RabbitMQOptionKeys.ExchangeDurable)]
    public void A_message_with_an_option_of_a_wrong_type_names_no_destination_and_does_not_throw(string key)
    {
        var message = new OutboxMessage("x");
        message.Options[RabbitMQOptionKeys.ExchangeName] = "orders";
        message.Options[RabbitMQOptionKeys.RoutingKey] = "orders.created";
        message.Options[key] = new List<object?> { "not", "valid" };

        Assert.Null(_publisher.GetDestinationName(message));
    }

    [Fact]
    public void A_message_to_an_internal_exchange_which_cannot_be_published_names_no_destination()
    {
        var message = new OutboxMessage("x");
        message.Options[RabbitMQOptionKeys.ExchangeName] = "orders";
        message.Options[RabbitMQOptionKeys.ExchangeInternal] = true;

        Assert.Null(_publisher.GetDestinationName(message));
    }

    [Fact]
    public void The_publisher_reports_rabbitmq_and_the_brokers_host_and_port_without_credentials_for_telemetry()
    {
        Assert.Equal("rabbitmq", _publisher.MessagingSystem);
        Assert.Equal("127.0.0.1", _publisher.ServerEndPoint?.Host);
        Assert.Equal(1, _publisher.ServerEndPoint?.Port);
        Assert.DoesNotContain("guest", _publisher.ServerEndPoint?.ToString() ?? "", StringComparison.Ordinal);
    }
}
