using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Outboxer.Providers;
using Outboxer.RabbitMQ;
using Outboxer.Testing.Servers;
using RabbitMQ.Client.Events;
using RabbitMQ.Client;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// RabbitMQ: a topic exchange and a durable queue bound to it per run, read by a consumer that acknowledges each delivery. The broker
/// does not deduplicate; a delivery it repeats to the consumer (its acknowledgement was lost) carries the redelivered flag and counts
/// as a consumer redelivery, not as a second publish.
/// </summary>
internal sealed class RabbitMQGuaranteeBroker : IGuaranteeBroker
{
    private IConnection? _connection;
    private IChannel? _channel;

    public string Name => "rabbitmq";

    public string DisplayName => "RabbitMQ";

    public bool Deduplicates => false;

    public bool CountsDroppedDuplicates => false;

    public int Port => RabbitMQServer.Url.Port;

    /// <summary>Gets this run's topic exchange; its queue has the same name.</summary>
    public string Exchange { get; private set; } = string.Empty;

    public IReadOnlyList<string> RelayArguments => [Name, RabbitMQServer.Url.ToString()];

    private IChannel Channel => _channel ?? throw new InvalidOperationException("Not started.");

    public async Task StartAsync(string name, Action<Arrival> arrived, CancellationToken cancellationToken)
    {
        Exchange = $"outboxer.guarantees.{name}";
        _connection = await RabbitMQServer.ConnectAsync($"Outboxer.Guarantees.Tests.{name}", factory =>
        {
            factory.AutomaticRecoveryEnabled = true;
            factory.TopologyRecoveryEnabled = true;
            factory.NetworkRecoveryInterval = TimeSpan.FromSeconds(1);
        });

        _channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken);
        await DeclareAsync(Exchange, ExchangeType.Topic, Exchange);
        await _channel.BasicQosAsync(0, 500, global: false, cancellationToken);
        var consumer = new AsyncEventingBasicConsumer(_channel);
        consumer.ReceivedAsync += async (_, delivery) =>
        {
            arrived(new Arrival(delivery.BasicProperties.MessageId ?? string.Empty, Stopwatch.GetTimestamp(), delivery.Redelivered));
            try
            {
                await _channel.BasicAckAsync(delivery.DeliveryTag, multiple: false);
            }
#pragma warning disable CA1031 // The channel may be closing (a broker restart); the broker redelivers with the redelivered flag.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        };
        await _channel.BasicConsumeAsync(Exchange, autoAck: false, consumer, cancellationToken);
    }

    public void Route(OutboxMessage message, string? key)
    {
        message.Options[RabbitMQOptionKeys.ExchangeName] = Exchange;
        message.Options[RabbitMQOptionKeys.ExchangeType] = "topic";
        message.Options[RabbitMQOptionKeys.RoutingKey] = key is null ? "guarantees.unordered" : $"guarantees.{key}";
    }

    public Task<IOutboxPublisher> CreatePublisherAsync(int? port = null, ILoggerFactory? loggerFactory = null) =>
        Task.FromResult<IOutboxPublisher>(new RabbitMQPublisher(port is { } p ? new UriBuilder(RabbitMQServer.Url) { Host = "127.0.0.1", Port = p }.Uri : RabbitMQServer.Url));

    public Task<long?> CountStoredAsync(CancellationToken cancellationToken) => Task.FromResult<long?>(null);

    /// <summary>Declares an exchange and a queue bound to it, on the consumer's channel (used for poison routes).</summary>
    public async Task DeclareAsync(string exchange, string exchangeType, string? queue, IDictionary<string, object?>? queueArguments = null)
    {
        await Channel.ExchangeDeclareAsync(exchange, exchangeType, durable: true, autoDelete: false, cancellationToken: GuaranteeRun.Ct);
        if (queue is not null)
        {
            await Channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments: queueArguments, cancellationToken: GuaranteeRun.Ct);
            await Channel.QueueBindAsync(queue, exchange, "#", cancellationToken: GuaranteeRun.Ct);
        }
    }

    /// <summary>Deletes exchanges and queues (best effort) after the run, with a connection of its own.</summary>
    public static async Task DeleteTopologyAsync(IEnumerable<string> exchanges, IEnumerable<string> queues)
    {
        try
        {
            var factory = new ConnectionFactory { Uri = RabbitMQServer.Url, ClientProvidedName = "Outboxer.Guarantees.Tests.cleanup" };
            await using var connection = await factory.CreateConnectionAsync(CancellationToken.None);
            foreach (var queue in queues)
            {
                await using var channel = await connection.CreateChannelAsync();
                await channel.QueueDeleteAsync(queue);
            }

            foreach (var exchange in exchanges)
            {
                await using var channel = await connection.CreateChannelAsync();
                await channel.ExchangeDeleteAsync(exchange);
            }
        }
#pragma warning disable CA1031 // Best effort: the scenario's result does not depend on it.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is null)
        {
            return;
        }

        try
        {
            await _channel!.CloseAsync();
            await _connection.CloseAsync();
        }
#pragma warning disable CA1031 // Best effort: the broker may be gone.
        catch (Exception)
#pragma warning restore CA1031
        {
        }

        await _connection.DisposeAsync();
        await DeleteTopologyAsync([Exchange], [Exchange]);
    }
}
