using Amazon.SQS;
using Microsoft.Extensions.DependencyInjection;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Sqs.Tests;

public sealed class SqsOutboxBuilderExtensionsTests
{
    [Fact]
    public async Task An_outbox_registered_with_UseSqs_publishes_through_the_registered_client()
    {
        var ct = TestContext.Current.CancellationToken;
        using var client = await SqsServer.ConnectAsync();
        var queue = $"outboxer-di-{Guid.NewGuid():N}";
        var queueUrl = (await client.CreateQueueAsync(queue, ct)).QueueUrl;
        var services = new ServiceCollection();
        services.AddSingleton<IAmazonSQS>(client);
        services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UseSqs(o => o.DefaultQueueName = queue);
        await using (var provider = services.BuildServiceProvider())
        {
            var outbox = provider.GetRequiredService<Outbox>();
            await outbox.SendAsync(new OutboxMessage("through UseSqs"), ct);
            Assert.Equal(1, await outbox.DispatchPendingAsync(ct));
        }

        var received = await client.ReceiveMessageAsync(new Amazon.SQS.Model.ReceiveMessageRequest { QueueUrl = queueUrl, WaitTimeSeconds = 1 }, ct);
        Assert.Equal("through UseSqs", Assert.Single(received.Messages).Body);
        await client.DeleteQueueAsync(queueUrl, ct);
    }
}
