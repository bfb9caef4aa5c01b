using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Outboxer.Providers;

namespace Outboxer.Dashboard.Internal;

/// <summary>One outbox the dashboard shows: a registered <see cref="Outbox"/> (by its name) or a store added with <see cref="OutboxerDashboardOptions.AddStore"/>.</summary>
/// <param name="Name">The outbox's name; empty for the default outbox.</param>
/// <param name="Administration">Its store's administration contract, or <see langword="null"/> when the store has none.</param>
/// <param name="StatusReport">What its writer or store reports of its own state (such as a slot in log mode), or <see langword="null"/>.</param>
internal sealed record DashboardOutbox(string Name, IOutboxAdministration? Administration, IOutboxStatusReport? StatusReport = null)
{
    /// <summary>Gets the name as pages show it.</summary>
    public string DisplayName => Name.Length == 0 ? "(default)" : Name;
}

/// <summary>
/// Finds the outboxes to show, once: every <see cref="Outbox"/> registered with <c>AddOutboxer</c> (read from the service collection
/// when first needed, so <c>AddOutboxerDashboard</c> may come before or after <c>AddOutboxer</c>), then the added stores.
/// </summary>
internal sealed class DashboardOutboxes(IServiceCollection services, IServiceProvider provider, IOptions<OutboxerDashboardOptions> options)
{
    private readonly Lazy<IReadOnlyList<DashboardOutbox>> _all = new(() => Find(services, provider, options.Value));

    public IReadOnlyList<DashboardOutbox> All => _all.Value;

    /// <summary>Finds an outbox by the name a link carries (empty or missing for the default outbox).</summary>
    public DashboardOutbox? Find(string? name) => All.FirstOrDefault(o => string.Equals(o.Name, name ?? string.Empty, StringComparison.Ordinal));

    private static List<DashboardOutbox> Find(IServiceCollection services, IServiceProvider provider, OutboxerDashboardOptions options)
    {
        var names = services
            .Where(d => d.ServiceType == typeof(Outbox) && d.IsKeyedService && d.ServiceKey is string)
            .Select(d => (string)d.ServiceKey!)
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal);
        var all = names.Select(name => provider.GetRequiredKeyedService<Outbox>(name)).Zip(names)
            .Select(x => new DashboardOutbox(x.Second, x.First.Administration, x.First.Writer as IOutboxStatusReport ?? x.First.Administration as IOutboxStatusReport))
            .ToList();
        foreach (var (name, administration) in options.Stores)
        {
            if (all.Any(o => string.Equals(o.Name, name, StringComparison.Ordinal)))
            {
                throw new InvalidOperationException($"The Outboxer dashboard already shows an outbox named '{name}'; give the store added with AddStore another name.");
            }

            all.Add(new DashboardOutbox(name, administration, administration as IOutboxStatusReport));
        }

        return all;
    }
}
