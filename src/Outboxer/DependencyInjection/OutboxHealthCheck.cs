using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Outboxer;

/// <summary>
/// Reports an outbox's health from its statistics: the registration's failure status (Unhealthy by default) when the dispatcher this
/// node should run stopped or the lag is above
/// <see cref="OutboxHealthCheckOptions.UnhealthyLag"/> or the store cannot be read; Degraded when the lag, the backlog or the dead
/// letters are above their thresholds; otherwise Healthy. The statistics are in the result's data.
/// </summary>
public sealed class OutboxHealthCheck : IHealthCheck
{
    private readonly Outbox _outbox;
    private readonly OutboxHealthCheckOptions _options;

    /// <summary>Initializes a health check of <paramref name="outbox"/>.</summary>
    /// <param name="outbox">The outbox to check.</param>
    /// <param name="options">The thresholds; <see langword="null"/> for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="outbox"/> is <see langword="null"/>.</exception>
    public OutboxHealthCheck(Outbox outbox, OutboxHealthCheckOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(outbox);
        _outbox = outbox;
        _options = options ?? new OutboxHealthCheckOptions();
    }

    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var failureStatus = context?.Registration?.FailureStatus ?? HealthStatus.Unhealthy;
        OutboxStatistics statistics;
        try
        {
            statistics = await _outbox.GetStatisticsAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OutboxException ex)
        {
            return new HealthCheckResult(failureStatus, "The outbox's store cannot be read.", ex);
        }

        var data = new Dictionary<string, object>
        {
            ["pending"] = statistics.Pending,
            ["in_flight"] = statistics.InFlight,
            ["dead_lettered"] = statistics.DeadLettered,
            ["lag_seconds"] = statistics.Lag.TotalSeconds,
            ["dispatcher_running"] = _outbox.IsDispatcherRunning,
        };

        if (_options.RequireRunningDispatcher && _outbox.StartsDispatcher && !_outbox.IsDispatcherRunning)
        {
            return new HealthCheckResult(failureStatus, "The outbox's dispatcher is not running.", data: data);
        }

        if (statistics.Lag > _options.UnhealthyLag)
        {
            return new HealthCheckResult(failureStatus, $"The oldest pending message has waited {statistics.Lag} (more than {_options.UnhealthyLag}).", data: data);
        }

        var problems = new List<string>();
        if (statistics.Lag > _options.DegradedLag)
        {
            problems.Add($"the oldest pending message has waited {statistics.Lag} (more than {_options.DegradedLag})");
        }

        if (statistics.Pending > _options.DegradedBacklog)
        {
            problems.Add($"{statistics.Pending} messages are pending (more than {_options.DegradedBacklog})");
        }

        if (statistics.DeadLettered > _options.DegradedDeadLetters)
        {
            problems.Add($"{statistics.DeadLettered} messages are in the dead letters (more than {_options.DegradedDeadLetters})");
        }

        return problems.Count == 0
            ? HealthCheckResult.Healthy($"{statistics.Pending} pending, lag {statistics.Lag}.", data)
            : HealthCheckResult.Degraded(string.Join("; ", problems) + ".", data: data);
    }
}
