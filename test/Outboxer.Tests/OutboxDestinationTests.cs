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

    // Lone surrogates survive neither attribute arguments (metadata stores strings as UTF-8) nor the runner's serialization of theory
    // data, so the cases are built inside the test.
    private static readonly (string Value, string Expected)[] Unstorable =
    [
        ("a\0b", "U+0000, found at index 1"),
        (new string([(char)0xD800, 'x']), "half a surrogate pair (U+D800) at index 0"),
        (new string(['x', (char)0xDC00]), "half a surrogate pair (U+DC00) at index 1"),
    ];

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Text_a_table_cannot_store_is_refused_as_an_ordering_key_or_a_destination_naming_where_it_is(int @case)
    {
        var (value, expected) = Unstorable[@case];
        var message = new OutboxMessage("a");

        Assert.Contains(expected, Assert.Throws<ArgumentException>(() => message.OrderingKey = value).Message, StringComparison.Ordinal);
        Assert.Contains(expected, Assert.Throws<ArgumentException>(() => message.Destination = value).Message, StringComparison.Ordinal);
        message.OrderingKey = "emoji \ud83d\ude00 key";
        Assert.Equal("emoji \ud83d\ude00 key", message.OrderingKey);
    }

    [Fact]
    public async Task A_destination_the_table_cannot_store_is_left_out_and_the_message_is_still_enqueued()
    {
        var store = new InMemoryOutboxStore();
        await using var outbox = new Outbox(store, new NamingPublisher(_ => "bad\0name"));
        var message = new OutboxMessage("a");

        await outbox.SendAsync(message, Ct);

        Assert.Null(message.Destination);
        Assert.Equal(1, store.PendingCount);
    }

    private sealed class NamingPublisher(Func<OutboxMessage, string?> name) : IOutboxPublisher
    {
        public ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public string? GetDestinationName(OutboxMessage message) => name(message);
    }
}
