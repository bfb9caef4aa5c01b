using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

/// <summary>What a node runs (dispatcher, cleanup, both, neither) from configuration, how options fail, and the health check's registration.</summary>
public sealed class OutboxHostingRoleTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("true", "true", true, true)]
    [InlineData("true", "false", true, false)]
    [InlineData("false", "true", false, true)]
    [InlineData("false", "false", false, false)]
    public async Task A_node_runs_the_dispatcher_and_the_cleanup_that_its_configuration_asks_for(string runDispatcher, string runCleanup, bool dispatcher, bool cleanup)
    {
        using var host = Build(
            b => b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => new RecordingPublisher()),
            ("Outboxer:RunDispatcher", runDispatcher),
            ("Outboxer:RunCleanup", runCleanup));

        await host.StartAsync(Ct);
        var outbox = host.Services.GetRequiredService<Outbox>();

        Assert.Equal(dispatcher, outbox.IsDispatcherRunning);
        Assert.Equal(cleanup, outbox.IsCleanupRunning);
        await host.StopAsync(Ct);
    }

    [Fact]
    public async Task A_node_that_runs_no_dispatcher_needs_no_publisher_and_still_enqueues()
    {
        var store = new InMemoryOutboxStore();
        using var host = Build(
            b => b.Services.AddOutboxer().UseStore(_ => store),
            ("Outboxer:RunDispatcher", "false"));

        await host.StartAsync(Ct);
        var outbox = host.Services.GetRequiredService<Outbox>();
        await outbox.SendAsync(new OutboxMessage("left for another node"), Ct);

        Assert.False(outbox.CanDispatch);
        Assert.False(outbox.IsDispatcherRunning);
        Assert.True(outbox.IsCleanupRunning);
        Assert.Equal(1, store.PendingCount);
        await host.StopAsync(Ct);
    }

    [Fact]
    public void A_node_that_runs_the_dispatcher_without_a_publisher_fails_naming_the_setting_that_would_make_it_enqueue_only()
    {
        using var host = Build(b => b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()));

        var ex = Assert.Throws<InvalidOperationException>(() => host.Services.GetRequiredService<Outbox>());

        Assert.Contains("Outboxer:RunDispatcher", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_bad_configured_value_is_reported_at_once_with_its_key_and_its_value_once()
    {
        using var host = Build(
            b => b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => new RecordingPublisher()),
            ("Outboxer:MessageBatchSize", "0"),
            ("Outboxer:CheckInterval", "-00:00:01"),
            ("Outboxer:RetryJitter", "1.5"));

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(Ct));

        Assert.Equal(3, ex.Failures.Count());
        Assert.Contains(ex.Failures, f => f.StartsWith("Outboxer:MessageBatchSize = '0' is invalid", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("Outboxer:CheckInterval = '-00:00:01' is invalid", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("Outboxer:RetryJitter = '1.5' is invalid", StringComparison.Ordinal));
        Assert.All(ex.Failures, f => Assert.Single(f.Split("'").Where((_, i) => i % 2 == 1)));
    }

    [Fact]
    public void A_zero_retry_delay_and_a_zero_jitter_are_valid_as_documented()
    {
        new OutboxOptions { RetryDelay = TimeSpan.Zero, RetryJitter = 0 }.Validate();
    }

    [Fact]
    public void Validate_names_every_invalid_property_in_one_exception()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new OutboxOptions { MessageBatchSize = 0, MaxAttempts = -1 }.Validate());

        Assert.Equal(nameof(OutboxOptions.MessageBatchSize), ex.ParamName);
        Assert.Contains("OutboxOptions.MessageBatchSize", ex.Message, StringComparison.Ordinal);
        Assert.Contains("OutboxOptions.MaxAttempts", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Code_changes_to_the_options_come_after_the_configuration()
    {
        using var host = Build(
            b => b.Services.AddOutboxer(o => o.MessageBatchSize = 3).UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => new RecordingPublisher()),
            ("Outboxer:MessageBatchSize", "7"));

        Assert.Equal(3, host.Services.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get(Options.DefaultName).MessageBatchSize);
    }

    [Fact]
    public async Task The_health_check_takes_AddChecks_parameters_and_its_thresholds_from_configuration()
    {
        using var host = Build(
            b =>
            {
                b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => new RecordingPublisher());
                b.Services.AddHealthChecks().AddOutboxer(name: "relay", failureStatus: HealthStatus.Degraded, tags: ["ready"], timeout: TimeSpan.FromSeconds(3));
            },
            ("Outboxer:HealthCheck:DegradedBacklog", "0"),
            ("Outboxer:HealthCheck:DegradedDeadLetters", "5"));

        var registration = Assert.Single(host.Services.GetRequiredService<IOptions<HealthCheckServiceOptions>>().Value.Registrations);
        Assert.Equal("relay", registration.Name);
        Assert.Equal(HealthStatus.Degraded, registration.FailureStatus);
        Assert.Equal(TimeSpan.FromSeconds(3), registration.Timeout);
        Assert.Contains("ready", registration.Tags);
        var thresholds = host.Services.GetRequiredService<IOptionsMonitor<OutboxHealthCheckOptions>>().Get("relay");
        Assert.Equal(0, thresholds.DegradedBacklog);
        Assert.Equal(5, thresholds.DegradedDeadLetters);

        // The dispatcher is not running (the host is not started): the registration's failure status, not Unhealthy.
        var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(Ct);
        Assert.Equal(HealthStatus.Degraded, report.Entries["relay"].Status);
    }

    [Fact]
    public async Task Bad_health_check_thresholds_fail_the_start_with_their_keys()
    {
        using var host = Build(
            b =>
            {
                b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore()).UsePublisher(_ => new RecordingPublisher());
                b.Services.AddHealthChecks().AddOutboxer();
            },
            ("Outboxer:HealthCheck:DegradedLag", "00:10:00"),
            ("Outboxer:HealthCheck:UnhealthyLag", "00:01:00"),
            ("Outboxer:HealthCheck:DegradedBacklog", "-1"));

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(Ct));

        Assert.Contains(ex.Failures, f => f.StartsWith("Outboxer:HealthCheck:UnhealthyLag = '00:01:00' is invalid", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("Outboxer:HealthCheck:DegradedBacklog = '-1' is invalid", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_node_that_runs_no_dispatcher_is_not_held_to_a_running_one_by_its_health_check()
    {
        using var host = Build(
            b =>
            {
                b.Services.AddOutboxer().UseStore(_ => new InMemoryOutboxStore());
                b.Services.AddHealthChecks().AddOutboxer();
            },
            ("Outboxer:RunDispatcher", "false"));
        await host.StartAsync(Ct);

        var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(Ct);

        Assert.Equal(HealthStatus.Healthy, report.Entries["outboxer"].Status);
        await host.StopAsync(Ct);
    }

    private static IHost Build(Action<HostApplicationBuilder> configure, params (string Key, string Value)[] settings)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value)));
        configure(builder);
        return builder.Build();
    }
}
