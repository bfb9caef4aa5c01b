using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Outboxer.EntityFrameworkCore;

/// <summary>
/// The EF Core options extension that <see cref="OutboxerDbContextOptionsBuilderExtensions.UseOutboxer(Microsoft.EntityFrameworkCore.DbContextOptionsBuilder, Outbox)"/>
/// adds: it carries the <see cref="Outboxer.Outbox"/> and registers one <see cref="OutboxContextInterceptor"/> per context instance in EF's
/// internal service provider (as an interceptor, and as a resettable service so that a pooled context starts every lease empty).
/// </summary>
internal sealed class OutboxerOptionsExtension : IDbContextOptionsExtension
{
    private DbContextOptionsExtensionInfo? _info;

    public OutboxerOptionsExtension(Outbox outbox) => Outbox = outbox;

    public Outbox Outbox { get; }

    public DbContextOptionsExtensionInfo Info => _info ??= new ExtensionInfo(this);

    public void ApplyServices(IServiceCollection services)
    {
        // Scoped in EF's internal provider means one instance per DbContext instance (and per pooled context, reset between leases).
        // The interceptor reads the Outbox from the context's own options, so contexts with different outboxes share one internal provider.
        services.AddScoped<OutboxContextInterceptor>();
        services.AddScoped<IInterceptor>(static sp => sp.GetRequiredService<OutboxContextInterceptor>());
        services.AddScoped<IResettableService>(static sp => sp.GetRequiredService<OutboxContextInterceptor>());
    }

    public void Validate(IDbContextOptions options)
    {
    }

    private sealed class ExtensionInfo(IDbContextOptionsExtension extension) : DbContextOptionsExtensionInfo(extension)
    {
        public override bool IsDatabaseProvider => false;

        public override string LogFragment => "using Outboxer ";

        public override int GetServiceProviderHashCode() => 0;

        public override bool ShouldUseSameServiceProvider(DbContextOptionsExtensionInfo other) => other is ExtensionInfo;

        public override void PopulateDebugInfo(IDictionary<string, string> debugInfo) => debugInfo["Outboxer"] = "1";
    }
}
