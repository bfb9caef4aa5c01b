using Microsoft.EntityFrameworkCore;

namespace Outboxer.EntityFrameworkCore.Tests;

public sealed class Order
{
    public int Id { get; set; }

    public string Number { get; set; } = "";

    public decimal Total { get; set; }
}

public sealed class ShopContext(DbContextOptions<ShopContext> options) : DbContext(options)
{
    public DbSet<Order> Orders => Set<Order>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Order>(order =>
        {
            order.Property(o => o.Id).ValueGeneratedNever();
            order.HasIndex(o => o.Number).IsUnique();
        });
    }
}
