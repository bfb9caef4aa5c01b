namespace Outboxer;

/// <summary>
/// Settings of an <see cref="Outbox"/>: how often the dispatcher and the cleanup run and how much each does per step.
/// The values are read and validated once, when the <see cref="Outbox"/> is constructed.
/// </summary>
public sealed class OutboxOptions
{
    /// <summary>Gets or sets how long the dispatcher waits before it looks for pending messages again when it found none.</summary>
    /// <value>The default value is 1 second. Must be positive.</value>
    /// <remarks>
    /// The dispatcher drains without waiting while messages are pending, and wakes at once when this process
    /// enqueues or when the store notifies it of another process's commit (<see cref="Providers.IOutboxWakeUpSource"/>). When
    /// nothing pushes such wake-ups, it looks again after a few milliseconds while messages come, and backs off to this interval when idle.
    /// The interval bounds the latency of messages written by other processes.
    /// </remarks>
    public TimeSpan CheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Gets or sets how often the cleanup deletes old dispatched messages.</summary>
    /// <value>The default value is 1 minute. Must be positive.</value>
    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Gets or sets how long dispatched messages are kept before the cleanup deletes them.</summary>
    /// <value>The default value is 7 days. Must be positive.</value>
    /// <remarks>The cutoff is computed at every cleanup run as the current time minus this period.</remarks>
    public TimeSpan CleanupOlderThan { get; set; } = TimeSpan.FromDays(7);

    /// <summary>Gets or sets how many rows the cleanup deletes per statement. It repeats until none are left.</summary>
    /// <value>The default value is 100. Must be positive.</value>
    public int CleanupBatchSize { get; set; } = 100;

    /// <summary>Gets or sets how many pending messages the dispatcher claims and publishes at a time.</summary>
    /// <value>The default value is 100. Must be positive.</value>
    public int MessageBatchSize { get; set; } = 100;

    /// <summary>
    /// Gets or sets how many claimed batches one dispatcher publishes and marks at a time. While a batch waits for the event stream's
    /// confirmations and for its mark, the dispatcher already claims and publishes the next one, so the database and the broker work
    /// side by side. Messages with the same <see cref="OutboxMessage.OrderingKey"/> still go out one after another: a key's next message
    /// cannot be claimed until the previous one is dispatched.
    /// </summary>
    /// <value>
    /// The default value is 4. Must be positive; 1 claims, publishes and marks strictly one batch after another. At most
    /// <c>MaxBatchesInFlight × MessageBatchSize</c> messages are held in memory. While the event stream fails, the dispatcher sends one batch at
    /// a time.
    /// </value>
    public int MaxBatchesInFlight { get; set; } = 4;

    /// <summary>
    /// Gets or sets how long a claimed message stays reserved for the dispatcher that claimed it. Other dispatchers
    /// skip it until then; if its dispatcher crashed, another one picks it up after the lease.
    /// </summary>
    /// <value>The default value is 30 seconds. Must be greater than <see cref="PublishTimeout"/>.</value>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets how long the dispatcher waits for the event stream to confirm a batch before it counts the messages as failed.</summary>
    /// <value>The default value is 10 seconds. Must be positive and less than <see cref="LeaseDuration"/>.</value>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Gets or sets how long a message whose publishing failed waits before it is tried again the first time. The delay doubles with
    /// each further failed attempt, up to <see cref="MaxRetryDelay"/>.
    /// </summary>
    /// <value>The default value is 5 seconds. Must not be negative.</value>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Gets or sets how much each retry delay varies at random, as a fraction of it: a delay <c>d</c> becomes a value between
    /// <c>d × (1 − RetryJitter)</c> and <c>d × (1 + RetryJitter)</c>, so that messages that failed together (a broker outage) do not all
    /// come back at the same moment.
    /// </summary>
    /// <value>The default value is 0.2. Must be between 0 (no jitter) and 1.</value>
    public double RetryJitter { get; set; } = 0.2;

    /// <summary>Gets or sets the longest a failed message waits before it is tried again (before <see cref="RetryJitter"/>).</summary>
    /// <value>The default value is 5 minutes. Must not be less than <see cref="RetryDelay"/>.</value>
    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Gets or sets how many times a message is tried before it moves to the dead letters (kept, queryable, and requeued or purged
    /// through <see cref="Outbox.GetDeadLettersAsync"/>, <see cref="Outbox.RequeueDeadLettersAsync"/> and
    /// <see cref="Outbox.PurgeDeadLettersAsync"/>). A failure that cannot succeed (a non-transient <see cref="OutboxException"/>:
    /// unroutable, too large, an invalid option) moves it there at once.
    /// </summary>
    /// <value>
    /// The default value is 20. Must be positive. Attempts that fail while the broker is down count too: with the default delays
    /// (5 s doubling to 5 min), 20 attempts span about 75 minutes of outage; raise it (or the delays) for longer outages, or requeue
    /// the dead letters afterwards. When a whole batch fails, the dispatcher pauses instead of trying the rest of the backlog.
    /// </value>
    public int MaxAttempts { get; set; } = 20;

    /// <summary>
    /// Gets or sets how many notifications <see cref="Outbox.Dispatched"/> and <see cref="Outbox.Errors"/> each keep for a slow
    /// reader. When a reader falls behind, the oldest notifications are dropped, so dispatch never waits for a reader.
    /// </summary>
    /// <value>The default value is 1024. Must be positive.</value>
    public int NotificationCapacity { get; set; } = 1024;

    /// <summary>
    /// Gets or sets a value indicating whether <see cref="Outbox.StartAsync"/> (and so the host) starts the dispatcher on this node. Turn
    /// it off on nodes that only enqueue, or that run only the cleanup; with dependency injection such an outbox needs no publisher.
    /// </summary>
    /// <value>The default value is <see langword="true"/>. Configuration key: <c>Outboxer:RunDispatcher</c>.</value>
    /// <remarks><see cref="Outbox.StartDispatcher"/> and <see cref="Outbox.DispatchPendingAsync"/> still work when the outbox has a publisher.</remarks>
    public bool RunDispatcher { get; set; } = true;

    /// <summary>
    /// Gets or sets a value indicating whether <see cref="Outbox.StartAsync"/> (and so the host) starts the cleanup on this node, for
    /// example on one node of a fleet only.
    /// </summary>
    /// <value>The default value is <see langword="true"/>. Configuration key: <c>Outboxer:RunCleanup</c>.</value>
    /// <remarks><see cref="Outbox.StartCleanup"/> and <see cref="Outbox.CleanupAsync"/> still work.</remarks>
    public bool RunCleanup { get; set; } = true;

    /// <summary>Checks every value and throws when any is out of range, naming every one that is.</summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// A value is out of range. <see cref="ArgumentException.ParamName"/> is the first such property and
    /// <see cref="ArgumentOutOfRangeException.ActualValue"/> its value; the message names each invalid property with its value.
    /// </exception>
    public void Validate()
    {
        var problems = GetProblems();
        if (problems.Count > 0)
        {
            var first = problems[0];
            throw new ArgumentOutOfRangeException(
                first.Property,
                first.Value,
                string.Join(" ", problems.Select(p => $"OutboxOptions.{p.Property} {p.Rule}, but it is {p.Value}.")));
        }
    }

    /// <summary>Every value out of range, in declaration order: the property, its value, and the rule it breaks.</summary>
    internal IReadOnlyList<(string Property, object Value, string Rule)> GetProblems()
    {
        var problems = new List<(string Property, object Value, string Rule)>();
        Positive(problems, CheckInterval, nameof(CheckInterval));
        Positive(problems, CleanupInterval, nameof(CleanupInterval));
        Positive(problems, CleanupOlderThan, nameof(CleanupOlderThan));
        Positive(problems, CleanupBatchSize, nameof(CleanupBatchSize));
        Positive(problems, MessageBatchSize, nameof(MessageBatchSize));
        Positive(problems, MaxBatchesInFlight, nameof(MaxBatchesInFlight));
        Positive(problems, LeaseDuration, nameof(LeaseDuration));
        Positive(problems, PublishTimeout, nameof(PublishTimeout));
        if (RetryDelay < TimeSpan.Zero)
        {
            problems.Add((nameof(RetryDelay), RetryDelay, "must not be negative (0 retries at once)"));
        }

        if (RetryJitter is < 0 or > 1 || double.IsNaN(RetryJitter))
        {
            problems.Add((nameof(RetryJitter), RetryJitter, "must be between 0 (no jitter) and 1"));
        }

        if (MaxRetryDelay < RetryDelay)
        {
            problems.Add((nameof(MaxRetryDelay), MaxRetryDelay, $"must not be less than OutboxOptions.{nameof(RetryDelay)} ({RetryDelay})"));
        }

        Positive(problems, MaxAttempts, nameof(MaxAttempts));
        Positive(problems, NotificationCapacity, nameof(NotificationCapacity));
        if (PublishTimeout > TimeSpan.Zero && PublishTimeout >= LeaseDuration)
        {
            problems.Add((
                nameof(PublishTimeout),
                PublishTimeout,
                $"must be less than OutboxOptions.{nameof(LeaseDuration)} ({LeaseDuration}), or another dispatcher could claim a message that is still being published"));
        }

        return problems;
    }

    internal OutboxOptions Clone() => (OutboxOptions)MemberwiseClone();

    /// <summary>The wait after the given failed attempt (1 for the first): <see cref="RetryDelay"/> doubled per further attempt, capped.</summary>
    internal TimeSpan RetryDelayAfter(int attempt)
    {
        var delay = RetryDelay;
        for (var i = 1; i < attempt && delay < MaxRetryDelay; i++)
        {
            delay += delay;
        }

        return delay < MaxRetryDelay ? delay : MaxRetryDelay;
    }

    /// <summary><see cref="RetryDelayAfter"/> varied by <see cref="RetryJitter"/>.</summary>
    internal TimeSpan JitteredRetryDelayAfter(int attempt)
    {
        var delay = RetryDelayAfter(attempt);
        return RetryJitter == 0 ? delay : delay * (1 + (RetryJitter * ((2 * Random.Shared.NextDouble()) - 1)));
    }

    private static void Positive(List<(string Property, object Value, string Rule)> problems, TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
        {
            problems.Add((name, value, "must be positive"));
        }
    }

    private static void Positive(List<(string Property, object Value, string Rule)> problems, int value, string name)
    {
        if (value <= 0)
        {
            problems.Add((name, value, "must be positive"));
        }
    }
}
