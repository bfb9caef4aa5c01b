using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Outboxer.Dashboard.Internal;
using Xunit;

namespace Outboxer.Dashboard.Tests;

public sealed class DashboardSetupTests
{
    [Fact]
    public async Task Mapping_without_an_authorization_policy_or_an_explicit_opt_out_throws_at_startup()
    {
        var builder = WebApplication.CreateBuilder();
        builder.Services.AddOutboxerDashboard();
        await using var app = builder.Build();

        var ex = Assert.Throws<InvalidOperationException>(() => app.MapOutboxerDashboard("/outboxer"));

        Assert.Contains("AuthorizationPolicy", ex.Message, StringComparison.Ordinal);
        Assert.Contains("AllowAnonymous", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Mapping_without_the_services_throws_naming_AddOutboxerDashboard()
    {
        await using var app = WebApplication.CreateBuilder().Build();

        var ex = Assert.Throws<InvalidOperationException>(() => app.MapOutboxerDashboard());

        Assert.Contains("AddOutboxerDashboard", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Mapping_with_allow_anonymous_or_a_policy_succeeds()
    {
        foreach (var configure in new Action<OutboxerDashboardOptions>[] { o => o.AllowAnonymous = true, o => o.AuthorizationPolicy = "ops" })
        {
            var builder = WebApplication.CreateBuilder();
            builder.Services.AddOutboxerDashboard(configure);
            await using var app = builder.Build();
            Assert.NotNull(app.MapOutboxerDashboard("/outboxer"));
        }
    }

    [Theory]
    [InlineData(nameof(OutboxerDashboardOptions.SampleInterval))]
    [InlineData(nameof(OutboxerDashboardOptions.History))]
    [InlineData(nameof(OutboxerDashboardOptions.PageSize))]
    [InlineData(nameof(OutboxerDashboardOptions.PreviewBytes))]
    public void An_option_out_of_range_is_refused_naming_it(string option)
    {
        var options = new OutboxerDashboardOptions { AllowAnonymous = true };
        switch (option)
        {
            case nameof(OutboxerDashboardOptions.SampleInterval): options.SampleInterval = TimeSpan.FromMilliseconds(10); break;
            case nameof(OutboxerDashboardOptions.History): options.History = TimeSpan.FromDays(30); break;
            case nameof(OutboxerDashboardOptions.PageSize): options.PageSize = 0; break;
            default: options.PreviewBytes = 1; break;
        }

        var ex = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);

        Assert.Equal(option, ex.ParamName);
    }

    [Fact]
    public void The_sample_ring_keeps_the_latest_samples_oldest_first()
    {
        var ring = new SampleRing(3);
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        for (var i = 0; i < 5; i++)
        {
            ring.Add(new Sample(t0.AddSeconds(i), i, 0, 0, 0, TimeSpan.Zero, 0));
        }

        Assert.Equal([2L, 3L, 4L], ring.Snapshot().Select(s => s.Pending));
    }
}
