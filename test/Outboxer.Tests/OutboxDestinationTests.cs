using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

/// <summary>The outbox records where each message goes, as its event stream names it, for statistics per destination.</summary>
public sealed class OutboxDestinationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task An_enqueued_message_carries_the_destination_its_publisher_names_unless_it_already_has_one()
    {
        var store = new InMemoryOutboxStore();
        await using var outbox = new Outbox(store, new NamingPublisher(m => m.Options.GetString("to")));

        var named = new OutboxMessage("a");
        named.Options["to"] = "orders";
        var preset = new OutboxMessage("b") { Destination = "billing" };
        preset.Options["to"] = "orders";
        var unknown = new OutboxMessage("c");
        var tooLong = new OutboxMessage("d");
        tooLong.Options["to"] = new string('q', OutboxMessage.MaxDestinationLength + 1);
        foreach (var message in new[] { named, preset, unknown, tooLong })
        {
            await outbox.SendAsync(message, Ct);
        }

        Assert.Equal(["orders", "billing", null, null], new[] { named, preset, unknown, tooLong }.Select(m => m.Destination));
        var statistics = await outbox.Administration!.GetDestinationStatisticsAsync(Ct);
        Assert.Equal([null, "billing", "orders"], statistics.Select(d => d.Destination));
        Assert.Equal([2L, 1L, 1L], statistics.Select(d => d.Pending));
    }

    [Fact]
    public void A_destination_that_is_empty_or_too_long_is_rejected_naming_its_length()
    {
        var message = new OutboxMessage("a");

        Assert.Throws<ArgumentException>(() => message.Destination = string.Empty);
        var ex = Assert.Throws<ArgumentException>(() => message.Destination = new string('q', 256));
        Assert.Contains("256", ex.Message, StringComparison.Ordinal);
        Assert.Null(message.Destination);
    }

    private sealed class NamingPublisher(Func<OutboxMessage, string?> name) : IOutboxPublisher
    {
        public ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public string? GetDestinationName(OutboxMessage message) => name(message);
    }
}
