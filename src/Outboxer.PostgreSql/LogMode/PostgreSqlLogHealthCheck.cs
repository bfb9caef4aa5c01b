using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Outboxer.PostgreSql;

/// <summary>
/// Reports the health of an outbox in log mode from its slot: Unhealthy when something stops the relay (a problem of
/// <see cref="PostgreSqlLogStatus.Problems"/>: a missing or lost slot, <c>wal_level</c>, privilege) or the database cannot be read;
/// Degraded when no relay consumes the slot, the lag is above <paramref name="degradedLagBytes"/>, the slot is past
/// <c>max_slot_wal_keep_size</c> (<c>wal_status</c> <c>unreserved</c>) or there are dead letters; otherwise Healthy. The lag in bytes
/// and seconds, the retained log and the dead letters are in the result's data.
/// </summary>
/// <param name="setup">The log mode's setup, which reads the slot's status.</param>
/// <param name="degradedLagBytes">The lag above which the check reports Degraded; the default is 64 MiB.</param>
public sealed class PostgreSqlLogHealthCheck(PostgreSqlLogSetup setup, long degradedLagBytes = 64L << 20) : IHealthCheck
{
    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(setup);
        PostgreSqlLogStatus status;
        try
        {
            status = await setup.GetStatusAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OutboxException ex)
        {
            return new HealthCheckResult(context?.Registration.FailureStatus ?? HealthStatus.Unhealthy, "The log mode's slot cannot be read.", ex);
        }

        var data = new Dictionary<string, object>
        {
            ["slot"] = status.SlotName,
            ["active"] = status.Active,
            ["lag_bytes"] = status.LagBytes ?? -1,
            ["lag_seconds"] = status.LagSeconds ?? -1,
            ["retained_wal_bytes"] = status.RetainedWalBytes ?? -1,
            ["wal_status"] = status.WalStatus ?? string.Empty,
            ["dead_letters"] = status.DeadLetters,
        };

        if (status.Problems.Count > 0)
        {
            return HealthCheckResult.Unhealthy(string.Join(" ", status.Problems), data: data);
        }

        var problems = new List<string>();
        if (!status.Active)
        {
            problems.Add($"no relay consumes the slot {status.SlotName}");
        }

        if (status.LagBytes > degradedLagBytes)
        {
            problems.Add($"the slot is {status.LagBytes} bytes behind (more than {degradedLagBytes})");
        }

        if (status.WalStatus == "unreserved")
        {
            problems.Add($"the slot is past max_slot_wal_keep_size: {status.SafeWalSizeBytes ?? 0} bytes left before PostgreSQL removes the log it needs");
        }

        if (status.DeadLetters > 0)
        {
            problems.Add($"{status.DeadLetters} messages are in the dead letters");
        }

        return problems.Count == 0
            ? HealthCheckResult.Healthy($"The slot {status.SlotName} is {status.LagBytes} bytes behind.", data)
            : HealthCheckResult.Degraded(string.Join("; ", problems) + ".", data: data);
    }
}
