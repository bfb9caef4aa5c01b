using System.Diagnostics.CodeAnalysis;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Outboxer;

/// <summary>Connects an outbox registered with <c>AddOutboxer</c> to a <see cref="DbContext"/> registered with <c>AddDbContext</c> or <c>AddDbContextPool</c>.</summary>
public static class EntityFrameworkCoreOutboxBuilderExtensions
{
    // What EF's ConfigureDbContext requires of the context type for trimming.
    private const DynamicallyAccessedMemberTypes ContextMembers =
        DynamicallyAccessedMemberTypes.PublicConstructors | DynamicallyAccessedMemberTypes.NonPublicConstructors | DynamicallyAccessedMemberTypes.PublicProperties;

    /// <summary>
    /// Configures every <typeparamref name="TContext"/> the container creates with
    /// <see cref="OutboxerDbContextOptionsBuilderExtensions.UseOutboxer(DbContextOptionsBuilder, Outbox)"/> and this builder's outbox
    /// (the default outbox, or the keyed one of <see cref="IOutboxBuilder.Name"/>). The context may be registered before or after this call.
    /// </summary>
    /// <typeparam name="TContext">The context whose <c>SaveChanges</c> writes the outbox messages.</typeparam>
    /// <param name="builder">The outbox builder.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseEntityFrameworkCore<[DynamicallyAccessedMembers(ContextMembers)] TContext>(this IOutboxBuilder builder)
        where TContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(builder);
        var name = builder.Name;

        // Singleton: it only resolves the singleton Outbox, and a pooled context builds its options once from the root provider.
        builder.Services.ConfigureDbContext<TContext>(
            (sp, options) => options.UseOutboxer(sp.GetRequiredKeyedService<Outbox>(name)),
            ServiceLifetime.Singleton);
        return builder;
    }
}
