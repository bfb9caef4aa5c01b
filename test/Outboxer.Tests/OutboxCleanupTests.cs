using Microsoft.Extensions.Time.Testing;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

public sealed class OutboxCleanupTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly InMemoryOutboxStore _store = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Cleanup_deletes_dispatched_messages_older_than_the_retention_in_batches_until_none_are_left()
    {
        await using var outbox = new Outbox(_store, new RecordingPublisher(), new OutboxOptions { CleanupOlderThan = TimeSpan.FromDays(7), CleanupBatchSize = 10 }, timeProvider: _time);
        await SendAndDispatchAsync(outbox, 25);
        await outbox.SendAsync(new OutboxMessage("pending"), Ct);

        _time.Advance(TimeSpan.FromDays(7));
        Assert.Equal(0, await outbox.CleanupAsync(Ct));
        _time.Advance(TimeSpan.FromTicks(1));
        Assert.Equal(25, await outbox.CleanupAsync(Ct));

        Assert.Equal(1, _store.Count);
        Assert.Equal(1, _store.PendingCount);
    }

    [Fact]
    public async Task The_retention_cutoff_is_evaluated_at_every_run_not_fixed_at_start()
    {
        var interval = TimeSpan.FromMinutes(1);
        var probe = new CleanupProbeStore(_store);
        await using var outbox = new Outbox(probe, new RecordingPublisher(), new OutboxOptions { CleanupInterval = interval, CleanupOlderThan = TimeSpan.FromMinutes(10) }, timeProvider: _time);
        outbox.StartCleanup();
        await probe.WaitForRemoveCallsAsync(1);

        // Dispatched after the cleanup started: a fixed cutoff (the Go upstream's) would never remove these.
        await SendAndDispatchAsync(outbox, 3);
        for (var minute = 1; minute <= 10; minute++)
        {
            _time.Advance(interval);
            await probe.WaitForRemoveCallsAsync(1 + minute);
            Assert.Equal(3, _store.Count);
        }

        _time.Advance(interval);
        await probe.WaitForRemoveCallsAsync(12);
        Assert.Equal(0, _store.Count);
    }

    [Fact]
    public async Task A_cleanup_failure_is_reported_and_the_next_run_still_happens()
    {
        var probe = new CleanupProbeStore(_store) { RemoveFailure = new OutboxException("disk full") };
        await using var outbox = new Outbox(probe, new RecordingPublisher(), new OutboxOptions { CleanupInterval = TimeSpan.FromMinutes(1) }, timeProvider: _time);
        var errors = outbox.Errors;
        outbox.StartCleanup();

        await probe.WaitForRemoveCallsAsync(1);
        var first = await errors.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
        Assert.Equal(OutboxOperation.Cleanup, first.Operation);
        Assert.Equal("disk full", first.Exception.Message);

        _time.Advance(TimeSpan.FromMinutes(1));
        await probe.WaitForRemoveCallsAsync(2);
        await errors.ReadAsync(Ct).AsTask().WaitAsync(Bound, Ct);
    }

    private async Task SendAndDispatchAsync(Outbox outbox, int count)
    {
        for (var i = 0; i < count; i++)
        {
            await outbox.SendAsync(new OutboxMessage($"m{i}"), Ct);
        }

        Assert.Equal(count, await outbox.DispatchPendingAsync(Ct));
    }

    /// <summary>Passes everything to the in-memory store and lets a test wait for cleanup runs (and fail them).</summary>
    private sealed class CleanupProbeStore(InMemoryOutboxStore inner) : Outboxer.Providers.IOutboxStore, Outboxer.Providers.IOutboxAdministration
    {
        private readonly SemaphoreSlim _removeCalls = new(0);
        private int _seen;

        public Exception? RemoveFailure { get; init; }

        public async Task WaitForRemoveCallsAsync(int total)
        {
            while (_seen < total)
            {
                Assert.True(await _removeCalls.WaitAsync(Bound, Ct), $"cleanup run {total} did not happen");
                _seen++;
            }
        }


        public ValueTask<long> AddAsync(System.Data.Common.DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default) => inner.AddAsync(transaction, message, cancellationToken);

        public Task<long> AddWithinTransactionAsync(OutboxMessage message, Func<System.Data.Common.DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken = default) => inner.AddWithinTransactionAsync(message, work, cancellationToken);

        public Task<IReadOnlyList<OutboxMessage>> ClaimAsync(int batchSize, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken = default) => inner.ClaimAsync(batchSize, now, leaseUntil, cancellationToken);

        public Task<int> MarkDispatchedAsync(IReadOnlyList<long> ids, long leaseToken, DateTimeOffset dispatchedAt, CancellationToken cancellationToken = default) => inner.MarkDispatchedAsync(ids, leaseToken, dispatchedAt, cancellationToken);

        public Task<bool> ReleaseAsync(long id, long leaseToken, DateTimeOffset retryAt, string error, bool outcomeUnknown = false, CancellationToken cancellationToken = default) => inner.ReleaseAsync(id, leaseToken, retryAt, error, outcomeUnknown, cancellationToken);

        public Task<OutboxStatistics> GetStatisticsAsync(DateTimeOffset now, CancellationToken cancellationToken = default) => inner.GetStatisticsAsync(now, cancellationToken);

        public Task<bool> DeadLetterAsync(long id, long leaseToken, DateTimeOffset deadLetteredAt, string error, CancellationToken cancellationToken = default) => inner.DeadLetterAsync(id, leaseToken, deadLetteredAt, error, cancellationToken);

        public Task<IReadOnlyList<OutboxMessage>> GetDeadLettersAsync(int limit, long afterId = 0, CancellationToken cancellationToken = default) => inner.GetDeadLettersAsync(limit, afterId, cancellationToken);

        public Task<int> RequeueDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default) => inner.RequeueDeadLettersAsync(ids, cancellationToken);

        public Task<int> PurgeDeadLettersAsync(IReadOnlyCollection<long>? ids, CancellationToken cancellationToken = default) => inner.PurgeDeadLettersAsync(ids, cancellationToken);

        public Task<IReadOnlyList<OutboxDestinationStatistics>> GetDestinationStatisticsAsync(CancellationToken cancellationToken = default) => inner.GetDestinationStatisticsAsync(cancellationToken);

        public async Task<int> RemoveDispatchedAsync(DateTimeOffset dispatchedBefore, int batchSize, CancellationToken cancellationToken = default)
        {
            try
            {
                return RemoveFailure is { } failure ? throw failure : await inner.RemoveDispatchedAsync(dispatchedBefore, batchSize, cancellationToken);
            }
            finally
            {
                _removeCalls.Release();
            }
        }
    }
}
