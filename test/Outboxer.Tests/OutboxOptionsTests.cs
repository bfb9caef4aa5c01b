using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

public sealed class OutboxOptionsTests
{
    [Fact]
    public void Defaults_are_the_documented_ones()
    {
        var options = new OutboxOptions();

        Assert.Equal(TimeSpan.FromSeconds(1), options.CheckInterval);
        Assert.Equal(TimeSpan.FromMinutes(1), options.CleanupInterval);
        Assert.Equal(TimeSpan.FromDays(7), options.CleanupOlderThan);
        Assert.Equal(100, options.CleanupBatchSize);
        Assert.Equal(100, options.MessageBatchSize);
        Assert.Equal(4, options.MaxBatchesInFlight);
        Assert.Equal(TimeSpan.FromSeconds(30), options.LeaseDuration);
        Assert.Equal(TimeSpan.FromSeconds(10), options.PublishTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), options.RetryDelay);
        Assert.Equal(TimeSpan.FromMinutes(5), options.MaxRetryDelay);
        Assert.Equal(1024, options.NotificationCapacity);
        Assert.Equal(20, options.MaxAttempts);
        Assert.Equal(0.2, options.RetryJitter);
        options.Validate();
    }

    public static TheoryData<string, Action<OutboxOptions>> OutOfRange => new()
    {
        { nameof(OutboxOptions.CheckInterval), o => o.CheckInterval = TimeSpan.Zero },
        { nameof(OutboxOptions.CheckInterval), o => o.CheckInterval = TimeSpan.FromSeconds(-1) },
        { nameof(OutboxOptions.CleanupInterval), o => o.CleanupInterval = TimeSpan.Zero },
        { nameof(OutboxOptions.CleanupOlderThan), o => o.CleanupOlderThan = TimeSpan.FromDays(-1) },
        { nameof(OutboxOptions.CleanupBatchSize), o => o.CleanupBatchSize = 0 },
        { nameof(OutboxOptions.MessageBatchSize), o => o.MessageBatchSize = -5 },
        { nameof(OutboxOptions.MaxBatchesInFlight), o => o.MaxBatchesInFlight = 0 },
        { nameof(OutboxOptions.LeaseDuration), o => o.LeaseDuration = TimeSpan.Zero },
        { nameof(OutboxOptions.PublishTimeout), o => o.PublishTimeout = TimeSpan.Zero },
        { nameof(OutboxOptions.PublishTimeout), o => o.PublishTimeout = TimeSpan.FromMinutes(5) },
        { nameof(OutboxOptions.RetryDelay), o => o.RetryDelay = TimeSpan.FromSeconds(-1) },
        { nameof(OutboxOptions.NotificationCapacity), o => o.NotificationCapacity = 0 },
        { nameof(OutboxOptions.MaxRetryDelay), o => o.MaxRetryDelay = TimeSpan.FromSeconds(1) },
        { nameof(OutboxOptions.MaxAttempts), o => o.MaxAttempts = 0 },
        { nameof(OutboxOptions.RetryJitter), o => o.RetryJitter = 1.5 },
    };

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public void An_out_of_range_value_throws_at_construction_naming_the_option(string name, Action<OutboxOptions> change)
    {
        var options = new OutboxOptions();
        change(options);

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new Outbox(new InMemoryOutboxStore(), new RecordingPublisher(), options));

        Assert.Equal(name, ex.ParamName);
        Assert.Contains($"OutboxOptions.{name}", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_data_store_is_named_in_the_exception()
    {
        var ex = Assert.Throws<ArgumentNullException>(() => new Outbox((IOutboxStore)null!, new RecordingPublisher()));
        Assert.Equal("store", ex.ParamName);
        Assert.Contains("data store", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_event_stream_is_named_in_the_exception()
    {
        var ex = Assert.Throws<ArgumentNullException>(() => new Outbox(new InMemoryOutboxStore(), (IOutboxPublisher)null!));
        Assert.Equal("publisher", ex.ParamName);
        Assert.Contains("event stream", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Changing_the_options_after_construction_changes_nothing()
    {
        var options = new OutboxOptions { MessageBatchSize = 2 };
        var store = new InMemoryOutboxStore();
        var publisher = new RecordingPublisher();
        await using var outbox = new Outbox(store, publisher, options);
        options.MessageBatchSize = 1000;
        for (var i = 0; i < 5; i++)
        {
            await outbox.SendAsync(new OutboxMessage($"m{i}"), TestContext.Current.CancellationToken);
        }

        var batches = new List<int>();
        store.Claimed += batches.Add;
        await outbox.DispatchPendingAsync(TestContext.Current.CancellationToken);

        Assert.Equal([2, 2, 1, 0], batches);
    }
}
