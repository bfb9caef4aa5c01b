namespace Outboxer.Internal;

/// <summary>An auto-reset signal that coalesces many <see cref="Set"/> calls into one wake-up, awaited with a timeout measured by a <see cref="TimeProvider"/>.</summary>
internal sealed class WakeSignal
{
    private readonly TimeProvider _timeProvider;
    private TaskCompletionSource _next = NewSource();

    public WakeSignal(TimeProvider timeProvider) => _timeProvider = timeProvider;

    public void Set() => Volatile.Read(ref _next).TrySetResult();

    /// <summary>Waits until <see cref="Set"/> is called or <paramref name="timeout"/> passes. Returns true when woken.</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var source = Volatile.Read(ref _next);
        if (source.Task.IsCompleted)
        {
            Interlocked.CompareExchange(ref _next, NewSource(), source);
            return true;
        }

        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var delay = Task.Delay(timeout, _timeProvider, timeoutSource.Token);
        var first = await Task.WhenAny(source.Task, delay).ConfigureAwait(false);
        await timeoutSource.CancelAsync().ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        if (first == source.Task)
        {
            Interlocked.CompareExchange(ref _next, NewSource(), source);
            return true;
        }

        return false;
    }

    private static TaskCompletionSource NewSource() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
