using Outboxer.Testing.Servers;
using RabbitMQ.Client;
using Xunit;

namespace Outboxer.RabbitMQ.Tests;

public sealed class RabbitMQPublisherConnectionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_publisher_given_an_address_connects_on_its_first_publish()
    {
        var queue = $"outboxer-lazy-{Guid.NewGuid():N}";
        await using var consumer = await RabbitMQServer.ConnectAsync("lazy-consumer");
        await using var channel = await consumer.CreateChannelAsync(cancellationToken: Ct);
        await channel.QueueDeclareAsync(queue, durable: false, exclusive: true, autoDelete: true, cancellationToken: Ct);

        await using var publisher = new RabbitMQPublisher(RabbitMQServer.Url);
        var message = new OutboxMessage("lazy") { MessageId = Guid.NewGuid(), CreatedAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero) };
        message.Options[RabbitMQOptionKeys.RoutingKey] = queue;
        await publisher.PublishAsync(message, Ct);

        var delivery = await channel.BasicGetAsync(queue, autoAck: true, Ct);
        Assert.NotNull(delivery);
        Assert.Equal(message.MessageId.ToString(), delivery.BasicProperties.MessageId);
    }

    [Fact]
    public async Task A_publisher_whose_broker_is_unreachable_fails_transiently_without_leaking_the_password()
    {
        await using var publisher = new RabbitMQPublisher(new Uri("amqp://outboxer:secret-password@127.0.0.1:1/"));
        var message = new OutboxMessage("nowhere") { MessageId = Guid.NewGuid() };
        message.Options[RabbitMQOptionKeys.RoutingKey] = "nowhere";

        var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(message, Ct));

        Assert.True(ex.IsTransient);
        Assert.DoesNotContain("secret-password", ex.ToString(), StringComparison.Ordinal);
    }
}
