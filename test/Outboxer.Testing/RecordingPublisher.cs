using System.Collections.Concurrent;
using Outboxer.Providers;

namespace Outboxer.Testing;

/// <summary>
/// An in-process event stream for tests of the core and of stores: records every message it confirms, can fail chosen messages,
/// and can hold publishes until released. Broker tests use real brokers instead.
/// </summary>
public sealed class RecordingPublisher : IOutboxPublisher
{
    private readonly ConcurrentQueue<OutboxMessage> _published = new();
    private volatile TaskCompletionSource? _gate;
    private int _attempts;

    /// <summary>Gets or sets a function that returns the exception to fail a message with, or null to confirm it.</summary>
    public Func<OutboxMessage, Exception?>? Fail { get; set; }

    /// <summary>Gets the confirmed messages, in the order they were confirmed.</summary>
    public IReadOnlyList<OutboxMessage> Published => _published.ToArray();

    /// <summary>Gets how many publishes were attempted.</summary>
    public int Attempts => Volatile.Read(ref _attempts);

    /// <summary>Makes every publish wait until <see cref="Release"/>; <see cref="Waiting"/> completes when the first one waits.</summary>
    public void Hold() => _gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Lets held publishes go on.</summary>
    public void Release() => _gate?.TrySetResult();

    /// <summary>Gets a task that completes when a publish is waiting at the gate.</summary>
    public TaskCompletionSource Waiting { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <inheritdoc />
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _attempts);
        if (_gate is { } gate)
        {
            Waiting.TrySetResult();
            await gate.Task.WaitAsync(cancellationToken);
        }

        if (Fail?.Invoke(message) is { } failure)
        {
            throw failure;
        }

        _published.Enqueue(message);
    }
}

/// <summary>A <see cref="RecordingPublisher"/> with a batch API: records each batch it is handed and settles each message as <see cref="RecordingPublisher"/> does.</summary>
public sealed class RecordingBatchPublisher : IOutboxBatchPublisher
{
    private readonly ConcurrentQueue<int> _batches = new();

    /// <summary>Gets the publisher that settles each message.</summary>
    public RecordingPublisher Inner { get; } = new();

    /// <summary>Gets the sizes of the batches handed over, in order.</summary>
    public IReadOnlyList<int> Batches => _batches.ToArray();

    /// <summary>Gets or sets an exception that the whole batch call throws.</summary>
    public Exception? ThrowForBatch { get; set; }

    /// <inheritdoc />
    public ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default) => Inner.PublishAsync(message, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<Exception?>> PublishBatchAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        _batches.Enqueue(messages.Count);
        if (ThrowForBatch is { } failure)
        {
            throw failure;
        }

        var results = new Exception?[messages.Count];
        for (var i = 0; i < messages.Count; i++)
        {
            try
            {
                await Inner.PublishAsync(messages[i], cancellationToken);
            }
#pragma warning disable CA1031
            catch (Exception ex)
#pragma warning restore CA1031
            {
                results[i] = ex;
            }
        }

        return results;
    }
}
