using System.Diagnostics;
using Outboxer.Testing.Servers;
using RabbitMQ.Client;
using Xunit;

namespace Outboxer.RabbitMQ.Tests;

/// <summary>
/// Tests that stop and start the RabbitMQ node. Within this assembly they run alone, after every parallel test; the
/// <c>Category=Disruptive</c> trait keeps them out of eng/test.sh's parallel phase, so other test assemblies are not disturbed.
/// </summary>
[CollectionDefinition(nameof(BrokerRestartCollection), DisableParallelization = true)]
public sealed class BrokerRestartCollection;

[Collection(nameof(BrokerRestartCollection))]
[Trait("Category", "Disruptive")]
public sealed class RabbitMQBrokerRestartTests
{
    private static readonly TimeSpan RecoveryBudget = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Publishing_fails_transiently_while_the_broker_is_down_and_succeeds_again_after_it_restarts()
    {
        var name = $"outboxer-test-restart-{Guid.NewGuid():N}";
        await using (var admin = await RabbitMQServer.ConnectAsync("Outboxer.RabbitMQ.Tests.Restart"))
        await using (var channel = await admin.CreateChannelAsync(cancellationToken: Ct))
        {
            // Durable exchange and queue: both survive the restart, and so do the persistent messages in the queue.
            await channel.ExchangeDeclareAsync(name, ExchangeType.Topic, durable: true, autoDelete: false, cancellationToken: Ct);
            await channel.QueueDeclareAsync(name, durable: true, exclusive: false, autoDelete: false, cancellationToken: Ct);
            await channel.QueueBindAsync(name, name, "#", cancellationToken: Ct);
        }

        try
        {
            await using var publisher = await RabbitMQPublisher.ConnectAsync(RabbitMQServer.Url, cancellationToken: Ct);
            var before = NewMessage(name, "before the restart");
            await publisher.PublishAsync(before, Ct);

            var restarted = false;
            try
            {
                await Repository.RunServersScriptAsync("stop", "rabbitmq");

                using (var down = CancellationTokenSource.CreateLinkedTokenSource(Ct))
                {
                    down.CancelAfter(TimeSpan.FromSeconds(15));
                    var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(NewMessage(name, "while down"), down.Token));
                    Assert.True(ex.IsTransient, ex.ToString());
                    TestContext.Current.TestOutputHelper?.WriteLine($"While down: {ex.Message}");
                }

                await Repository.RunServersScriptAsync("start", "rabbitmq");
                restarted = true;
            }
            finally
            {
                if (!restarted)
                {
                    await Repository.RunServersScriptAsync("start", "rabbitmq");
                }
            }

            // Automatic recovery reconnects in the background; until then publishing keeps failing transiently, as the outbox expects.
            var after = NewMessage(name, "after the restart");
            var elapsed = Stopwatch.StartNew();
            var failures = new List<string>();
            while (true)
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(Ct);
                attempt.CancelAfter(TimeSpan.FromSeconds(10));
                try
                {
                    await publisher.PublishAsync(after, attempt.Token);
                    break;
                }
                catch (Exception ex) when (elapsed.Elapsed < RecoveryBudget && (ex is OutboxException { IsTransient: true } || (ex is OperationCanceledException && !Ct.IsCancellationRequested)))
                {
                    failures.Add(ex.Message);
                    await Task.Delay(TimeSpan.FromMilliseconds(500), Ct);
                }
            }

            TestContext.Current.TestOutputHelper?.WriteLine($"Recovered after {elapsed.Elapsed} and {failures.Count} failed attempt(s): {string.Join(" | ", failures)}");

            var received = await GetAllAsync(name, 2);
            Assert.Equal([before.MessageId.ToString(), after.MessageId.ToString()], received);
        }
        finally
        {
            await using var admin = await RabbitMQServer.ConnectAsync("Outboxer.RabbitMQ.Tests.Restart");
            await using var channel = await admin.CreateChannelAsync(cancellationToken: Ct);
            await channel.QueueDeleteAsync(name, cancellationToken: Ct);
            await channel.ExchangeDeleteAsync(name, cancellationToken: Ct);
        }
    }

    private static OutboxMessage NewMessage(string exchange, string payload)
    {
        var message = new OutboxMessage(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero) };
        message.Options[RabbitMQOptionKeys.ExchangeName] = exchange;
        message.Options[RabbitMQOptionKeys.RoutingKey] = "restart.test";
        return message;
    }

    /// <summary>Reads the queue with basic.get until <paramref name="count"/> messages came or 30 seconds passed; returns their message ids.</summary>
    private static async Task<List<string?>> GetAllAsync(string queue, int count)
    {
        await using var connection = await RabbitMQServer.ConnectAsync("Outboxer.RabbitMQ.Tests.Restart");
        await using var channel = await connection.CreateChannelAsync(cancellationToken: Ct);
        var ids = new List<string?>();
        var elapsed = Stopwatch.StartNew();
        while (ids.Count < count && elapsed.Elapsed < TimeSpan.FromSeconds(30))
        {
            if (await channel.BasicGetAsync(queue, autoAck: true, Ct) is { } result)
            {
                Assert.Equal(DeliveryModes.Persistent, result.BasicProperties.DeliveryMode);
                ids.Add(result.BasicProperties.MessageId);
            }
            else
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), Ct);
            }
        }

        return ids;
    }
}
