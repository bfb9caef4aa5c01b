using Microsoft.Extensions.DependencyInjection;
using Outboxer.Providers;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.MySql.Tests;

public sealed class MySqlOutboxBuilderExtensionsTests
{
    [Fact]
    public async Task An_outbox_registered_with_UseMySql_stores_in_its_own_table_and_relays()
    {
        var ct = TestContext.Current.CancellationToken;
        var table = $"outbox_di_{Guid.NewGuid():N}"[..28];
        var publisher = new RecordingPublisher();
        var services = new ServiceCollection();
        services.AddOutboxer().UseMySql(MySqlServer.ConnectionString, o => o.TableName = table).UsePublisher(_ => publisher);
        await using (var provider = services.BuildServiceProvider())
        {
            var outbox = provider.GetRequiredService<Outbox>();
            await outbox.SendAsync(new OutboxMessage("through UseMySql"), ct);

            Assert.Equal(1, await outbox.DispatchPendingAsync(ct));
            Assert.Single(publisher.Published);
            Assert.IsType<MySqlOutboxStore>(outbox.Store);
        }

        await using var dataSource = MySqlServer.CreateDataSource();
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var drop = new MySqlConnector.MySqlCommand($"DROP TABLE `{table}`", connection);
        await drop.ExecuteNonQueryAsync(ct);
    }
}
