using Outboxer.RabbitMQ;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>Scenario 5: four dispatchers on one table for the whole run, no fault: every committed message exactly once, in per-key order.</summary>
public sealed class FourDispatchersScenarioTests
{
    [Fact]
    public async Task Scenario5_four_dispatchers_on_one_table_deliver_every_committed_message_exactly_once_in_key_order()
    {
        await using var run = await GuaranteeRun.CreateAsync("four-dispatchers");
        for (var i = 0; i < 4; i++)
        {
            // The default lease (30 s) and publish timeout (10 s): no dispatcher crashes here, so none may publish a row another holds.
            await run.StartDispatcherAsync(new OutboxOptions
            {
                MessageBatchSize = 20,
                CheckInterval = TimeSpan.FromMilliseconds(100),
                RetryDelay = TimeSpan.FromMilliseconds(100),
                MaxRetryDelay = TimeSpan.FromSeconds(1),
            });
        }

        await run.ProduceAsync(600, TimeSpan.FromMilliseconds(5), cancellationToken: TestContext.Current.CancellationToken);
        var report = await run.VerifyAsync(crash: false, faults: "none; 4 in-process dispatchers on one table for the whole run");
        GuaranteeRun.AssertGuarantees(report);
        var counts = run.DispatchedBy;
        TestContext.Current.TestOutputHelper?.WriteLine($"marked dispatched by each dispatcher: {string.Join(", ", counts)}");
        Assert.True(counts.All(count => count > 0), $"not every dispatcher took part: {string.Join(", ", counts)}");
    }
}

/// <summary>Scenario 6: poison messages among healthy ones: the healthy ones all arrive, the poison ones end in the dead letters.</summary>
public sealed class PoisonMessageScenarioTests
{
    [Fact]
    public async Task Scenario6_poison_messages_are_dead_lettered_and_every_healthy_message_arrives()
    {
        var rabbit = new RabbitMQGuaranteeBroker();
        await using var run = await GuaranteeRun.CreateAsync("poison", rabbit);
        var unroutable = rabbit.Exchange + ".unbound";   // exists, no queue bound: mandatory publish is returned (non-transient)
        var mismatched = rabbit.Exchange + ".fanout";    // exists as fanout; the message declares it as topic (non-transient)
        var full = rabbit.Exchange + ".full";            // bound to a queue that rejects every publish: nacked (transient)
        var fullQueue = full;
        try
        {
            await rabbit.DeclareAsync(unroutable, "topic", queue: null);
            await rabbit.DeclareAsync(mismatched, "fanout", queue: null);
            await rabbit.DeclareAsync(full, "topic", fullQueue, new Dictionary<string, object?> { ["x-max-length"] = 0, ["x-overflow"] = "reject-publish" });

            var options = GuaranteeRun.FastRecoveryOptions();
            options.MaxAttempts = 3;
            var outbox = await run.StartDispatcherAsync(options);

            var poison = new Dictionary<Guid, (string Kind, int Attempts)>();
            await run.ProduceAsync(150, TimeSpan.FromMilliseconds(5), extra: async (t, transaction, messages) =>
            {
                (string Kind, string Exchange, string? Key, int Attempts)? bad = t switch
                {
                    20 => ("unroutable", unroutable, null, 1),
                    61 => ("exchange type mismatch", mismatched, null, 1),
                    102 => ("nacked by a full queue", full, "k0", 3),   // keyed: k0 must resume once it is dead-lettered
                    _ => null,
                };
                if (bad is not { } b)
                {
                    return;
                }

                var number = run.NextNumber();
                var sequence = b.Key is null ? 0 : run.NextSequence(0);
                var message = run.NewMessage(number, b.Key, sequence);
                message.Options[RabbitMQOptionKeys.ExchangeName] = b.Exchange;
                messages.Add(run.Track(message, number, b.Key, sequence));
                poison[message.MessageId] = (b.Kind, b.Attempts);
                await run.Producer.EnqueueAsync(transaction, message, TestContext.Current.CancellationToken);
            }, TestContext.Current.CancellationToken);

            Assert.Equal(3, poison.Count);
            var report = await run.VerifyAsync(crash: false, faults: "3 poison messages: unroutable, exchange type mismatch (both non-transient), nacked by a full queue (transient, MaxAttempts 3)", poison.Keys.Select(id => id.ToString()));
            GuaranteeRun.AssertGuarantees(report);

            var deadLetters = await outbox.GetDeadLettersAsync(100, cancellationToken: TestContext.Current.CancellationToken);
            foreach (var letter in deadLetters)
            {
                TestContext.Current.TestOutputHelper?.WriteLine($"dead letter {letter.Id} ({letter.MessageId}) attempts {letter.Attempts}: {letter.LastError}");
            }

            Assert.Equal(poison.Keys.Order(), deadLetters.Select(letter => letter.MessageId).Order());
            foreach (var letter in deadLetters)
            {
                var (kind, attempts) = poison[letter.MessageId];
                Assert.True(letter.Attempts == attempts, $"{kind}: dead-lettered after {letter.Attempts} attempt(s), expected {attempts}: {letter.LastError}");
                Assert.False(string.IsNullOrEmpty(letter.LastError), kind);
                Assert.NotNull(letter.DeadLetteredAt);
            }
        }
        finally
        {
            await RabbitMQGuaranteeBroker.DeleteTopologyAsync([unroutable, mismatched, full], [fullQueue]);
        }
    }
}
