namespace Outboxer;

/// <summary>
/// Thresholds of the outbox health check (<see cref="OutboxHealthChecksBuilderExtensions.AddOutboxer"/>), bound from
/// <c>Outboxer:HealthCheck</c> (or <c>Outboxer:&lt;name&gt;:HealthCheck</c>).
/// </summary>
public sealed class OutboxHealthCheckOptions
{
    /// <summary>Gets or sets the age of the oldest pending message (the lag) above which the outbox reports Degraded.</summary>
    /// <value>The default value is 1 minute. Must not be negative. Configuration key: <c>Outboxer:HealthCheck:DegradedLag</c>.</value>
    public TimeSpan DegradedLag { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Gets or sets the lag above which the outbox reports Unhealthy.</summary>
    /// <value>The default value is 10 minutes. Must not be less than <see cref="DegradedLag"/>.</value>
    public TimeSpan UnhealthyLag { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Gets or sets the number of pending messages (the backlog) above which the outbox reports Degraded.</summary>
    /// <value>The default value is 10,000. Must not be negative.</value>
    public long DegradedBacklog { get; set; } = 10_000;

    /// <summary>Gets or sets the number of dead letters above which the outbox reports Degraded.</summary>
    /// <value>The default value is 0: any dead letter degrades the outbox until it is requeued or purged.</value>
    public long DegradedDeadLetters { get; set; }

    /// <summary>Gets or sets a value indicating whether a dispatcher that is not running makes the outbox Unhealthy.</summary>
    /// <value>
    /// The default value is <see langword="true"/>. It applies only where the outbox starts a dispatcher: a node whose
    /// <see cref="OutboxOptions.RunDispatcher"/> is off, or that has no publisher, is not held to it.
    /// </value>
    public bool RequireRunningDispatcher { get; set; } = true;

    /// <summary>Every threshold out of range: the property, its value, and the rule it breaks.</summary>
    internal IReadOnlyList<(string Property, object Value, string Rule)> GetProblems()
    {
        var problems = new List<(string Property, object Value, string Rule)>();
        if (DegradedLag < TimeSpan.Zero)
        {
            problems.Add((nameof(DegradedLag), DegradedLag, "must not be negative"));
        }

        if (UnhealthyLag < DegradedLag)
        {
            problems.Add((nameof(UnhealthyLag), UnhealthyLag, $"must not be less than {nameof(DegradedLag)} ({DegradedLag})"));
        }

        if (DegradedBacklog < 0)
        {
            problems.Add((nameof(DegradedBacklog), DegradedBacklog, "must not be negative"));
        }

        if (DegradedDeadLetters < 0)
        {
            problems.Add((nameof(DegradedDeadLetters), DegradedDeadLetters, "must not be negative"));
        }

        return problems;
    }
}
