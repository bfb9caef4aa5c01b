using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Outboxer;

/// <summary>Adds outbox health checks to <c>services.AddHealthChecks()</c>.</summary>
public static class OutboxHealthChecksBuilderExtensions
{
    /// <summary>The configuration section, under an outbox's own (<c>Outboxer</c> or <c>Outboxer:&lt;name&gt;</c>), that its health check's thresholds are bound from.</summary>
    public const string ConfigurationSection = "HealthCheck";

    /// <summary>
    /// Checks the outbox registered with <c>AddOutboxer(outboxName)</c>: lag, backlog, dead letters and a running dispatcher. The
    /// thresholds are bound from <c>Outboxer:HealthCheck</c> (or <c>Outboxer:&lt;name&gt;:HealthCheck</c>), then changed by
    /// <paramref name="configure"/>, and validated when the host starts.
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="outboxName">The outbox's name; empty for the default outbox.</param>
    /// <param name="configure">Changes to the thresholds after they are bound from configuration.</param>
    /// <param name="name">The health check's name; <c>outboxer</c> (or <c>outboxer-&lt;name&gt;</c>) when <see langword="null"/>.</param>
    /// <param name="failureStatus">
    /// The status reported when the outbox is unhealthy (its store cannot be read, its dispatcher is not running, its lag is above
    /// <see cref="OutboxHealthCheckOptions.UnhealthyLag"/>); <see langword="null"/> for <see cref="HealthStatus.Unhealthy"/>.
    /// </param>
    /// <param name="tags">Tags to filter health checks by.</param>
    /// <param name="timeout">How long the check may take; <see langword="null"/> for no limit of its own.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="outboxName"/> is <see langword="null"/>.</exception>
    public static IHealthChecksBuilder AddOutboxer(
        this IHealthChecksBuilder builder,
        string outboxName = "",
        Action<OutboxHealthCheckOptions>? configure = null,
        string? name = null,
        HealthStatus? failureStatus = null,
        IEnumerable<string>? tags = null,
        TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(outboxName);
        var key = outboxName.Length == 0 ? Options.DefaultName : outboxName;
        var section = $"{(outboxName.Length == 0 ? OutboxServiceCollectionExtensions.ConfigurationSection : $"{OutboxServiceCollectionExtensions.ConfigurationSection}:{outboxName}")}:{ConfigurationSection}";
        var checkName = name ?? (outboxName.Length == 0 ? "outboxer" : $"outboxer-{outboxName}");

        // Options named after the health check, so that two checks of one outbox can have thresholds of their own.
        var options = builder.Services.AddOptions<OutboxHealthCheckOptions>(checkName)
            .Configure<IServiceProvider>((o, sp) => sp.GetService<IConfiguration>()?.GetSection(section).Bind(o))
            .ValidateOnStart();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        builder.Services.AddSingleton<IValidateOptions<OutboxHealthCheckOptions>>(new OutboxHealthCheckOptionsValidator(checkName, section));
        return builder.Add(new HealthCheckRegistration(
            checkName,
            sp => new OutboxHealthCheck(sp.GetRequiredKeyedService<Outbox>(key), sp.GetRequiredService<IOptionsMonitor<OutboxHealthCheckOptions>>().Get(checkName)),
            failureStatus,
            tags,
            timeout));
    }

    /// <summary>Reports every invalid threshold at once, each with its configuration key and value.</summary>
    private sealed class OutboxHealthCheckOptionsValidator(string name, string section) : IValidateOptions<OutboxHealthCheckOptions>
    {
        public ValidateOptionsResult Validate(string? optionsName, OutboxHealthCheckOptions options)
        {
            if (!string.Equals(optionsName, name, StringComparison.Ordinal))
            {
                return ValidateOptionsResult.Skip;
            }

            var result = new ValidateOptionsResultBuilder();
            foreach (var (property, value, rule) in options.GetProblems())
            {
                result.AddError($"{section}:{property} = '{value}' is invalid: it {rule}.");
            }

            return result.Build();
        }
    }
}
