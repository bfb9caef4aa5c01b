using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Outboxer.Dashboard.Internal;

namespace Outboxer.Dashboard;

/// <summary>Registers the Outboxer dashboard's services: its options, the sampler behind its charts, and ASP.NET Core antiforgery.</summary>
public static class OutboxerDashboardServiceCollectionExtensions
{
    /// <summary>
    /// Registers the dashboard for every outbox registered with <c>AddOutboxer</c> (before or after this call) and every store added
    /// with <see cref="OutboxerDashboardOptions.AddStore"/>. Then map it with
    /// <see cref="OutboxerDashboardEndpointRouteBuilderExtensions.MapOutboxerDashboard"/>. A hosted service samples each outbox every
    /// <see cref="OutboxerDashboardOptions.SampleInterval"/> for the charts (one statistics query and two counts per outbox). Calling this
    /// again only adds <paramref name="configure"/>.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets the options, for example the <see cref="OutboxerDashboardOptions.AuthorizationPolicy"/>.</param>
    /// <returns>The same service collection so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> is <see langword="null"/>.</exception>
    public static IServiceCollection AddOutboxerDashboard(this IServiceCollection services, Action<OutboxerDashboardOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<OutboxerDashboardOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        if (services.Any(d => d.ServiceType == typeof(DashboardOutboxes)))
        {
            return services;
        }

        services.AddAntiforgery();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(sp => new DashboardOutboxes(services, sp, sp.GetRequiredService<IOptions<OutboxerDashboardOptions>>()));
        services.AddSingleton(sp => new Sampler(
            sp.GetRequiredService<DashboardOutboxes>(),
            sp.GetRequiredService<IOptions<OutboxerDashboardOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            (sp.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance).CreateLogger<Sampler>()));
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<Sampler>());
        return services;
    }
}
