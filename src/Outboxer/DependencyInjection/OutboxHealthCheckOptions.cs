namespace Outboxer;

/// <summary>Thresholds of the outbox health check (<see cref="OutboxHealthChecksBuilderExtensions.AddOutboxer"/>).</summary>
public sealed class OutboxHealthCheckOptions
{
    /// <summary>Gets or sets the age of the oldest pending message (the lag) above which the outbox reports Degraded.</summary>
    /// <value>The default value is 1 minute.</value>
    public TimeSpan DegradedLag { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Gets or sets the lag above which the outbox reports Unhealthy.</summary>
    /// <value>The default value is 10 minutes.</value>
    public TimeSpan UnhealthyLag { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Gets or sets the number of pending messages (the backlog) above which the outbox reports Degraded.</summary>
    /// <value>The default value is 10,000.</value>
    public long DegradedBacklog { get; set; } = 10_000;

    /// <summary>Gets or sets the number of dead letters above which the outbox reports Degraded.</summary>
    /// <value>The default value is 0: any dead letter degrades the outbox until it is requeued or purged.</value>
    public long DegradedDeadLetters { get; set; }

    /// <summary>Gets or sets a value indicating whether a dispatcher that is not running makes the outbox Unhealthy.</summary>
    /// <value>The default value is <see langword="true"/>; turn it off for processes that only enqueue.</value>
    public bool RequireRunningDispatcher { get; set; } = true;
}
