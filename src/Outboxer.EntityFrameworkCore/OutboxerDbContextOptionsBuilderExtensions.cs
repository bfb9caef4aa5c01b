using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Outboxer.EntityFrameworkCore;

namespace Outboxer;

/// <summary>Connects a <see cref="DbContext"/> to an <see cref="Outbox"/>.</summary>
public static class OutboxerDbContextOptionsBuilderExtensions
{
    /// <summary>
    /// Makes the context write the messages added with <see cref="OutboxDbContextExtensions.AddOutboxMessage"/> in the same database
    /// transaction as its <c>SaveChanges</c>, and wake <paramref name="outbox"/>'s dispatcher once that transaction commits.
    /// </summary>
    /// <param name="optionsBuilder">The options of the context; its database must be the one the outbox's store writes to.</param>
    /// <param name="outbox">The outbox whose store holds the messages (a <c>PostgreSqlOutboxStore</c> for Npgsql, a <c>SqliteOutboxStore</c> for SQLite).</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <remarks>
    /// With dependency injection, pass the registered outbox: <c>AddDbContext&lt;ShopContext&gt;((sp, o) =&gt; o.UseNpgsql(...).UseOutboxer(sp.GetRequiredService&lt;Outbox&gt;()))</c>,
    /// or call <see cref="EntityFrameworkCoreOutboxBuilderExtensions.UseEntityFrameworkCore{TContext}(IOutboxBuilder)"/> on the outbox builder.
    /// </remarks>
    public static DbContextOptionsBuilder UseOutboxer(this DbContextOptionsBuilder optionsBuilder, Outbox outbox)
    {
        ArgumentNullException.ThrowIfNull(optionsBuilder);
        ArgumentNullException.ThrowIfNull(outbox);
        ((IDbContextOptionsBuilderInfrastructure)optionsBuilder).AddOrUpdateExtension(new OutboxerOptionsExtension(outbox));
        return optionsBuilder;
    }

    /// <summary>
    /// Makes the context write the messages added with <see cref="OutboxDbContextExtensions.AddOutboxMessage"/> in the same database
    /// transaction as its <c>SaveChanges</c>, and wake <paramref name="outbox"/>'s dispatcher once that transaction commits.
    /// </summary>
    /// <typeparam name="TContext">The type of the context.</typeparam>
    /// <param name="optionsBuilder">The options of the context; its database must be the one the outbox's store writes to.</param>
    /// <param name="outbox">The outbox whose store holds the messages.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static DbContextOptionsBuilder<TContext> UseOutboxer<TContext>(this DbContextOptionsBuilder<TContext> optionsBuilder, Outbox outbox)
        where TContext : DbContext =>
        (DbContextOptionsBuilder<TContext>)UseOutboxer((DbContextOptionsBuilder)optionsBuilder, outbox);
}
