using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Xunit;

namespace Outboxer.Sqlite.Tests;

public sealed class SqliteOutboxBuilderExtensionsTests
{
    [Fact]
    public async Task An_app_configured_only_through_AddOutboxer_relays_from_sqlite_to_json_lines()
    {
        var ct = TestContext.Current.CancellationToken;
        var directory = Directory.CreateTempSubdirectory("outboxer-di-");
        try
        {
            var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
            builder.Services.AddOutboxer()
                .UseSqlite($"Data Source={Path.Combine(directory.FullName, "app.db")}", o => o.TableName = "messages")
                .UseJsonLines(Path.Combine(directory.FullName, "out.jsonl"));

            using (var host = builder.Build())
            {
                await host.StartAsync(ct);
                var outbox = host.Services.GetRequiredService<Outbox>();
                var dispatched = outbox.Dispatched;
                await outbox.SendAsync(new OutboxMessage("""{"hello":"world"}"""), ct);
                await dispatched.ReadAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), ct);
                await host.StopAsync(ct);
            }

            var line = Assert.Single(await File.ReadAllLinesAsync(Path.Combine(directory.FullName, "out.jsonl"), ct));
            using var json = System.Text.Json.JsonDocument.Parse(line);
            Assert.Equal("""{"hello":"world"}""", json.RootElement.GetProperty("payload").GetString());
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
