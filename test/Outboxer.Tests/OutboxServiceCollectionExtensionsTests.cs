using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

public sealed class OutboxServiceCollectionExtensionsTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_host_runs_the_registered_outbox_and_stops_it()
    {
        var store = new InMemoryOutboxStore();
        var publisher = new RecordingPublisher();
        using var host = Build(b => b.Services.AddOutboxer().UseStore(_ => store).UsePublisher(_ => publisher));

        await host.StartAsync(Ct);
        var outbox = host.Services.GetRequiredService<Outbox>();
        var dispatched = outbox.Dispatched;
        await outbox.SendAsync(new OutboxMessage("through DI"), Ct);
        await dispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await host.StopAsync(Ct);

        Assert.Single(publisher.Published);
        Assert.Same(outbox, host.Services.GetRequiredKeyedService<Outbox>(""));
    }

    [Fact]
    public void Options_are_bound_from_the_outboxer_configuration_section()
    {
        using var host = Build(
            b => b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => new RecordingPublisher()),
            ("Outboxer:CheckInterval", "00:00:05"),
            ("Outboxer:MessageBatchSize", "7"));

        var options = host.Services.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get(Options.DefaultName);

        Assert.Equal(TimeSpan.FromSeconds(5), options.CheckInterval);
        Assert.Equal(7, options.MessageBatchSize);
        Assert.Equal(TimeSpan.FromDays(7), options.CleanupOlderThan);
    }

    [Fact]
    public async Task A_bad_configured_value_fails_the_start_naming_the_key_and_value()
    {
        using var host = Build(
            b => b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => new RecordingPublisher()),
            ("Outboxer:MessageBatchSize", "0"));

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(Ct));

        Assert.Contains("Outboxer:MessageBatchSize = '0'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_event_stream_fails_the_start_naming_the_outbox_and_how_to_choose_one_without_naming_a_broker()
    {
        using var host = Build(b => b.Services.AddOutboxer("orders").UseStore(_ => new InMemoryOutboxStore()));

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync(Ct));

        Assert.Contains("'orders'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("event stream", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Use... method of a publisher package", ex.Message, StringComparison.Ordinal);
        Assert.Contains("UsePublisher", ex.Message, StringComparison.Ordinal);
        AssertNamesNoProvider(ex.Message);
    }

    [Fact]
    public async Task A_missing_store_fails_the_start_naming_the_outbox_and_how_to_choose_one_without_naming_a_database()
    {
        using var host = Build(b => b.Services.AddOutboxer("orders").UsePublisher(_ => new RecordingPublisher()));

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync(Ct));

        Assert.Contains("'orders'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("store", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Use... method of a store package", ex.Message, StringComparison.Ordinal);
        Assert.Contains("UseStore", ex.Message, StringComparison.Ordinal);
        AssertNamesNoProvider(ex.Message);
    }

    [Fact]
    public async Task Registering_the_same_outbox_twice_runs_it_once()
    {
        var publisher = new RecordingPublisher();
        using var host = Build(b =>
        {
            b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => publisher);
            b.Services.AddOutboxer(o => o.MessageBatchSize = 3);
        });

        Assert.Single(host.Services.GetServices<IHostedService>());
        Assert.Equal(3, host.Services.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get(Options.DefaultName).MessageBatchSize);
        await host.StartAsync(Ct);
        await host.StopAsync(Ct);
    }

    [Fact]
    public async Task Two_named_outboxes_have_their_own_store_publisher_and_options()
    {
        var orders = (Store: new InMemoryOutboxStore(), Publisher: new RecordingPublisher());
        var audit = (Store: new InMemoryOutboxStore(), Publisher: new RecordingPublisher());
        using var host = Build(
            b =>
            {
                b.Services.AddOutboxer("orders").UseStore(_ => orders.Store).UsePublisher(_ => orders.Publisher);
                b.Services.AddOutboxer("audit").UseStore(_ => audit.Store).UsePublisher(_ => audit.Publisher);
            },
            ("Outboxer:audit:MessageBatchSize", "2"));

        await host.StartAsync(Ct);
        var auditOutbox = host.Services.GetRequiredKeyedService<Outbox>("audit");
        var ordersOutbox = host.Services.GetRequiredKeyedService<Outbox>("orders");
        var auditDispatched = auditOutbox.Dispatched;
        var ordersDispatched = ordersOutbox.Dispatched;
        await auditOutbox.SendAsync(new OutboxMessage("audit"), Ct);
        await ordersOutbox.SendAsync(new OutboxMessage("order"), Ct);
        await auditDispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await ordersDispatched.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        await host.StopAsync(Ct);

        Assert.Equal("audit", System.Text.Encoding.UTF8.GetString(Assert.Single(audit.Publisher.Published).Payload));
        Assert.Equal("order", System.Text.Encoding.UTF8.GetString(Assert.Single(orders.Publisher.Published).Payload));
        Assert.Equal(2, host.Services.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get("audit").MessageBatchSize);
        Assert.Equal(100, host.Services.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get("orders").MessageBatchSize);
        Assert.Null(host.Services.GetService<Outbox>());
    }

    [Fact]
    public async Task A_plain_service_collection_without_configuration_gets_the_default_options()
    {
        var services = new ServiceCollection();
        services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => new RecordingPublisher());
        await using var provider = services.BuildServiceProvider();

        var outbox = provider.GetRequiredService<Outbox>();

        Assert.Equal(100, provider.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get(Options.DefaultName).MessageBatchSize);
        Assert.Equal(1, await outbox.SendAsync(new OutboxMessage("x"), Ct));
    }

    private static void AssertNamesNoProvider(string message)
    {
        foreach (var provider in new[] { "PostgreSql", "Sqlite", "MySql", "RabbitMQ", "Sqs", "Kinesis", "PubSub" })
        {
            Assert.DoesNotContain(provider, message, StringComparison.OrdinalIgnoreCase);
        }
    }

    private static IHost Build(Action<HostApplicationBuilder> configure, params (string Key, string Value)[] settings)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value)));
        configure(builder);
        return builder.Build();
    }
}
