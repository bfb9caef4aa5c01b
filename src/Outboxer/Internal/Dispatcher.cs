using Microsoft.Extensions.Logging;
using Outboxer.Providers;

namespace Outboxer.Internal;

/// <summary>
/// The dispatcher loop: claim a batch (oldest first, under a lease), publish it concurrently, mark the confirmed messages
/// dispatched in one statement, schedule the failed ones for a retry; with up to <see cref="OutboxOptions.MaxBatchesInFlight"/>
/// batches publishing and marking while the next is claimed. It drains while messages come, lets a batch in flight settle
/// before claiming again after a partial batch, and otherwise waits for a wake-up (this process's enqueue, another process's
/// commit through the store) or a poll: every few milliseconds after activity when nothing pushes wake-ups, else the check
/// interval.
/// </summary>
internal sealed class Dispatcher
{
    /// <summary>The longest a partial batch waits for a batch in flight before the next claim (see <see cref="CoalesceAsync"/>).</summary>
    private static readonly TimeSpan CoalesceDelay = TimeSpan.FromMilliseconds(5);

    private readonly IOutboxStore _store;
    private readonly IOutboxPublisher _publisher;
    private readonly OutboxOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Notifier<DispatchedMessage> _dispatched;
    private readonly Notifier<OutboxError> _errors;
    private readonly WakeSignal _wake;
    private readonly System.Collections.Concurrent.ConcurrentQueue<Committed> _committed = new();
    private readonly Telemetry _telemetry;
    private int _uncommittedEnqueue;
    private int _claimWanted = 1;
    private bool _listening;

    public Dispatcher(
        IOutboxStore store,
        IOutboxPublisher publisher,
        OutboxOptions options,
        TimeProvider time,
        ILogger logger,
        Notifier<DispatchedMessage> dispatched,
        Notifier<OutboxError> errors,
        Telemetry telemetry)
    {
        _store = store;
        _publisher = publisher;
        _options = options;
        _time = time;
        _logger = logger;
        _dispatched = dispatched;
        _errors = errors;
        _wake = new WakeSignal(time);
        _telemetry = telemetry;
    }

    /// <summary>
    /// Wakes the loop. <paramref name="committed"/> is false when the message was enqueued in the caller's transaction, which
    /// may commit a little later: the loop then polls again after short, growing delays until it finds the message or the
    /// delays reach the check interval.
    /// </summary>
    public void Wake(bool committed)
    {
        if (!committed)
        {
            Volatile.Write(ref _uncommittedEnqueue, 1);
        }

        Volatile.Write(ref _claimWanted, 1);
        _wake.Set();
    }

    /// <summary>
    /// Gets the token this dispatcher's sends after commit are written with (see <see cref="IOutboxLeasedWriter"/>): one per dispatcher,
    /// so that the rows of many such sends are marked in one statement; a row that another claim took carries another token.
    /// </summary>
    public long CommittedLeaseToken { get; } = Random.Shared.NextInt64(1, long.MaxValue);

    /// <summary>
    /// Publishes <paramref name="message"/>, which a transaction just committed already claimed by <see cref="CommittedLeaseToken"/>,
    /// from memory: no claim round trip. <paramref name="started"/> is the timestamp taken before its row was written (its lease
    /// began no earlier); a message that cannot be published within its lease any more is left to a claim after the lease.
    /// </summary>
    public void SendCommitted(OutboxMessage message, long started)
    {
        _committed.Enqueue(new Committed(message, started));
        _wake.Set();
    }

    public async Task RunAsync(CancellationToken stopping, CancellationToken abort)
    {
        Log.DispatcherStarted(_logger, _options.MessageBatchSize, _options.CheckInterval);
        var polls = new PollBackoff(_options.CheckInterval);
        var inFlight = new List<Task<BatchOutcome>>(_options.MaxBatchesInFlight);
        var pause = new FailurePause();
        var listening = _store is IOutboxWakeUpSource source ? ListenAsync(source, stopping) : Task.CompletedTask;
        try
        {
            while (!stopping.IsCancellationRequested)
            {
                if (Interlocked.Exchange(ref _uncommittedEnqueue, 0) == 1)
                {
                    polls.Start();
                }

                // Wait for a free slot: at most MaxBatchesInFlight claimed batches are being published and marked at a time,
                // and only one while the event stream is failing.
                var limit = pause.Probing ? 1 : _options.MaxBatchesInFlight;
                pause.Observe(inFlight);
                while (inFlight.Count >= limit || (pause.Due && inFlight.Count > 0))
                {
                    await Task.WhenAny(inFlight).ConfigureAwait(false);
                    pause.Observe(inFlight);
                    limit = pause.Probing ? 1 : _options.MaxBatchesInFlight;
                }

                if (pause.Due)
                {
                    // Every message of a batch failed (the broker is down or unreachable): pause like a failed message would,
                    // instead of claiming the rest of the backlog only to fail it and spend its attempts.
                    try
                    {
                        await Task.Delay(_options.RetryDelayAfter(pause.Begin()), _time, stopping).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                    {
                        break;
                    }
                }

                // Messages this process committed already claimed go first, from memory. Sends after commit alone wake the loop
                // without a claim: their rows are leased to this dispatcher, so a claim would find nothing new.
                var committed = TakeCommitted();
                if (committed.Count > 0)
                {
                    inFlight.Add(SettleAsync(new ClaimedBatch(committed, null), abort));
                    if (!Volatile.Read(ref _listening))
                    {
                        // As after a claim that found messages: while they come, other processes' commits may come too.
                        polls.Start();
                    }

                    if (Interlocked.Exchange(ref _claimWanted, 0) == 0)
                    {
                        try
                        {
                            if (!await _wake.WaitAsync(polls.Next(), stopping).ConfigureAwait(false))
                            {
                                Volatile.Write(ref _claimWanted, 1);
                            }
                        }
                        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                        {
                            break;
                        }

                        continue;
                    }
                }

                Volatile.Write(ref _claimWanted, 0);
                ClaimedBatch batch;
                try
                {
                    batch = await ClaimAsync(abort).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (abort.IsCancellationRequested)
                {
                    break;
                }
#pragma warning disable CA1031 // The loop must survive any store failure: report it and try again after the interval.
                catch (Exception ex)
#pragma warning restore CA1031
                {
                    Log.ClaimFailed(_logger, ex);
                    _errors.Publish(new OutboxError(OutboxOperation.Claim, ex));
                    batch = ClaimedBatch.None;
                    polls.Stop();
                }

                if (batch.Count > 0)
                {
                    inFlight.Add(SettleAsync(batch, abort));
                    if (!Volatile.Read(ref _listening))
                    {
                        // Nothing pushes other processes' commits to this dispatcher: poll again soon while messages come.
                        polls.Start();
                    }

                    if (batch.Count == _options.MessageBatchSize)
                    {
                        // More are probably pending: claim the next batch while this one is being published.
                        continue;
                    }

                    // A partial batch took everything committed so far. While messages keep coming, claiming again at once would
                    // make many small batches, each a claim and a mark; let a batch in flight settle first (or a moment pass), and
                    // claim what arrived meanwhile in one go (the wait below then returns at once).
                    try
                    {
                        await CoalesceAsync(inFlight, stopping).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                    {
                        break;
                    }
                }

                // Everything claimable was claimed. New commits wake the loop (this process's at once, other processes' through the
                // store's notifications); a settled batch with ordering keys wakes it too, as the keys' next messages became claimable.
                try
                {
                    if (!await _wake.WaitAsync(polls.Next(), stopping).ConfigureAwait(false))
                    {
                        Volatile.Write(ref _claimWanted, 1);
                    }
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    break;
                }
            }
        }
        finally
        {
            // Messages committed already claimed are published too on a graceful stop, instead of waiting out their lease.
            for (var rest = TakeCommitted(); rest.Count > 0 && !abort.IsCancellationRequested; rest = TakeCommitted())
            {
                inFlight.Add(SettleAsync(new ClaimedBatch(rest, null), abort));
            }

            // A graceful stop lets the batches in flight finish publishing and marking; an abort cancels them.
            await ((Task)Task.WhenAll(inFlight)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await listening.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            Log.DispatcherStopped(_logger);
        }
    }

    /// <summary>
    /// Takes up to a batch of the messages committed already claimed, oldest first, leaving out (to a claim after their lease) those
    /// with less than the publish timeout left of their lease.
    /// </summary>
    private List<OutboxMessage> TakeCommitted()
    {
        var batch = new List<OutboxMessage>();
        while (batch.Count < _options.MessageBatchSize && _committed.TryDequeue(out var committed))
        {
            var elapsed = _time.GetElapsedTime(committed.Started);
            if (elapsed + _options.PublishTimeout >= _options.LeaseDuration)
            {
                Log.ClaimTooLate(_logger, 1, elapsed, _options.LeaseDuration);
                continue;
            }

            batch.Add(committed.Message);
        }

        return batch;
    }

    /// <summary>Waits until a batch in flight settles or <see cref="CoalesceDelay"/> passes.</summary>
    private async Task CoalesceAsync(List<Task<BatchOutcome>> inFlight, CancellationToken stopping)
    {
        using var delay = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        await Task.WhenAny(Task.WhenAny(inFlight), Task.Delay(CoalesceDelay, _time, delay.Token)).ConfigureAwait(false);
        await delay.CancelAsync().ConfigureAwait(false);
        stopping.ThrowIfCancellationRequested();
    }

    /// <summary>A message committed already claimed by this dispatcher, with the timestamp taken before its row was written.</summary>
    private readonly record struct Committed(OutboxMessage Message, long Started);

    /// <summary>
    /// Claimed messages: under a lease (<paramref name="Locks"/> is null: settled row by row with their lease token) or locked by a claim
    /// transaction the store holds open (settled and committed through <paramref name="Locks"/>).
    /// </summary>
    private sealed record ClaimedBatch(IReadOnlyList<OutboxMessage> Messages, IOutboxLockedClaim? Locks)
    {
        public static readonly ClaimedBatch None = new([], null);

        public int Count => Messages.Count;
    }

    private enum BatchOutcome
    {
        /// <summary>Some messages were confirmed, or every failure was permanent.</summary>
        Settled,

        /// <summary>Every message failed, at least one transiently: the event stream is probably down.</summary>
        AllFailed,
    }

    /// <summary>Called by the store for every notification, and once when listening starts.</summary>
    private void OnNotification()
    {
        Volatile.Write(ref _listening, true);
        Volatile.Write(ref _claimWanted, 1);
        _wake.Set();
    }

    /// <summary>Keeps listening for other processes' commits, and listens again after the check interval when the connection fails.</summary>
    private async Task ListenAsync(IOutboxWakeUpSource source, CancellationToken stopping)
    {
        await Task.Yield();
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await source.ListenAsync(OnNotification, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // Listening is an optimisation over polling: report, wait, listen again.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Log.ListenFailed(_logger, ex, _options.CheckInterval);
            }
            finally
            {
                Volatile.Write(ref _listening, false);
            }

            try
            {
                await Task.Delay(_options.CheckInterval, _time, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Claims, publishes and settles one batch. Returns how many messages were claimed. Throws only when claiming fails.</summary>
    public async Task<int> DispatchBatchAsync(CancellationToken cancellationToken)
    {
        var batch = await ClaimAsync(cancellationToken).ConfigureAwait(false);
        if (batch.Count > 0)
        {
            await SettleAsync(batch, cancellationToken).ConfigureAwait(false);
        }

        return batch.Count;
    }

    /// <summary>
    /// Claims up to a batch of pending messages: locked by a claim transaction when the store claims by row lock, else under a lease. A
    /// leasing claim that came back too late to publish safely (less than the publish timeout left of the lease, measured from before it
    /// was sent, as the store stamps the lease from that moment at the earliest) returns nothing: another dispatcher may claim those rows
    /// as soon as the lease runs out, and both would publish them. A locked claim's hold starts only once the claim statement ended.
    /// </summary>
    private async Task<ClaimedBatch> ClaimAsync(CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        var now = _time.GetUtcNow();
        using var claim = Telemetry.StartClaim();
        ClaimedBatch batch;
        try
        {
            if (_store is IOutboxLockingStore { ClaimsByRowLock: true } locking)
            {
                var locks = await locking.ClaimLockedAsync(_options.MessageBatchSize, now, _options.LeaseDuration, cancellationToken).ConfigureAwait(false);
                batch = new ClaimedBatch(locks.Messages, locks);
            }
            else
            {
                batch = new ClaimedBatch(await _store.ClaimAsync(_options.MessageBatchSize, now, now + _options.LeaseDuration, cancellationToken).ConfigureAwait(false), null);
            }
        }
        catch (Exception ex)
        {
            Telemetry.Failed(claim, ex);
            throw;
        }

        Telemetry.Claimed(claim, batch.Count);
        if (batch.Count == 0)
        {
            if (batch.Locks is { } empty)
            {
                await empty.DisposeAsync().ConfigureAwait(false);
            }

            return ClaimedBatch.None;
        }

        _telemetry.ClaimedMessages.Add(batch.Count);
        var elapsed = _time.GetElapsedTime(started);
        if (batch.Locks is null && elapsed + _options.PublishTimeout >= _options.LeaseDuration)
        {
            Log.ClaimTooLate(_logger, batch.Count, elapsed, _options.LeaseDuration);
            return ClaimedBatch.None;
        }

        return batch;
    }

    /// <summary>
    /// Publishes a claimed batch, marks the confirmed messages dispatched in one statement and schedules the failed ones for a retry
    /// (or moves them to the dead letters). Never throws: every failure is reported and the rows come back (after their lease, or at
    /// once when a locked claim could not settle).
    /// </summary>
    private async Task<BatchOutcome> SettleAsync(ClaimedBatch claimed, CancellationToken cancellationToken)
    {
        var batch = claimed.Messages;
        Exception?[] failures;
        try
        {
            // Spans and send metrics come from the publisher Telemetry.Instrument wrapped.
            failures = await PublishAsync(batch, cancellationToken).ConfigureAwait(false);
        }
        catch when (claimed.Locks is not null)
        {
            // Aborted: the claim rolls back, and its rows are claimable again at once.
            await claimed.Locks.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        var confirmed = new List<OutboxMessage>(batch.Count);
        var keyed = false;
        for (var i = 0; i < batch.Count; i++)
        {
            keyed |= batch[i].OrderingKey is not null;
            if (failures[i] is null)
            {
                confirmed.Add(batch[i]);
            }
        }

        if (claimed.Locks is { } locks)
        {
            await SettleLockedAsync(locks, batch, confirmed, failures, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            if (confirmed.Count > 0)
            {
                await MarkDispatchedAsync(confirmed, cancellationToken).ConfigureAwait(false);
            }

            for (var i = 0; i < batch.Count; i++)
            {
                if (failures[i] is { } failure)
                {
                    await ReleaseAsync(batch[i], failure, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        if (keyed)
        {
            // The next message of each key was not claimable while this one was pending; it is now.
            Volatile.Write(ref _claimWanted, 1);
            _wake.Set();
        }

        Log.BatchDispatched(_logger, confirmed.Count, batch.Count);
        var allFailedTransiently = confirmed.Count == 0 && Array.Exists(failures, f => f is not OutboxException { IsTransient: false });
        return allFailedTransiently ? BatchOutcome.AllFailed : BatchOutcome.Settled;
    }

    /// <summary>
    /// Settles a locked claim in its own transaction: the confirmed messages marked, the failed ones released or dead-lettered, one
    /// commit. When that fails (the database went away, or PostgreSQL ended a claim that stayed idle past the lease), nothing is
    /// settled: the rows are free again, and the confirmed messages will be published again (counted as possible duplicates).
    /// </summary>
    private async Task SettleLockedAsync(IOutboxLockedClaim locks, IReadOnlyList<OutboxMessage> batch, List<OutboxMessage> confirmed, Exception?[] failures, CancellationToken cancellationToken)
    {
        await using (locks.ConfigureAwait(false))
        {
            var now = _time.GetUtcNow();
            var failed = new List<OutboxFailedAttempt>();
            var deadLetters = 0;
            for (var i = 0; i < batch.Count; i++)
            {
                if (failures[i] is { } failure)
                {
                    var verdict = Judge(batch[i], failure, now);
                    deadLetters += verdict.RetryAt is null ? 1 : 0;
                    failed.Add(new OutboxFailedAttempt(batch[i].Id, verdict.Error, verdict.RetryAt, verdict.OutcomeUnknown));
                }
            }

            try
            {
                await locks.SettleAsync([.. confirmed.Select(static m => m.Id)], failed, now, cancellationToken).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // Reported; the rows are claimable again and their messages published again (at-least-once).
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Log.MarkDispatchedFailed(_logger, ex, confirmed.Count);
                _telemetry.PossibleDuplicates.Add(confirmed.Count);
                _errors.Publish(new OutboxError(OutboxOperation.MarkDispatched, ex));
                return;
            }

            if (deadLetters > 0)
            {
                _telemetry.DeadLetteredMessages.Add(deadLetters);
            }

            PublishDispatched(confirmed, now);
        }
    }

    private async Task<Exception?[]> PublishAsync(IReadOnlyList<OutboxMessage> batch, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.PublishTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        if (_publisher is IOutboxBatchPublisher batchPublisher)
        {
            return await PublishBatchAsync(batchPublisher, batch, linked.Token, timeout.Token).ConfigureAwait(false);
        }

        var tasks = new Task<Exception?>[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            tasks[i] = PublishOneAsync(batch[i], linked.Token, timeout.Token);
        }

        return await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private async Task<Exception?[]> PublishBatchAsync(IOutboxBatchPublisher publisher, IReadOnlyList<OutboxMessage> batch, CancellationToken cancellationToken, CancellationToken timeout)
    {
        Exception failure;
        try
        {
            var results = await publisher.PublishBatchAsync(batch, cancellationToken).ConfigureAwait(false);
            if (results.Count == batch.Count)
            {
                return [.. results];
            }

            failure = new OutboxException($"{publisher.GetType().Name} returned {results.Count} results for a batch of {batch.Count} messages; the batch counts as failed.", isTransient: true);
        }
        catch (OperationCanceledException ex) when (timeout.IsCancellationRequested)
        {
            failure = new OutboxException($"The event stream did not confirm a batch of {batch.Count} messages within {_options.PublishTimeout}.", isTransient: true, ex) { IsOutcomeUnknown = true };
        }
#pragma warning disable CA1031 // A failing batch is reported and retried; it must not stop the loop.
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested || timeout.IsCancellationRequested)
#pragma warning restore CA1031
        {
            failure = ex;
        }

        var failures = new Exception?[batch.Count];
        Array.Fill(failures, failure);
        return failures;
    }

    private async Task<Exception?> PublishOneAsync(OutboxMessage message, CancellationToken cancellationToken, CancellationToken timeout)
    {
        try
        {
            await _publisher.PublishAsync(message, cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (OperationCanceledException ex) when (timeout.IsCancellationRequested)
        {
            return new OutboxException($"The event stream did not confirm message {message.Id} ({message.MessageId}) within {_options.PublishTimeout}.", isTransient: true, ex) { IsOutcomeUnknown = true };
        }
#pragma warning disable CA1031 // A failing message is reported and retried; it must not stop the batch.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            return ex;
        }
    }

    /// <summary>
    /// Marks the confirmed messages with one statement per claim (a batch is one claim). Rows that another claim took after this
    /// dispatcher's lease ran out are not marked by the store; they will be published again, and are counted as possible duplicates.
    /// So are the messages of a mark that failed (the session was terminated, the database went away): unless the mark committed before
    /// its answer was lost, they come back after their lease and are published again.
    /// </summary>
    private async Task MarkDispatchedAsync(List<OutboxMessage> confirmed, CancellationToken cancellationToken)
    {
        var dispatchedAt = _time.GetUtcNow();
        var marked = 0;
        try
        {
            foreach (var claim in confirmed.GroupBy(static m => m.LeaseToken))
            {
                marked += await _store.MarkDispatchedAsync([.. claim.Select(static m => m.Id)], claim.Key, dispatchedAt, cancellationToken).ConfigureAwait(false);
            }
        }
#pragma warning disable CA1031 // Reported; the rows come back after their lease and are published again (at-least-once).
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.MarkDispatchedFailed(_logger, ex, confirmed.Count - marked);
            _telemetry.PossibleDuplicates.Add(confirmed.Count - marked);
            _errors.Publish(new OutboxError(OutboxOperation.MarkDispatched, ex));
            return;
        }

        if (marked < confirmed.Count)
        {
            Log.LeaseLost(_logger, confirmed.Count - marked, confirmed.Count);
            _telemetry.PossibleDuplicates.Add(confirmed.Count - marked);
        }

        PublishDispatched(confirmed, dispatchedAt);
    }

    /// <summary>Tells the observers of <see cref="Outbox.Dispatched"/> about messages marked dispatched.</summary>
    private void PublishDispatched(List<OutboxMessage> confirmed, DateTimeOffset dispatchedAt)
    {
        if (!_dispatched.IsObserved)
        {
            return;
        }

        foreach (var message in confirmed)
        {
            _dispatched.Publish(new DispatchedMessage(message.Id, message.MessageId, dispatchedAt));
        }
    }

    /// <summary>
    /// Decides what becomes of a message whose publish failed, reports the failure, and logs and counts the decision: a retry time, or
    /// (<see cref="Verdict.RetryAt"/> null) the dead letters.
    /// </summary>
    private Verdict Judge(OutboxMessage message, Exception failure, DateTimeOffset now)
    {
        _errors.Publish(new OutboxError(OutboxOperation.Publish, failure, message.Id, message.MessageId));

        // A publish without an answer may have reached the broker: it is retried (a possible duplicate), however many attempts it took,
        // and never becomes a dead letter on such an attempt, because a dead letter is a message the broker did not get.
        var unknown = failure is OutboxException { IsOutcomeUnknown: true };
        var error = unknown
            ? $"Outcome unknown (it may have been published): {failure.GetType().Name}: {failure.Message}"
            : $"{failure.GetType().Name}: {failure.Message}";

        // A failure that cannot succeed by retrying (unroutable, too large, a wrong option), or the last allowed attempt, moves the
        // message to the dead letters, where it is kept for an operator instead of blocking or spinning.
        var permanent = !unknown && failure is OutboxException { IsTransient: false };
        if (permanent || (!unknown && message.Attempts >= _options.MaxAttempts))
        {
            Log.DeadLettered(_logger, failure, message.Id, message.MessageId, message.Attempts, permanent);
            return new Verdict(error, null, unknown);
        }

        var retryAt = now + _options.JitteredRetryDelayAfter(message.Attempts);
        if (unknown)
        {
            Log.PublishOutcomeUnknown(_logger, failure, message.Id, message.MessageId, message.Attempts, retryAt);
            _telemetry.PossibleDuplicates.Add(1);
        }
        else
        {
            Log.PublishFailed(_logger, failure, message.Id, message.MessageId, message.Attempts, retryAt);
        }

        _telemetry.RetriedMessages.Add(1);
        return new Verdict(error, retryAt, unknown);
    }

    /// <summary>Settles a failed message of a leasing claim with its lease token (see <see cref="Judge"/>).</summary>
    private async Task ReleaseAsync(OutboxMessage message, Exception failure, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var verdict = Judge(message, failure, now);
        if (verdict.RetryAt is not { } retryAt)
        {
            try
            {
                // False when another claim took the row after this lease ran out: that dispatcher settles it.
                if (await _store.DeadLetterAsync(message.Id, message.LeaseToken, now, verdict.Error, cancellationToken).ConfigureAwait(false))
                {
                    _telemetry.DeadLetteredMessages.Add(1);
                }
            }
#pragma warning disable CA1031 // Reported; the row comes back after its lease and fails again.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Log.ReleaseFailed(_logger, ex, message.Id);
                _errors.Publish(new OutboxError(OutboxOperation.DeadLetter, ex, message.Id, message.MessageId));
            }

            return;
        }

        try
        {
            // False when another claim took the row after this lease ran out: that dispatcher settles it.
            await _store.ReleaseAsync(message.Id, message.LeaseToken, retryAt, verdict.Error, verdict.OutcomeUnknown, cancellationToken).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Reported; the row comes back after its lease anyway.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.ReleaseFailed(_logger, ex, message.Id);
            _errors.Publish(new OutboxError(OutboxOperation.Release, ex, message.Id, message.MessageId));
        }
    }

    /// <summary>What becomes of a failed message: retried at <see cref="RetryAt"/>, or a dead letter when it is null.</summary>
    private readonly record struct Verdict(string Error, DateTimeOffset? RetryAt, bool OutcomeUnknown);

    /// <summary>
    /// Whole-batch failures: after one, the loop lets the batches in flight finish, pauses (the retry delay, growing with each
    /// further failed pause), then sends one batch at a time until a batch succeeds again.
    /// </summary>
    private sealed class FailurePause
    {
        private int _pauses;

        /// <summary>Gets a value indicating whether a batch failed as a whole since the last pause.</summary>
        public bool Due { get; private set; }

        /// <summary>Gets a value indicating whether the loop is after a pause and sends one batch at a time.</summary>
        public bool Probing { get; private set; }

        /// <summary>Removes the settled batches from <paramref name="inFlight"/> and takes in their outcomes.</summary>
        public void Observe(List<Task<BatchOutcome>> inFlight)
        {
            bool failed = false, settled = false;
            for (var i = inFlight.Count - 1; i >= 0; i--)
            {
                if (inFlight[i].IsCompleted)
                {
                    failed |= inFlight[i].Result == BatchOutcome.AllFailed;
                    settled |= inFlight[i].Result == BatchOutcome.Settled;
                    inFlight.RemoveAt(i);
                }
            }

            if (settled)
            {
                // The event stream works again.
                _pauses = 0;
                Due = false;
                Probing = false;
            }
            else if (failed)
            {
                Due = true;
            }
        }

        /// <summary>Starts a pause and returns its number in the current run of failures (1 for the first).</summary>
        public int Begin()
        {
            Due = false;
            Probing = true;
            return ++_pauses;
        }
    }

    /// <summary>
    /// The waits between claims that find nothing while messages may be about to commit: a few at <see cref="Step"/> (an enqueuing
    /// commit takes about as long as a disk flush), then doubling, back to the check interval.
    /// </summary>
    private sealed class PollBackoff(TimeSpan checkInterval)
    {
        private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(1);
        private const int FlatSteps = 3;

        private int _polls = -1;

        /// <summary>Starts polling again from the shortest wait.</summary>
        public void Start() => _polls = 0;

        /// <summary>Goes back to waiting for the check interval.</summary>
        public void Stop() => _polls = -1;

        /// <summary>Returns the next wait.</summary>
        public TimeSpan Next()
        {
            if (_polls < 0)
            {
                return checkInterval;
            }

            var wait = _polls < FlatSteps ? Step : Step * (1L << Math.Min(_polls - FlatSteps + 1, 30));
            _polls++;
            if (wait >= checkInterval)
            {
                Stop();
                return checkInterval;
            }

            return wait;
        }
    }
}
