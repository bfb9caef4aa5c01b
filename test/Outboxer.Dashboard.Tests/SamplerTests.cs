using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using Outboxer.Dashboard.Internal;
using Outboxer.PostgreSql;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Dashboard.Tests;

/// <summary>The sampler behind the charts, on a real PostgreSQL table, with time moved by hand.</summary>
public sealed class SamplerTests : IAsyncLifetime
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly string _table = $"dash_sampler_{Guid.NewGuid():N}"[..30];
    private readonly NpgsqlDataSource _dataSource = PostgreSqlServer.CreateDataSource();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => await (await PostgreSqlServer.OpenAsync(_dataSource)).DisposeAsync();

    [Fact]
    public async Task The_sampler_records_backlog_retrying_and_the_throughput_between_two_samples_counted_in_the_table()
    {
        var store = new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { TableName = _table, UseDatabaseClock = false });
        var ids = new List<long>();
        for (var i = 0; i < 20; i++)
        {
            ids.Add(await store.AddWithinTransactionAsync(new OutboxMessage($"m{i}") { MessageId = Guid.CreateVersion7(), CreatedAt = T0 }, null, Ct));
        }

        var time = new FakeTimeProvider(T0);
        var options = new OutboxerDashboardOptions { AllowAnonymous = true, SampleInterval = TimeSpan.FromSeconds(10), History = TimeSpan.FromSeconds(30) }.AddStore("orders", store);
        await using var services = new ServiceCollection().BuildServiceProvider();
        var sampler = new Sampler(new DashboardOutboxes(new ServiceCollection(), services, Options.Create(options)), Options.Create(options), time, NullLogger<Sampler>.Instance);

        await sampler.SampleOnceAsync(Ct);
        var token = (await store.ClaimAsync(20, T0, T0.AddMinutes(5), Ct))[0].LeaseToken;
        await store.MarkDispatchedAsync(ids[..10], token, T0.AddSeconds(5), Ct);
        await store.ReleaseAsync(ids[10], token, T0.AddMinutes(1), "broker down", cancellationToken: Ct);
        time.Advance(TimeSpan.FromSeconds(10));
        await sampler.SampleOnceAsync(Ct);
        await store.MarkDispatchedAsync(ids[11..16], token, T0.AddSeconds(12), Ct);
        time.Advance(TimeSpan.FromSeconds(10));
        await sampler.SampleOnceAsync(Ct);
        time.Advance(TimeSpan.FromSeconds(10));
        await sampler.SampleOnceAsync(Ct);

        var samples = sampler.SamplesOf("orders");
        Assert.Equal([T0.AddSeconds(10), T0.AddSeconds(20), T0.AddSeconds(30)], samples.Select(s => s.TakenAt)); // History / SampleInterval = 3 kept
        Assert.Equal([10L, 5L, 5L], samples.Select(s => s.Pending));
        Assert.Equal([1L, 1L, 1L], samples.Select(s => s.Retrying));
        Assert.Equal([1.0, 0.5, 0.0], samples.Select(s => s.DispatchedPerSecond));
        Assert.Equal(TimeSpan.FromSeconds(30), samples[^1].Lag);
        Assert.Null(sampler.ErrorOf("orders"));
    }

    public async ValueTask DisposeAsync()
    {
        await using (var connection = await _dataSource.OpenConnectionAsync(CancellationToken.None))
        await using (var drop = new NpgsqlCommand($"DROP TABLE IF EXISTS public.\"{_table}\"", connection))
        {
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }

        await _dataSource.DisposeAsync();
    }
}
