using Outboxer.Providers;
using Xunit;

namespace Outboxer.Tests;

public sealed class OrderedBatchSplitterTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Messages_are_split_in_order_into_requests_of_at_most_the_message_limit()
    {
        var splitter = new OrderedBatchSplitter(maxMessagesPerRequest: 10, maxBytesPerRequest: long.MaxValue);

        var requests = splitter.Split(Enumerable.Range(0, 25), _ => 1);

        Assert.Equal([10, 10, 5], requests.Select(r => r.Count));
        Assert.Equal(Enumerable.Range(0, 25), requests.SelectMany(r => r));
    }

    [Fact]
    public void A_request_is_cut_before_the_message_that_would_take_it_over_the_byte_limit_counting_the_overhead()
    {
        var splitter = new OrderedBatchSplitter(maxMessagesPerRequest: 100, maxBytesPerRequest: 100, requestOverheadBytes: 10);

        var requests = splitter.Split([40, 50, 1, 90, 30, 60], size => size);

        // 10 + 40 + 50 = 100 fits exactly; 1 more does not. 10 + 1 + 90 > 100. 10 + 90 = 100. 10 + 30 + 60 = 100.
        Assert.Equal(["40 50", "1", "90", "30 60"], requests.Select(r => string.Join(' ', r)));
    }

    [Fact]
    public void A_message_larger_than_the_byte_limit_gets_a_request_of_its_own()
    {
        var splitter = new OrderedBatchSplitter(maxMessagesPerRequest: 10, maxBytesPerRequest: 100);

        var requests = splitter.Split([10, 500, 10], size => size);

        Assert.Equal(["10", "500", "10"], requests.Select(r => string.Join(' ', r)));
    }

    [Fact]
    public void A_message_that_must_go_alone_gets_a_request_of_its_own_in_its_place()
    {
        var splitter = new OrderedBatchSplitter(maxMessagesPerRequest: 10, maxBytesPerRequest: 1000);

        var requests = splitter.Split(["a", "b", "ALONE", "ALSO ALONE", "c", "d"], _ => 1, sendAlone: m => m.Contains("ALONE", StringComparison.Ordinal));

        Assert.Equal(["a|b", "ALONE", "ALSO ALONE", "c|d"], requests.Select(r => string.Join('|', r)));
    }

    [Fact]
    public void No_messages_give_no_requests()
    {
        var splitter = new OrderedBatchSplitter(10, 100);

        Assert.Empty(splitter.Split(Array.Empty<int>(), _ => 1));
    }

    [Theory]
    [InlineData(0, 100, 0, "maxMessagesPerRequest")]
    [InlineData(10, 0, 0, "maxBytesPerRequest")]
    [InlineData(10, 100, -1, "requestOverheadBytes")]
    public void Limits_that_cannot_hold_a_message_are_rejected_by_name(int maxMessages, long maxBytes, long overhead, string parameter)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new OrderedBatchSplitter(maxMessages, maxBytes, overhead));

        Assert.Equal(parameter, ex.ParamName);
    }

    [Fact]
    public void The_limits_are_kept_as_given()
    {
        var splitter = new OrderedBatchSplitter(500, 5_242_880, 12);

        Assert.Equal(500, splitter.MaxMessagesPerRequest);
        Assert.Equal(5_242_880, splitter.MaxBytesPerRequest);
        Assert.Equal(12, splitter.RequestOverheadBytes);
    }

    [Fact]
    public void Before_any_failure_nothing_is_held_back_and_the_request_is_returned_as_it_is()
    {
        var splitter = new OrderedBatchSplitter(10, 100);
        IReadOnlyList<Message> request = [new("a", 0), new("b", 1)];

        var toSend = splitter.FilterHeldBack(request, m => m.Key, _ => Assert.Fail("Nothing is held back yet."));

        Assert.Same(request, toSend);
    }

    [Fact]
    public void After_a_failure_the_later_messages_of_its_key_are_held_back_in_order_and_the_others_go()
    {
        var splitter = new OrderedBatchSplitter(10, 100);
        splitter.MarkFailed("a");
        var heldBack = new List<Message>();
        Message[] request = [new("a", 0), new("b", 1), new("a", 2), new(null, 3), new("c", 4)];

        var toSend = splitter.FilterHeldBack(request, m => m.Key, heldBack.Add);

        Assert.Equal([0, 2], heldBack.Select(m => m.Index));
        Assert.Equal([1, 3, 4], toSend.Select(m => m.Index));
        Assert.True(splitter.IsHeldBack("a"));
        Assert.False(splitter.IsHeldBack("b"));
    }

    [Fact]
    public void A_request_whose_messages_are_all_held_back_leaves_nothing_to_send()
    {
        var splitter = new OrderedBatchSplitter(10, 100);
        splitter.MarkFailed("a");

        var toSend = splitter.FilterHeldBack([new Message("a", 0), new Message("a", 1)], m => m.Key, _ => { });

        Assert.Empty(toSend);
    }

    [Fact]
    public void Messages_without_an_ordering_key_are_never_held_back()
    {
        var splitter = new OrderedBatchSplitter(10, 100);
        splitter.MarkFailed(null);
        splitter.MarkFailed(string.Empty);
        IReadOnlyList<Message> request = [new(null, 0), new(string.Empty, 1)];

        Assert.False(splitter.IsHeldBack(null));
        Assert.False(splitter.IsHeldBack(string.Empty));
        Assert.Same(request, splitter.FilterHeldBack(request, m => m.Key, _ => Assert.Fail("Nothing is held back.")));
    }

    [Fact]
    public void Ordering_keys_are_compared_ordinally()
    {
        var splitter = new OrderedBatchSplitter(10, 100);
        splitter.MarkFailed("Order-1");

        Assert.True(splitter.IsHeldBack("Order-1"));
        Assert.False(splitter.IsHeldBack("order-1"));
    }

    [Fact]
    public void A_publisher_loop_over_the_splitter_holds_back_only_what_follows_a_failure_of_the_same_key()
    {
        // Requests of two messages; the first request fails for key "a" only (as a batch answer can fail single entries).
        var splitter = new OrderedBatchSplitter(maxMessagesPerRequest: 2, maxBytesPerRequest: 1000);
        Message[] batch = [new("a", 0), new("b", 1), new("a", 2), new("b", 3), new("c", 4), new("a", 5)];
        var results = new string?[batch.Length];
        var sent = new List<string>();

        foreach (var request in splitter.Split(batch, _ => 1))
        {
            var toSend = splitter.FilterHeldBack(request, m => m.Key, m => results[m.Index] = "held back");
            if (toSend.Count == 0)
            {
                continue;
            }

            sent.Add(string.Join(' ', toSend.Select(m => m.Index)));
            foreach (var message in toSend)
            {
                var failed = message.Index == 0;
                results[message.Index] = failed ? "failed" : "sent";
                if (failed)
                {
                    splitter.MarkFailed(message.Key);
                }
            }
        }

        Assert.Equal(["0 1", "3", "4"], sent);
        Assert.Equal(["failed", "sent", "held back", "sent", "sent", "held back"], results);
    }

    [Fact]
    public async Task Destinations_are_sent_in_the_order_they_first_appear_each_with_its_messages_in_batch_order()
    {
        var sent = new List<string>();

        await OrderedBatchSplitter.ForEachDestinationAsync(
            [new Message("q2", 0), new Message("q1", 1), new Message("q2", 2), new Message("Q1", 3), new Message("q1", 4)],
            m => m.Key!,
            (destination, messages) =>
            {
                lock (sent)
                {
                    sent.Add($"{destination}: {string.Join(' ', messages.Select(m => m.Index))}");
                }

                return Task.CompletedTask;
            });

        Assert.Equal(["q2: 0 2", "q1: 1 4", "Q1: 3"], sent);
    }

    [Fact]
    public async Task Destinations_are_sent_concurrently()
    {
        // Each destination waits for the other to start: sending them one after the other would never finish.
        var started = new Dictionary<string, TaskCompletionSource>
        {
            ["q1"] = new(TaskCreationOptions.RunContinuationsAsynchronously),
            ["q2"] = new(TaskCreationOptions.RunContinuationsAsynchronously),
        };

        var all = OrderedBatchSplitter.ForEachDestinationAsync(
            ["q1", "q2"],
            m => m,
            async (destination, _) =>
            {
                started[destination].SetResult();
                await started[destination == "q1" ? "q2" : "q1"].Task;
            });

        await all.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.True(all.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task With_a_single_destination_its_failure_comes_through_unchanged()
    {
        var cancelled = new OperationCanceledException("stopped");

        var thrown = await Assert.ThrowsAsync<OperationCanceledException>(() =>
            OrderedBatchSplitter.ForEachDestinationAsync(["q1", "q1"], m => m, async (_, _) =>
            {
                await Task.Yield();
                throw cancelled;
            }));

        Assert.Same(cancelled, thrown);
    }

    [Fact]
    public async Task No_messages_send_nothing()
    {
        await OrderedBatchSplitter.ForEachDestinationAsync(Array.Empty<string>(), m => m, (_, _) => throw new InvalidOperationException("Nothing to send."));
    }

    private sealed record Message(string? Key, int Index);
}
