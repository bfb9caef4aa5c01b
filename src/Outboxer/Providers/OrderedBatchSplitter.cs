namespace Outboxer.Providers;

/// <summary>
/// Helps an <see cref="IOutboxBatchPublisher"/> send a batch in several requests without letting a message overtake an earlier one of
/// its ordering key. <see cref="ForEachDestinationAsync"/> splits the batch by destination; an instance splits one destination's messages
/// into requests within the broker's limits (<see cref="Split"/>) and, once a message failed (<see cref="MarkFailed"/>), holds back the
/// later messages of the batch with the same ordering key (<see cref="FilterHeldBack"/>), so that they are retried after it.
/// </summary>
/// <remarks>
/// <para>The usual loop for one destination, with the requests sent one after the other:</para>
/// <code>
/// var splitter = new OrderedBatchSplitter(maxMessagesPerRequest: 500, maxBytesPerRequest: 5 * 1024 * 1024);
/// foreach (var request in splitter.Split(messages, m =&gt; m.Size))
/// {
///     var toSend = splitter.FilterHeldBack(request, m =&gt; m.OrderingKey, m =&gt; results[m.Index] = HeldBack(m));
///     // Send toSend (when not empty), record each message's result, and call MarkFailed(key) for each that failed.
/// }
/// </code>
/// <para>
/// A message is held back when its key failed in an earlier request of the same destination, which is checked just before the request
/// is sent: a held-back message still counts towards the limits of the request it was split into. Messages without an ordering key
/// (<see langword="null"/> or empty) are never held back. Keys are compared ordinally.
/// </para>
/// <para>
/// An instance serves one destination's share of one batch, from one task at a time; it is not safe for concurrent use.
/// </para>
/// </remarks>
public sealed class OrderedBatchSplitter
{
    private readonly HashSet<string> _failedKeys = new(StringComparer.Ordinal);

    /// <summary>Initializes a splitter for one destination's share of a batch, with the broker's limits of one request.</summary>
    /// <param name="maxMessagesPerRequest">The most messages one request may carry.</param>
    /// <param name="maxBytesPerRequest">
    /// The most bytes one request may carry: <paramref name="requestOverheadBytes"/> plus the sizes of its messages. A message larger than
    /// that on its own still gets a request of its own; reject it before splitting when the broker would refuse it.
    /// </param>
    /// <param name="requestOverheadBytes">The bytes every request carries besides its messages, for example the destination's name.</param>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="maxMessagesPerRequest"/> or <paramref name="maxBytesPerRequest"/> is not positive, or
    /// <paramref name="requestOverheadBytes"/> is negative.
    /// </exception>
    public OrderedBatchSplitter(int maxMessagesPerRequest, long maxBytesPerRequest, long requestOverheadBytes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxMessagesPerRequest);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBytesPerRequest);
        ArgumentOutOfRangeException.ThrowIfNegative(requestOverheadBytes);
        MaxMessagesPerRequest = maxMessagesPerRequest;
        MaxBytesPerRequest = maxBytesPerRequest;
        RequestOverheadBytes = requestOverheadBytes;
    }

    /// <summary>Gets the most messages one request may carry.</summary>
    public int MaxMessagesPerRequest { get; }

    /// <summary>Gets the most bytes one request may carry, <see cref="RequestOverheadBytes"/> included.</summary>
    public long MaxBytesPerRequest { get; }

    /// <summary>Gets the bytes every request carries besides its messages.</summary>
    public long RequestOverheadBytes { get; }

    /// <summary>
    /// Groups <paramref name="messages"/> by destination, keeping their order within each, and runs <paramref name="sendAsync"/> once per
    /// destination, all destinations concurrently; completes when every one completed.
    /// </summary>
    /// <typeparam name="T">The publisher's form of a message.</typeparam>
    /// <param name="messages">The batch's messages, oldest first.</param>
    /// <param name="destinationOf">Gets the destination of a message; names are compared ordinally.</param>
    /// <param name="sendAsync">Sends one destination's messages, given its name and its messages in batch order.</param>
    /// <returns>A task that completes when <paramref name="sendAsync"/> completed for every destination, and fails as they failed.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static Task ForEachDestinationAsync<T>(IEnumerable<T> messages, Func<T, string> destinationOf, Func<string, IReadOnlyList<T>, Task> sendAsync)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(destinationOf);
        ArgumentNullException.ThrowIfNull(sendAsync);

        // GroupBy yields the groups in the order their destinations first appear, each with its messages in batch order.
        var groups = messages.GroupBy(destinationOf, StringComparer.Ordinal).ToList();
        return groups.Count switch
        {
            0 => Task.CompletedTask,
            1 => sendAsync(groups[0].Key, [.. groups[0]]),
            _ => Task.WhenAll(groups.Select(g => sendAsync(g.Key, [.. g]))),
        };
    }

    /// <summary>
    /// Splits <paramref name="messages"/> into requests, keeping their order: each request takes the next messages while it has fewer
    /// than <see cref="MaxMessagesPerRequest"/> and their sizes plus <see cref="RequestOverheadBytes"/> stay within
    /// <see cref="MaxBytesPerRequest"/>. Every request has at least one message.
    /// </summary>
    /// <typeparam name="T">The publisher's form of a message.</typeparam>
    /// <param name="messages">One destination's messages, in batch order.</param>
    /// <param name="sizeOf">Gets the bytes a message takes in a request.</param>
    /// <param name="sendAlone">
    /// Tells the messages that must have a request of their own, for example those that need an option the broker's batch call lacks;
    /// <see langword="null"/> for none.
    /// </param>
    /// <returns>The requests, in order.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> or <paramref name="sizeOf"/> is <see langword="null"/>.</exception>
    public IReadOnlyList<IReadOnlyList<T>> Split<T>(IEnumerable<T> messages, Func<T, long> sizeOf, Func<T, bool>? sendAlone = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(sizeOf);

        var requests = new List<IReadOnlyList<T>>();
        var current = new List<T>();
        var bytes = RequestOverheadBytes;
        var currentIsAlone = false;
        foreach (var message in messages)
        {
            var size = sizeOf(message);
            var alone = sendAlone?.Invoke(message) ?? false;
            if (current.Count > 0 && (alone || currentIsAlone || current.Count >= MaxMessagesPerRequest || bytes + size > MaxBytesPerRequest))
            {
                requests.Add(current);
                current = [];
                bytes = RequestOverheadBytes;
            }

            current.Add(message);
            bytes += size;
            currentIsAlone = alone;
        }

        if (current.Count > 0)
        {
            requests.Add(current);
        }

        return requests;
    }

    /// <summary>
    /// Records that a message with <paramref name="orderingKey"/> failed, so that the later messages of the batch with that key are held
    /// back. The publisher decides which failures count: usually those that will be retried (a transient failure), since a message that
    /// failed for good is not published again and so cannot be overtaken.
    /// </summary>
    /// <param name="orderingKey">The failed message's ordering key; <see langword="null"/> or empty does nothing.</param>
    public void MarkFailed(string? orderingKey)
    {
        if (!string.IsNullOrEmpty(orderingKey))
        {
            _failedKeys.Add(orderingKey);
        }
    }

    /// <summary>Gets a value indicating whether a message with <paramref name="orderingKey"/> must be held back.</summary>
    /// <param name="orderingKey">The message's ordering key.</param>
    /// <returns>
    /// <see langword="true"/> when <see cref="MarkFailed"/> was called with that key; <see langword="false"/> otherwise, and always for a
    /// <see langword="null"/> or empty key.
    /// </returns>
    public bool IsHeldBack(string? orderingKey) => !string.IsNullOrEmpty(orderingKey) && _failedKeys.Contains(orderingKey);

    /// <summary>
    /// Takes the held-back messages out of <paramref name="request"/> just before it is sent: those whose ordering key failed earlier
    /// (<see cref="IsHeldBack"/>). Call it for every request, after the previous request's failures were recorded.
    /// </summary>
    /// <typeparam name="T">The publisher's form of a message.</typeparam>
    /// <param name="request">A request from <see cref="Split"/>, or part of one.</param>
    /// <param name="orderingKeyOf">Gets the ordering key of a message.</param>
    /// <param name="heldBack">
    /// Called for each held-back message, in order; the publisher fails it with a transient error, so that it is retried after the
    /// message that failed.
    /// </param>
    /// <returns>The messages to send, in order: <paramref name="request"/> itself when none is held back, possibly empty otherwise.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public IReadOnlyList<T> FilterHeldBack<T>(IReadOnlyList<T> request, Func<T, string?> orderingKeyOf, Action<T> heldBack)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(orderingKeyOf);
        ArgumentNullException.ThrowIfNull(heldBack);
        if (_failedKeys.Count == 0)
        {
            return request;
        }

        List<T>? toSend = null;
        for (var i = 0; i < request.Count; i++)
        {
            var message = request[i];
            if (IsHeldBack(orderingKeyOf(message)))
            {
                toSend ??= [.. request.Take(i)];
                heldBack(message);
            }
            else
            {
                toSend?.Add(message);
            }
        }

        return toSend ?? request;
    }
}
