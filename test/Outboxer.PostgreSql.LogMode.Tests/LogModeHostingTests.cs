using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Outboxer.RabbitMQ;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using RabbitMQ.Client;
using Xunit;

namespace Outboxer.PostgreSql.LogMode.Tests;

/// <summary>
/// An outbox in log mode registered with <c>AddOutboxer(...).UsePostgreSqlLog(...)</c> in a real host: it enqueues into the log, and the
/// relay runs as a hosted service where the node runs the dispatcher role. PostgreSQL and RabbitMQ are the shared servers.
/// </summary>
public sealed class LogModeHostingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_message_sent_through_the_outbox_built_by_dependency_injection_is_consumed_from_RabbitMQ_and_the_health_check_is_healthy()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var queue = $"outboxer.logmode.hosting.{Guid.NewGuid():N}";
        await using var connection = await RabbitMQServer.ConnectAsync("Outboxer.PostgreSql.LogMode.Tests.hosting");
        await using var channel = await connection.CreateChannelAsync(cancellationToken: Ct);
        await channel.QueueDeclareAsync(queue, durable: false, exclusive: false, autoDelete: false, cancellationToken: Ct);
        try
        {
            using var host = Build(world, runDispatcher: true);
            await host.StartAsync(Ct);
            var outbox = host.Services.GetRequiredService<Outbox>();
            var message = new OutboxMessage("through the log");
            message.Options[RabbitMQOptionKeys.ExchangeName] = string.Empty;
            message.Options[RabbitMQOptionKeys.RoutingKey] = queue;

            await outbox.SendAsync(message, Ct);

            BasicGetResult? delivery = null;
            await LogModeWorld.WaitUntilAsync(() => (delivery ??= channel.BasicGetAsync(queue, autoAck: true, Ct).GetAwaiter().GetResult()) is not null, "the message is in the queue");
            Assert.Equal(message.MessageId.ToString(), delivery!.BasicProperties.MessageId);
            Assert.Equal("through the log", System.Text.Encoding.UTF8.GetString(delivery.Body.Span));
            Assert.IsType<PostgreSqlLogWriter>(outbox.Writer);

            var health = host.Services.GetRequiredService<HealthCheckService>();
            HealthReport? report = null;
            await LogModeWorld.WaitUntilAsync(
                () => (report = health.CheckHealthAsync(Ct).GetAwaiter().GetResult()).Status == HealthStatus.Healthy,
                "the log mode's health check reports the relay's slot healthy");
            Assert.Equal(world.Options.SlotName, report!.Entries["outboxer-log"].Data["slot"]);
            await host.StopAsync(Ct);
        }
        finally
        {
            await channel.QueueDeleteAsync(queue, cancellationToken: CancellationToken.None);
        }
    }

    [Fact]
    public async Task A_node_that_runs_no_dispatcher_enqueues_into_the_log_without_a_publisher_and_starts_no_relay()
    {
        await using var world = await LogModeWorld.CreateAsync();
        using var host = Build(world, runDispatcher: false);
        await host.StartAsync(Ct);
        var outbox = host.Services.GetRequiredService<Outbox>();

        await outbox.SendAsync(new OutboxMessage("left for a relay elsewhere"), Ct);
        await Task.Delay(TimeSpan.FromSeconds(1), Ct);

        var status = await world.Setup.GetStatusAsync(Ct);
        Assert.False(status.Active, "no relay consumes the slot");
        Assert.True(status.LagBytes > 0, $"the message waits in the slot (lag {status.LagBytes})");
        await host.StopAsync(Ct);
    }

    [Fact]
    public async Task Without_a_connection_string_the_outbox_writes_through_the_container_data_source_and_its_relay_publishes()
    {
        await using var world = await LogModeWorld.CreateAsync();
        var publisher = new RecordingPublisher();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddSingleton(_ => NpgsqlDataSource.Create(PostgreSqlServer.ConnectionString));
        builder.Services.AddOutboxer()
            .UsePostgreSqlLog(o =>
            {
                o.Prefix = world.Options.Prefix;
                o.SlotName = world.Options.SlotName;
                o.PublicationName = world.Options.PublicationName;
                o.SchemaName = world.Options.SchemaName;
            })
            .UsePublisher(_ => publisher);
        using var host = builder.Build();
        await host.StartAsync(Ct);

        var message = new OutboxMessage("through the container's data source");
        await host.Services.GetRequiredService<Outbox>().SendAsync(message, Ct);

        await LogModeWorld.WaitUntilAsync(() => publisher.Published.Count == 1, "the hosted relay published the message");
        Assert.Equal(message.MessageId, publisher.Published[0].MessageId);
        await host.StopAsync(Ct);
    }

    [Fact]
    public void A_bad_log_mode_option_fails_where_the_outbox_is_registered_naming_the_option()
    {
        var services = new ServiceCollection();

        var ex = Assert.ThrowsAny<ArgumentException>(() => services.AddOutboxer().UsePostgreSqlLog(PostgreSqlServer.ConnectionString, o => o.SlotName = "Not A Slot"));

        Assert.Contains("SlotName", ex.ParamName ?? ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_node_that_runs_the_dispatcher_without_a_publisher_fails_naming_what_is_missing()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddOutboxer().UsePostgreSqlLog(PostgreSqlServer.ConnectionString);
        using var host = builder.Build();

        var ex = Assert.Throws<InvalidOperationException>(() => host.Services.GetRequiredService<Outbox>());

        Assert.Contains("IOutboxPublisher", ex.Message, StringComparison.Ordinal);
        Assert.Contains("RunDispatcher", ex.Message, StringComparison.Ordinal);
    }

    private static IHost Build(LogModeWorld world, bool runDispatcher)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection([new("Outboxer:RunDispatcher", runDispatcher ? "true" : "false")]);
        var outbox = builder.Services.AddOutboxer().UsePostgreSqlLog(
            PostgreSqlServer.ConnectionString,
            o =>
            {
                o.Prefix = world.Options.Prefix;
                o.SlotName = world.Options.SlotName;
                o.PublicationName = world.Options.PublicationName;
                o.SchemaName = world.Options.SchemaName;
            },
            r =>
            {
                r.RetryDelay = TimeSpan.FromMilliseconds(20);
                r.TakeoverInterval = TimeSpan.FromMilliseconds(200);
                r.HeartbeatInterval = TimeSpan.FromMilliseconds(500);
            });
        if (runDispatcher)
        {
            outbox.UseRabbitMQ(RabbitMQServer.Url);
        }

        builder.Services.AddHealthChecks().AddOutboxerLogMode();
        return builder.Build();
    }
}
