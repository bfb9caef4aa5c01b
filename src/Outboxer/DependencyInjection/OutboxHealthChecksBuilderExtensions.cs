using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Outboxer;

/// <summary>Adds outbox health checks to <c>services.AddHealthChecks()</c>.</summary>
public static class OutboxHealthChecksBuilderExtensions
{
    /// <summary>Checks the outbox registered with <c>AddOutboxer(outboxName)</c>: lag, backlog, dead letters and a running dispatcher.</summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="outboxName">The outbox's name; empty for the default outbox.</param>
    /// <param name="configure">Changes to the thresholds.</param>
    /// <param name="name">The health check's name; <c>outboxer</c> (or <c>outboxer-&lt;name&gt;</c>) when <see langword="null"/>.</param>
    /// <param name="tags">Tags to filter health checks by.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IHealthChecksBuilder AddOutboxer(
        this IHealthChecksBuilder builder,
        string outboxName = "",
        Action<OutboxHealthCheckOptions>? configure = null,
        string? name = null,
        IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(outboxName);
        var options = new OutboxHealthCheckOptions();
        configure?.Invoke(options);
        return builder.Add(new HealthCheckRegistration(
            name ?? (outboxName.Length == 0 ? "outboxer" : $"outboxer-{outboxName}"),
            sp => new OutboxHealthCheck(sp.GetRequiredKeyedService<Outbox>(outboxName.Length == 0 ? Options.DefaultName : outboxName), options),
            HealthStatus.Unhealthy,
            tags));
    }
}
