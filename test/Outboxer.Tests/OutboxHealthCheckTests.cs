using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

public sealed class OutboxHealthCheckTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly InMemoryOutboxStore _store = new();
    private readonly RecordingPublisher _publisher = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task An_idle_outbox_with_a_running_dispatcher_is_healthy()
    {
        await using var outbox = new Outbox(_store, _publisher, timeProvider: _time);
        outbox.StartDispatcher();

        var result = await CheckAsync(outbox);

        Assert.Equal(HealthStatus.Healthy, result.Status);
        Assert.Equal(0L, result.Data["pending"]);
        Assert.Equal(true, result.Data["dispatcher_running"]);
    }

    [Fact]
    public async Task A_stopped_dispatcher_is_unhealthy_unless_the_process_only_enqueues()
    {
        await using var outbox = new Outbox(_store, _publisher, timeProvider: _time);
        outbox.StartDispatcher();
        await outbox.StopAsync(Ct);

        Assert.Equal(HealthStatus.Unhealthy, (await CheckAsync(outbox)).Status);
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(outbox, o => o.RequireRunningDispatcher = false)).Status);
    }

    [Fact]
    public async Task Lag_degrades_then_fails_the_outbox_as_the_oldest_message_waits()
    {
        await using var outbox = new Outbox(_store, _publisher, timeProvider: _time);
        await outbox.SendAsync(new OutboxMessage("waiting"), Ct);

        _time.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(outbox, o => o.RequireRunningDispatcher = false)).Status);
        _time.Advance(TimeSpan.FromSeconds(2));
        var degraded = await CheckAsync(outbox, o => o.RequireRunningDispatcher = false);
        Assert.Equal(HealthStatus.Degraded, degraded.Status);
        Assert.Contains("waited 00:01:01", degraded.Description, StringComparison.Ordinal);
        _time.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal(HealthStatus.Unhealthy, (await CheckAsync(outbox, o => o.RequireRunningDispatcher = false)).Status);
    }

    [Fact]
    public async Task Dead_letters_and_a_large_backlog_degrade_the_outbox()
    {
        await using var outbox = new Outbox(_store, _publisher, timeProvider: _time);
        _publisher.Fail = _ => new OutboxException("unroutable", isTransient: false);
        await outbox.SendAsync(new OutboxMessage("poison"), Ct);
        await outbox.DispatchPendingAsync(Ct);
        await outbox.SendAsync(new OutboxMessage("a"), Ct);
        await outbox.SendAsync(new OutboxMessage("b"), Ct);

        var result = await CheckAsync(outbox, o =>
        {
            o.RequireRunningDispatcher = false;
            o.DegradedBacklog = 1;
        });

        Assert.Equal(HealthStatus.Degraded, result.Status);
        Assert.Contains("2 messages are pending", result.Description, StringComparison.Ordinal);
        Assert.Contains("1 messages are in the dead letters", result.Description, StringComparison.Ordinal);
        var statistics = await outbox.GetStatisticsAsync(Ct);
        Assert.Equal(new OutboxStatistics(2, 0, 1, _time.GetUtcNow(), _time.GetUtcNow()), statistics);
    }

    [Fact]
    public async Task A_store_that_cannot_be_read_is_unhealthy()
    {
        var failing = new InMemoryOutboxStore();
        await using var outbox = new Outbox(new FailingStatisticsStore(failing), _publisher, timeProvider: _time);

        var result = await CheckAsync(outbox, o => o.RequireRunningDispatcher = false);

        Assert.Equal(HealthStatus.Unhealthy, result.Status);
        Assert.IsType<OutboxException>(result.Exception);
    }

    private static Task<HealthCheckResult> CheckAsync(Outbox outbox, Action<OutboxHealthCheckOptions>? configure = null)
    {
        var options = new OutboxHealthCheckOptions();
        configure?.Invoke(options);
        var check = new OutboxHealthCheck(outbox, options);
        return check.CheckHealthAsync(new HealthCheckContext { Registration = new HealthCheckRegistration("outboxer", check, HealthStatus.Unhealthy, null) }, Ct);
    }

    private sealed class FailingStatisticsStore(InMemoryOutboxStore inner) : Outboxer.Providers.IOutboxStore, Outboxer.Providers.IOutboxAdministration
    {
        public Task<OutboxStatistics> GetStatisticsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) => throw new OutboxException("database down");


        public ValueTask<long> AddAsync(System.Data.Common.DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default) => inner.AddAsync(transaction, message, cancellationToken);

        public Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<System.Data.Common.DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default) => inner.AddWithinTransactionAsync(message, work, cancellationToken);

        public Task<IReadOnlyList<OutboxMessage>> ClaimAsync(int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken = default) => inner.ClaimAsync(batchSize, now, leaseUntil, cancellationToken);

        public Task<int> MarkDispatchedAsync(IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken = default) => inner.MarkDispatchedAsync(ids, leaseToken, dispatchedAt, cancellationToken);

        public Task<bool> ReleaseAsync(long id, long leaseToken, DateTimeOffset retryAt, string error, bool outcomeUnknown = false, CancellationToken cancellationToken = default) => inner.ReleaseAsync(id, leaseToken, retryAt, error, outcomeUnknown, cancellationToken);

        public Task<bool> DeadLetterAsync(long id, long leaseToken, DateTimeOffset deadLetteredAt, string error, CancellationToken cancellationToken = default) => inner.DeadLetterAsync(id, leaseToken, deadLetteredAt, error, cancellationToken);

        public Task<IReadOnlyList<OutboxMessage>> GetDeadLettersAsync(int limit, long afterId = 0, CancellationToken cancellationToken = default) => inner.GetDeadLettersAsync(limit, afterId, cancellationToken);

        public Task<int> RequeueDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default) => inner.RequeueDeadLettersAsync(ids, cancellationToken);

        public Task<int> PurgeDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default) => inner.PurgeDeadLettersAsync(ids, cancellationToken);

        public Task<IReadOnlyList<OutboxDestinationStatistics>> GetDestinationStatisticsAsync(CancellationToken cancellationToken = default) => inner.GetDestinationStatisticsAsync(cancellationToken);

        public Task<int> RemoveDispatchedAsync(DateTimeOffset dispatchedBefore, int batchSize, CancellationToken cancellationToken = default) => inner.RemoveDispatchedAsync(dispatchedBefore, batchSize, cancellationToken);
    }
}
