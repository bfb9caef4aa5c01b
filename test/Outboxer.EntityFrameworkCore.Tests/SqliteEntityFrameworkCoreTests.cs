using System.Transactions;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.EntityFrameworkCore.Tests;

/// <summary>What only SQLite shows: it cannot join an ambient transaction, so a TransactionScope is refused before anything is written.</summary>
public sealed class SqliteEntityFrameworkCoreTests : EntityFrameworkCoreOutboxTests<SqliteTestDatabase>
{
    [Fact]
    public async Task A_SaveChanges_with_messages_inside_a_TransactionScope_is_refused_before_anything_is_written()
    {
        using (new TransactionScope(TransactionScopeAsyncFlowOption.Enabled))
        {
            await using var context = NewContext();
            context.Orders.Add(new Order { Id = 1, Number = "A-1" });
            context.AddOutboxMessage(OrderPlaced(1));

            var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => context.SaveChangesAsync(Ct));
            Assert.Contains("ambient", ex.Message, StringComparison.OrdinalIgnoreCase);
        }

        Assert.Equal(0, await Outbox.DispatchPendingAsync(Ct));
        Assert.Equal(0, await Database.CountOrdersAsync());
    }
}
