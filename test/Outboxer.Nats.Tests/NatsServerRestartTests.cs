using System.Diagnostics;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Nats.Tests;

/// <summary>
/// Tests that stop and start the NATS server. Within this assembly they run alone, after every parallel test; the
/// <c>Category=Disruptive</c> trait keeps them out of eng/test.sh's parallel phase, so other test assemblies are not disturbed.
/// </summary>
[CollectionDefinition(nameof(ServerRestartCollection), DisableParallelization = true)]
public sealed class ServerRestartCollection;

[Collection(nameof(ServerRestartCollection))]
[Trait("Category", "Disruptive")]
public sealed class NatsServerRestartTests
{
    private static readonly TimeSpan RecoveryBudget = TimeSpan.FromSeconds(60);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Publishing_fails_transiently_while_nats_is_down_and_after_the_restart_a_republished_message_is_still_stored_once()
    {
        var id = Guid.NewGuid().ToString("N");
        var stream = $"OUTBOXER_TEST_RESTART_{id}";
        var subject = $"outboxer.restart.{id}";
        await using (var admin = await NatsServer.ConnectAsync("Outboxer.Nats.Tests.Restart"))
        {
            // File storage (the default): the stream and the ids of its duplicate window survive the restart.
            await new NatsJSContext(admin).CreateStreamAsync(new StreamConfig(stream, [subject]), Ct);
        }

        try
        {
            await using var publisher = NatsPublisher.Create(NatsServer.Url);
            var before = NewMessage(subject, "before the restart");
            await publisher.PublishAsync(before, Ct);

            var restarted = false;
            try
            {
                await Repository.RunServersScriptAsync("stop", "nats");

                using (var down = CancellationTokenSource.CreateLinkedTokenSource(Ct))
                {
                    // The publisher's own connection fails a publish while disconnected after its command timeout, before this bound.
                    down.CancelAfter(TimeSpan.FromSeconds(15));
                    var ex = await Assert.ThrowsAsync<OutboxException>(async () => await publisher.PublishAsync(NewMessage(subject, "while down"), down.Token));
                    Assert.True(ex.IsTransient, ex.ToString());
                    TestContext.Current.TestOutputHelper?.WriteLine($"While down: {ex.Message}");
                }

                await Repository.RunServersScriptAsync("start", "nats");
                restarted = true;
            }
            finally
            {
                if (!restarted)
                {
                    await Repository.RunServersScriptAsync("start", "nats");
                }
            }

            // The client reconnects by itself; until then publishing keeps failing transiently, as the outbox expects. The message
            // published before the restart is published again, as a relay that crashed before marking it would.
            var after = NewMessage(subject, "after the restart");
            var elapsed = Stopwatch.StartNew();
            var failures = new List<string>();
            while (true)
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(Ct);
                attempt.CancelAfter(TimeSpan.FromSeconds(10));
                try
                {
                    var results = await publisher.PublishBatchAsync([before, after], attempt.Token);
                    if (results.All(r => r is null))
                    {
                        break;
                    }

                    var failure = results.First(r => r is not null)!;
                    Assert.True(failure is OutboxException { IsTransient: true } && elapsed.Elapsed < RecoveryBudget, failure.ToString());
                    failures.Add(failure.Message);
                }
                catch (OperationCanceledException) when (!Ct.IsCancellationRequested && elapsed.Elapsed < RecoveryBudget)
                {
                    failures.Add("no answer within 10 s");
                }

                await Task.Delay(TimeSpan.FromMilliseconds(500), Ct);
            }

            TestContext.Current.TestOutputHelper?.WriteLine($"Recovered after {elapsed.Elapsed} and {failures.Count} failed attempt(s): {string.Join(" | ", failures)}");

            await using var check = await NatsServer.ConnectAsync("Outboxer.Nats.Tests.Restart");
            var info = (await new NatsJSContext(check).GetStreamAsync(stream, cancellationToken: Ct)).Info;
            Assert.Equal(2, info.State.Messages);
        }
        finally
        {
            await using var admin = await NatsServer.ConnectAsync("Outboxer.Nats.Tests.Restart");
            await new NatsJSContext(admin).DeleteStreamAsync(stream, CancellationToken.None);
        }
    }

    private static OutboxMessage NewMessage(string subject, string payload)
    {
        var message = new OutboxMessage(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero) };
        message.Options[NatsOptionKeys.Subject] = subject;
        return message;
    }
}
