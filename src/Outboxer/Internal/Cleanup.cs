using Microsoft.Extensions.Logging;
using Outboxer.Providers;

namespace Outboxer.Internal;

/// <summary>The cleanup loop: at start and then every interval, delete messages dispatched longer ago than the retention, in batches, until none are left.</summary>
internal sealed class Cleanup
{
    private readonly IOutboxStore _store;
    private readonly OutboxOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Notifier<OutboxError> _errors;
    private readonly Func<CancellationToken, Task>? _statistics;
    private readonly Telemetry _telemetry;

    // statistics: refreshes the statistics gauges after each run, or null when the store has no statistics.
    public Cleanup(IOutboxStore store, OutboxOptions options, TimeProvider time, ILogger logger, Notifier<OutboxError> errors, Telemetry telemetry, Func<CancellationToken, Task>? statistics)
    {
        _statistics = statistics;
        _telemetry = telemetry;
        _store = store;
        _options = options;
        _time = time;
        _logger = logger;
        _errors = errors;
    }

    public async Task RunAsync(CancellationToken stopping, CancellationToken abort)
    {
        Log.CleanupStarted(_logger, _options.CleanupInterval, _options.CleanupOlderThan);
        using var timer = new PeriodicTimer(_options.CleanupInterval, _time);
        try
        {
            do
            {
                try
                {
                    await RunOnceAsync(stopping, abort).ConfigureAwait(false);
                    if (_statistics is not null)
                    {
                        await _statistics(abort).ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException) when (abort.IsCancellationRequested)
                {
                    break;
                }
#pragma warning disable CA1031 // The loop must survive any store failure: report it and try at the next run.
                catch (Exception ex)
#pragma warning restore CA1031
                {
                    Log.CleanupFailed(_logger, ex);
                    _errors.Publish(new OutboxError(OutboxOperation.Cleanup, ex));
                }
            }
            while (await WaitAsync(timer, stopping).ConfigureAwait(false));
        }
        finally
        {
            Log.CleanupStopped(_logger);
        }
    }

    /// <summary>Deletes every message dispatched before now minus the retention, one batch per statement. Returns how many were deleted.</summary>
    public async Task<int> RunOnceAsync(CancellationToken stopping, CancellationToken cancellationToken)
    {
        var cutoff = _time.GetUtcNow() - _options.CleanupOlderThan;
        var total = 0;
        int deleted;
        do
        {
            deleted = await _store.RemoveDispatchedAsync(cutoff, _options.CleanupBatchSize, cancellationToken).ConfigureAwait(false);
            total += deleted;
        }
        while (deleted >= _options.CleanupBatchSize && !stopping.IsCancellationRequested);

        if (total > 0)
        {
            _telemetry.DeletedMessages.Add(total);
            Log.CleanupDeleted(_logger, total, cutoff);
        }

        return total;
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken stopping)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            return false;
        }
    }
}
