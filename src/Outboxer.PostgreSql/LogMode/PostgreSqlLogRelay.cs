using System.Diagnostics.Metrics;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;
using NpgsqlTypes;
using Outboxer.Internal;
using Outboxer.Providers;

namespace Outboxer.PostgreSql;

/// <summary>
/// The relay of an outbox in log mode: consumes a logical replication slot (plugin <c>pgoutput</c> with <c>messages</c> on), decodes the
/// messages that <see cref="PostgreSqlLogWriter"/> wrote under its prefix, publishes them, and acknowledges the slot only up to the last
/// transaction whose messages the broker all confirmed. No table is claimed, marked or cleaned.
/// </summary>
/// <remarks>
/// <para>
/// <b>At least once.</b> PostgreSQL decodes a message only if its transaction committed, and streams transactions in commit order. The
/// relay acknowledges a transaction's commit position (the slot's <c>confirmed_flush_lsn</c>) only after every message of it and of every
/// earlier transaction was confirmed by the broker (or moved to the dead letters). After a crash, a restart, a lost connection or a
/// takeover, decoding resumes after the acknowledged position, so a message can be published again (a duplicate) only if it was
/// published but not yet acknowledged when that happened. Consumers deduplicate by <see cref="OutboxMessage.MessageId"/>.
/// </para>
/// <para>
/// <b>Ordering.</b> Messages with the same <see cref="OutboxMessage.OrderingKey"/> are published one after the other in commit order (and,
/// within a transaction, in the order they were written): a message is handed to the broker only after the previous one of its key was
/// confirmed (a batch publisher gets at most one message of each key per call). Messages without a key, or with different keys, are
/// published concurrently within a batch of <see cref="PostgreSqlLogRelayOptions.BatchSize"/>, so their order at the broker is not
/// fixed. Batches go one after the other: a transient failure holds back the later messages of its key at once, and the rest of the
/// stream after its batch, until the failed message is confirmed (the slot can only be acknowledged in order). After a crash the first
/// delivery of every message is still in key order; duplicates may repeat an already delivered prefix of a key.
/// </para>
/// <para>
/// <b>Failures.</b> A message the broker refuses for good (an <see cref="OutboxException"/> that is not transient), or an envelope the
/// relay cannot read, goes to the dead-letter table with its error, and the stream moves on. Any other failure is retried with
/// exponential backoff, forever: a broker outage pauses the relay, it does not dead-letter healthy messages.
/// </para>
/// <para>
/// <b>One consumer per slot.</b> PostgreSQL lets one connection at a time consume a slot; a relay that finds the slot in use stands by and
/// tries again every <see cref="PostgreSqlLogRelayOptions.TakeoverInterval"/>, and takes over when the active relay's connection ends.
/// </para>
/// <para>
/// <b>Telemetry.</b> The relay uses the outbox's <see cref="OutboxerTelemetry.ActivitySourceName"/> and
/// <see cref="OutboxerTelemetry.MeterName"/> as the table dispatcher does: a <c>send {destination}</c> span per publish call, linked to the
/// creation context the message carries; <c>messaging.client.sent.messages</c>, <c>messaging.client.operation.duration</c>,
/// <c>outboxer.messages.failed</c>, <c>outboxer.messages.retried</c>, <c>outboxer.messages.dead_lettered</c> and
/// <c>outboxer.messages.possible_duplicates</c> (messages confirmed but not yet acknowledged on the slot when a session ended, publishes
/// with an unknown outcome or cut off by the end of a session, and messages of transactions this relay had acknowledged that the server streams again after it lost the
/// slot's position, as a crash does); and the gauge <c>outboxer.log.slot.lag</c> (bytes, tag <c>outboxer.log.slot</c>): the server's end
/// of the log as last reported on the replication stream, less the position the relay acknowledged, while the relay is active.
/// </para>
/// </remarks>
public sealed class PostgreSqlLogRelay : IHostedService, IAsyncDisposable
{
    private static readonly OutboxException s_notAttempted =
        new("Not attempted: an earlier message of its ordering key in the same batch failed.", isTransient: true);

    private readonly string _connectionString;
    private readonly IOutboxPublisher _publisher;
    private readonly PostgreSqlLogOptions _options;
    private readonly PostgreSqlLogRelayOptions _relay;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly NpgsqlDataSource _dataSource;
    private readonly string _heartbeatPrefix;
    private readonly Telemetry _telemetry;
    private CancellationTokenSource? _stopping;
    private Task? _loop;
    private volatile bool _active;
    private long _published;
    private long _deadLettered;
    private ulong _acknowledged;
    private ulong _serverWalEnd;
    private long _unacknowledged;
    private ulong _replayBelow;

    /// <summary>Initializes a relay of the outbox whose slot is in the database that <paramref name="connectionString"/> names.</summary>
    /// <param name="connectionString">
    /// An Npgsql connection string of a role with the <c>REPLICATION</c> attribute (the relay opens a replication connection with it, and
    /// a small data source of its own for heartbeats and dead letters). It is never written to logs or exceptions.
    /// </param>
    /// <param name="publisher">Where the messages go; the relay does not dispose it.</param>
    /// <param name="options">The prefix, slot, publication and dead-letter table; <see langword="null"/> for the defaults.</param>
    /// <param name="relayOptions">Batching, retries, takeover and heartbeat; <see langword="null"/> for the defaults.</param>
    /// <param name="loggerFactory">Where the relay logs (category <c>Outboxer.PostgreSql.LogRelay</c>); <see langword="null"/> for none.</param>
    /// <param name="timeProvider">The clock for retries, takeovers and heartbeats; <see langword="null"/> for the system clock.</param>
    /// <param name="meterFactory">
    /// Where the relay's meter comes from (the host's, with dependency injection); <see langword="null"/> for a meter the relay owns and
    /// disposes with itself.
    /// </param>
    /// <exception cref="ArgumentNullException"><paramref name="connectionString"/> or <paramref name="publisher"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">The connection string is empty or invalid, or an option is invalid (the message names it).</exception>
    public PostgreSqlLogRelay(
        string connectionString,
        IOutboxPublisher publisher,
        PostgreSqlLogOptions? options = null,
        PostgreSqlLogRelayOptions? relayOptions = null,
        ILoggerFactory? loggerFactory = null,
        TimeProvider? timeProvider = null,
        IMeterFactory? meterFactory = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        ArgumentNullException.ThrowIfNull(publisher);
        var given = options ?? new PostgreSqlLogOptions();
        _options = new PostgreSqlLogOptions
        {
            Prefix = given.Prefix,
            SlotName = given.SlotName,
            PublicationName = given.PublicationName,
            SchemaName = given.SchemaName,
            DeadLetterTableName = given.DeadLetterTableName,
        }.Validate();
        var relay = relayOptions ?? new PostgreSqlLogRelayOptions();
        _relay = new PostgreSqlLogRelayOptions
        {
            BatchSize = relay.BatchSize,
            PublishTimeout = relay.PublishTimeout,
            RetryDelay = relay.RetryDelay,
            MaxRetryDelay = relay.MaxRetryDelay,
            TakeoverInterval = relay.TakeoverInterval,
            HeartbeatInterval = relay.HeartbeatInterval,
        }.Validate();
        _connectionString = connectionString;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Outboxer.PostgreSql.LogRelay");
        _time = timeProvider ?? TimeProvider.System;
        _heartbeatPrefix = _options.Prefix + ".heartbeat";
        try
        {
            _dataSource = NpgsqlDataSource.Create(connectionString);
        }
        catch (ArgumentException ex)
        {
            // Npgsql's message can quote the connection string; this one names no value of it.
            throw new ArgumentException("The connection string is not a valid Npgsql connection string.", nameof(connectionString), ex.InnerException);
        }

        // The table dispatcher's spans and instruments (Telemetry.Instrument wraps the publisher), plus the slot's lag.
        _telemetry = new Telemetry(meterFactory, publisher, _time);
        _publisher = _telemetry.Instrument(publisher);
        _telemetry.Meter.CreateObservableGauge(
            "outboxer.log.slot.lag",
            ObserveLag,
            "By",
            "Bytes of write-ahead log between the server's end, as last reported on the replication stream, and the position the log relay acknowledged on its slot.");
    }

    /// <summary>Gets a value indicating whether this relay consumes the slot now (the others stand by).</summary>
    public bool IsActive => _active;

    /// <summary>Gets how many messages the broker confirmed since the relay started (duplicates after a resume included).</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Gets how many messages this relay moved to the dead-letter table.</summary>
    public long DeadLettered => Interlocked.Read(ref _deadLettered);

    /// <summary>Gets the last commit position this relay acknowledged on the slot (0/0 before the first).</summary>
    public NpgsqlLogSequenceNumber AcknowledgedPosition => new(Interlocked.Read(ref _acknowledged));

    /// <summary>
    /// Starts relaying in the background: the relay consumes the slot, or stands by while another relay does. Returns at once; failures
    /// are logged and retried, never thrown here.
    /// </summary>
    /// <param name="cancellationToken">Not used: starting does no I/O.</param>
    /// <returns>A completed task.</returns>
    /// <exception cref="InvalidOperationException">The relay was started already.</exception>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_loop is not null)
        {
            throw new InvalidOperationException("The log relay was started already; create another one to run a standby.");
        }

        _stopping = new CancellationTokenSource();
        _loop = Task.Run(() => RunAsync(_stopping.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Stops relaying: the batch in flight is abandoned (its messages are published again by the next relay, as duplicates if the broker
    /// had them already) and the replication connection closes, which frees the slot for a standby.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting for the relay to end.</param>
    /// <returns>A task that completes when the relay ended.</returns>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (_loop is null || _stopping is null)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _loop.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stops the relay and releases its data source; the publisher is not disposed.</summary>
    /// <returns>A task that completes when the relay is disposed.</returns>
    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None).ConfigureAwait(false);
        _stopping?.Dispose();
        await _dataSource.DisposeAsync().ConfigureAwait(false);
        _telemetry.Dispose();
    }

    private async Task RunAsync(CancellationToken stopping)
    {
        var failures = 0;
        var standing = false;
        while (!stopping.IsCancellationRequested)
        {
            TimeSpan wait;
            try
            {
                await RunSessionAsync(() => { failures = 0; standing = false; }, stopping).ConfigureAwait(false);

                // Only returns when another relay consumes the slot.
                if (!standing)
                {
                    LogModeLog.Standby(_logger, _options.SlotName, _relay.TakeoverInterval);
                    standing = true;
                }

                wait = _relay.TakeoverInterval;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }
            catch (OutboxException ex) when (!ex.IsTransient)
            {
                wait = _relay.MaxRetryDelay;
                LogModeLog.SlotUnusable(_logger, _options.SlotName, ex.Message, wait);
            }
#pragma warning disable CA1031 // Any failure of a session is logged and the relay resumes from the slot.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                wait = Backoff(failures++);
                LogModeLog.Failed(_logger, ex, _options.SlotName, wait);
            }

            try
            {
                await Task.Delay(wait, _time, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        LogModeLog.Stopped(_logger, _options.SlotName, AcknowledgedPosition.ToString());
    }

    /// <summary>
    /// One replication connection: read, publish and acknowledge until it fails (throws) or the relay stops (throws
    /// <see cref="OperationCanceledException"/>). Returns only when another relay consumes the slot.
    /// </summary>
    private async Task RunSessionAsync(Action activated, CancellationToken stopping)
    {
        // A standby asks with an ordinary query first, so that it does not start a walsender every takeover interval.
        if (await SlotActivePidAsync(stopping).ConfigureAwait(false) is not null)
        {
            return;
        }

        // Transactions that committed before what this relay acknowledged were published already: the server streams them again when
        // it lost the slot's last position (a crash keeps the slot as of the last checkpoint), and each is counted as a duplicate.
        Volatile.Write(ref _replayBelow, Interlocked.Read(ref _acknowledged));
        var connection = new LogicalReplicationConnection(_connectionString);
        await using (connection.ConfigureAwait(false))
        {
            await connection.Open(stopping).ConfigureAwait(false);
            using var session = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            var channel = Channel.CreateBounded<Entry>(new BoundedChannelOptions(Math.Max(2 * _relay.BatchSize, 1024))
            {
                SingleReader = true,
                SingleWriter = true,
                FullMode = BoundedChannelFullMode.Wait,
            });
            var read = ReadAsync(connection, channel.Writer, session.Token);
            var watch = WatchAsync(connection, read, activated, session.Token);
            var publish = PublishLoopAsync(connection, channel.Reader, session.Token);
            try
            {
                var first = await Task.WhenAny(read, publish).ConfigureAwait(false);
                await first.ConfigureAwait(false);
                stopping.ThrowIfCancellationRequested();
                throw new OutboxException("The server ended the replication stream.", isTransient: true);
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ObjectInUse)
            {
                // Another relay took the slot between the query and START_REPLICATION.
                return;
            }
            catch (PostgresException ex) when (ex.SqlState is PostgresErrorCodes.UndefinedObject or PostgresErrorCodes.ObjectNotInPrerequisiteState or PostgresErrorCodes.InsufficientPrivilege)
            {
                throw new OutboxException($"{ex.MessageText} Check it with `outboxer logmode status`.", isTransient: false, ex);
            }
            finally
            {
                _active = false;
                await session.CancelAsync().ConfigureAwait(false);
                await Task.WhenAll(read, publish, watch).ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default).ConfigureAwait(false);

                // Confirmed by the broker but not acknowledged on the slot: the next session (here or in a standby) publishes them again.
                if (Interlocked.Exchange(ref _unacknowledged, 0) is > 0 and var unacknowledged)
                {
                    _telemetry.PossibleDuplicates.Add(unacknowledged);
                }
            }
        }
    }

    /// <summary>Decodes the slot's stream into entries: the outbox's messages and a marker at every commit.</summary>
    private async Task ReadAsync(LogicalReplicationConnection connection, ChannelWriter<Entry> writer, CancellationToken cancellationToken)
    {
        try
        {
            var slot = new PgOutputReplicationSlot(_options.SlotName);
            var options = new PgOutputReplicationOptions(_options.PublicationName, PgOutputProtocolVersion.V1, binary: null, streamingMode: null, messages: true, twoPhase: null);
            var buffer = new MemoryStream();
            var replayBelow = Volatile.Read(ref _replayBelow);
            var replayed = false;
            await foreach (var message in connection.StartReplication(slot, options, cancellationToken).ConfigureAwait(false))
            {
                Volatile.Write(ref _serverWalEnd, (ulong)message.WalEnd);
                switch (message)
                {
                    case BeginMessage begin:
                        replayed = (ulong)begin.TransactionFinalLsn < replayBelow;
                        break;
                    case LogicalDecodingMessage { Flags: 1 } decoded when string.Equals(decoded.Prefix, _options.Prefix, StringComparison.Ordinal):
                        buffer.SetLength(0);
                        await decoded.Data.CopyToAsync(buffer, cancellationToken).ConfigureAwait(false);
                        await writer.WriteAsync(Entry.Decode(buffer.ToArray(), (ulong)decoded.MessageLsn, replayed), cancellationToken).ConfigureAwait(false);
                        break;
                    case CommitMessage commit:
                        await writer.WriteAsync(Entry.Commit((ulong)commit.TransactionEndLsn), cancellationToken).ConfigureAwait(false);
                        break;
                }
            }
        }
        finally
        {
            writer.TryComplete();
        }
    }

    /// <summary>Tells when the server handed this connection the slot, then writes heartbeats while it holds it.</summary>
    private async Task WatchAsync(LogicalReplicationConnection connection, Task read, Action activated, CancellationToken cancellationToken)
    {
        try
        {
            while (!read.IsCompleted)
            {
                if (await SlotActivePidAsync(cancellationToken).ConfigureAwait(false) == connection.ProcessID)
                {
                    break;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(50), _time, cancellationToken).ConfigureAwait(false);
            }

            if (read.IsCompleted)
            {
                return;
            }

            _active = true;
            activated();
            LogModeLog.Active(_logger, _options.SlotName, _options.PublicationName, _options.Prefix);
            while (!read.IsCompleted)
            {
                try
                {
                    var heartbeat = _dataSource.CreateCommand("SELECT pg_logical_emit_message(true, $1, ''::bytea)");
                    await using (heartbeat.ConfigureAwait(false))
                    {
                        heartbeat.Parameters.Add(new NpgsqlParameter { Value = _heartbeatPrefix, NpgsqlDbType = NpgsqlDbType.Text });
                        await heartbeat.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    }
                }
                catch (NpgsqlException ex)
                {
                    LogModeLog.HeartbeatFailed(_logger, ex);
                }

                await Task.Delay(_relay.HeartbeatInterval, _time, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (NpgsqlException ex)
        {
            // The session fails through its reader; the watch only stops.
            LogModeLog.HeartbeatFailed(_logger, ex);
        }
    }

    /// <summary>Publishes the entries batch by batch and acknowledges the last commit each batch completes.</summary>
    private async Task PublishLoopAsync(LogicalReplicationConnection connection, ChannelReader<Entry> reader, CancellationToken cancellationToken)
    {
        var batch = new List<Entry>(_relay.BatchSize);
        while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
        {
            batch.Clear();
            ulong commit = 0;
            var afterCommit = 0;
            while (batch.Count < _relay.BatchSize && reader.TryRead(out var entry))
            {
                if (entry.CommitEnd != 0)
                {
                    commit = entry.CommitEnd;
                    afterCommit = 0;
                }
                else
                {
                    batch.Add(entry);
                    afterCommit++;
                }
            }

            if (batch.Count > 0)
            {
                await SettleAsync(batch, cancellationToken).ConfigureAwait(false);
            }

            if (commit != 0)
            {
                connection.SetReplicationStatus(new NpgsqlLogSequenceNumber(commit));
                await connection.SendStatusUpdate(cancellationToken).ConfigureAwait(false);
                Interlocked.Exchange(ref _acknowledged, commit);

                // What the batch holds after its last commit is confirmed but waits for its transaction's commit to be acknowledged.
                Interlocked.Exchange(ref _unacknowledged, afterCommit);
            }
        }

        cancellationToken.ThrowIfCancellationRequested();
    }

    /// <summary>
    /// Publishes a batch until every message is confirmed or dead-lettered. Nothing of a key is handed to the publisher before the
    /// previous message of that key was confirmed (or dead-lettered): a transient failure holds its key's later messages back, and the
    /// round is retried with backoff.
    /// </summary>
    private async Task SettleAsync(List<Entry> batch, CancellationToken cancellationToken)
    {
        var pending = new List<Entry>(batch.Count);
        foreach (var entry in batch)
        {
            if (entry.Message is null)
            {
                await DeadLetterAsync(entry, entry.Error!, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                pending.Add(entry);
            }
        }

        var failures = 0;
        while (pending.Count > 0)
        {
            // A batch publisher gets the next message of each key (and every message without one); per message, each key's messages go
            // one after the other within the round.
            var round = _publisher is IOutboxBatchPublisher ? Heads(pending) : pending;
            Exception?[] results;
            try
            {
                results = await PublishRoundAsync(round, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // The session ended with a batch call in flight: the broker may have any of its messages.
                _telemetry.PossibleDuplicates.Add(round.Count);
                throw;
            }

            var settled = new HashSet<Entry>(ReferenceEqualityComparer.Instance);
            Exception? transient = null;
            var failed = 0;
            for (var i = 0; i < round.Count; i++)
            {
                var failure = results[i];
                if (failure is null)
                {
                    Interlocked.Increment(ref _published);
                    Interlocked.Increment(ref _unacknowledged);
                    settled.Add(round[i]);
                    if (round[i].Replayed)
                    {
                        _telemetry.PossibleDuplicates.Add(1);
                    }
                }
                else if (failure is OutboxException { IsTransient: false, IsOutcomeUnknown: false })
                {
                    await DeadLetterAsync(round[i], failure.Message, cancellationToken).ConfigureAwait(false);
                    settled.Add(round[i]);
                }
                else if (failure is OperationCanceledException && cancellationToken.IsCancellationRequested)
                {
                    // The session ended with this publish in flight: the broker may have it, and the next session publishes it again.
                    _telemetry.PossibleDuplicates.Add(1);
                    transient ??= failure;
                }
                else if (!ReferenceEquals(failure, s_notAttempted))
                {
                    // Retried, as the table dispatcher does; a publish without an answer may have reached the broker.
                    transient ??= failure;
                    failed++;
                    _telemetry.RetriedMessages.Add(1);
                    if (failure is OutboxException { IsOutcomeUnknown: true })
                    {
                        _telemetry.PossibleDuplicates.Add(1);
                    }
                }
            }

            pending = pending.FindAll(e => !settled.Contains(e));
            if (transient is not null)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var delay = Backoff(failures++);
                LogModeLog.PublishFailed(_logger, failed, _options.SlotName, transient.Message, delay);
                await Task.Delay(delay, _time, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The first pending message of each ordering key, and every message without a key, in batch order.</summary>
    private static List<Entry> Heads(List<Entry> pending)
    {
        var keys = new HashSet<string>(StringComparer.Ordinal);
        return pending.FindAll(e => e.Message!.OrderingKey is not { } key || keys.Add(key));
    }

    /// <summary>One attempt at the pending messages: one result per message, <see langword="null"/> when confirmed.</summary>
    private async Task<Exception?[]> PublishRoundAsync(List<Entry> pending, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_relay.PublishTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var results = new Exception?[pending.Count];
        if (_publisher is IOutboxBatchPublisher batchPublisher)
        {
            Exception failure;
            try
            {
                var answers = await batchPublisher.PublishBatchAsync(pending.ConvertAll(static e => e.Message!), linked.Token).ConfigureAwait(false);
                if (answers.Count == pending.Count)
                {
                    return [.. answers];
                }

                failure = new OutboxException($"{batchPublisher.GetType().Name} returned {answers.Count} results for a batch of {pending.Count} messages; the batch counts as failed.", isTransient: true);
            }
            catch (OperationCanceledException ex) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                failure = new OutboxException($"The event stream did not confirm a batch of {pending.Count} messages within {_relay.PublishTimeout}.", isTransient: true, ex) { IsOutcomeUnknown = true };
            }
#pragma warning disable CA1031 // A failing batch is retried (or dead-lettered); it must not end the relay.
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
#pragma warning restore CA1031
            {
                failure = ex;
            }

            Array.Fill(results, failure);
            return results;
        }

        // One sequence per ordering key (the next message of a key only after the previous one is confirmed), every message without a
        // key on its own: all of them concurrently, so the broker's confirms are pipelined.
        var groups = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        var tasks = new List<Task>(pending.Count);
        for (var i = 0; i < pending.Count; i++)
        {
            if (pending[i].Message!.OrderingKey is { } key)
            {
                if (!groups.TryGetValue(key, out var group))
                {
                    groups[key] = group = [];
                }

                group.Add(i);
            }
            else
            {
                tasks.Add(PublishSequenceAsync([i]));
            }
        }

        foreach (var group in groups.Values)
        {
            tasks.Add(PublishSequenceAsync(group));
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        return results;

        async Task PublishSequenceAsync(List<int> indexes)
        {
            var stopped = false;
            foreach (var index in indexes)
            {
                if (stopped)
                {
                    results[index] = s_notAttempted;
                    continue;
                }

                try
                {
                    await _publisher.PublishAsync(pending[index].Message!, linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException ex) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    results[index] = new OutboxException($"The event stream did not confirm message {pending[index].Message!.MessageId} within {_relay.PublishTimeout}.", isTransient: true, ex) { IsOutcomeUnknown = true };
                }
#pragma warning disable CA1031 // A failing message is retried (or dead-lettered); it must not end the relay.
                catch (Exception ex)
#pragma warning restore CA1031
                {
                    results[index] = ex;
                }

                stopped = results[index] is not null and not OutboxException { IsTransient: false, IsOutcomeUnknown: false };
            }
        }
    }

    /// <summary>Keeps a message the broker refused for good (or an unreadable envelope) in the dead-letter table; retries until it is stored.</summary>
    private async Task DeadLetterAsync(Entry entry, string error, CancellationToken cancellationToken)
    {
        var failures = 0;
        while (true)
        {
            try
            {
                var command = _dataSource.CreateCommand(
                    $"INSERT INTO {_options.DeadLetterTable} (slot_name, lsn, message_id, destination, envelope, error, dead_lettered_at) VALUES ($1, $2, $3, $4, $5, $6, $7)");
                await using (command.ConfigureAwait(false))
                {
                    var messageId = entry.Message?.MessageId ?? LogEnvelope.PeekMessageId(entry.Envelope);
                    command.Parameters.Add(new NpgsqlParameter { Value = _options.SlotName, NpgsqlDbType = NpgsqlDbType.Text });
                    command.Parameters.Add(new NpgsqlParameter { Value = new NpgsqlLogSequenceNumber(entry.Lsn), NpgsqlDbType = NpgsqlDbType.PgLsn });
                    command.Parameters.Add(new NpgsqlParameter { Value = messageId == Guid.Empty ? DBNull.Value : messageId, NpgsqlDbType = NpgsqlDbType.Uuid });
                    command.Parameters.Add(new NpgsqlParameter { Value = (object?)entry.Message?.Destination ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
                    command.Parameters.Add(new NpgsqlParameter { Value = entry.Envelope, NpgsqlDbType = NpgsqlDbType.Bytea });
                    command.Parameters.Add(new NpgsqlParameter { Value = Clean(error), NpgsqlDbType = NpgsqlDbType.Text });
                    command.Parameters.Add(new NpgsqlParameter { Value = _time.GetUtcNow(), NpgsqlDbType = NpgsqlDbType.TimestampTz });
                    await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    Interlocked.Increment(ref _deadLettered);
                    _telemetry.DeadLetteredMessages.Add(1);
                    LogModeLog.DeadLettered(_logger, messageId, new NpgsqlLogSequenceNumber(entry.Lsn).ToString(), error);
                    return;
                }
            }
            catch (NpgsqlException ex)
            {
                // The message must not be skipped: wait until the table can take it (or the relay stops).
                var delay = ex.IsTransient ? Backoff(failures++) : _relay.MaxRetryDelay;
                LogModeLog.SlotUnusable(_logger, _options.SlotName, $"Could not store a dead letter in {_options.DeadLetterTable}: {ex.Message}", delay);
                await Task.Delay(delay, _time, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The active pid of the slot, or <see langword="null"/> when no one consumes it; refuses a slot that does not exist.</summary>
    private async Task<int?> SlotActivePidAsync(CancellationToken cancellationToken)
    {
        var command = _dataSource.CreateCommand("SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1");
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = _options.SlotName, NpgsqlDbType = NpgsqlDbType.Text });
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    throw new OutboxException($"The replication slot {_options.SlotName} does not exist; create it with `outboxer logmode setup` (PostgreSqlLogSetup.SetupAsync).", isTransient: false);
                }

                return reader.IsDBNull(0) ? null : reader.GetInt32(0);
            }
        }
    }

    /// <summary>The slot's lag as this relay last knew it, while it is active.</summary>
    private IEnumerable<Measurement<long>> ObserveLag()
    {
        var end = Volatile.Read(ref _serverWalEnd);
        var acknowledged = Interlocked.Read(ref _acknowledged);
        if (!_active || end == 0 || acknowledged == 0)
        {
            return [];
        }

        return [new Measurement<long>(end > acknowledged ? (long)(end - acknowledged) : 0, new KeyValuePair<string, object?>("outboxer.log.slot", _options.SlotName))];
    }

    private TimeSpan Backoff(int failures)
    {
        var delay = _relay.RetryDelay * Math.Pow(2, Math.Min(failures, 30));
        return delay > _relay.MaxRetryDelay ? _relay.MaxRetryDelay : delay;
    }

    /// <summary>Text columns refuse U+0000; half a surrogate pair cannot be encoded.</summary>
    private static string Clean(string error)
    {
        var text = error.Length > 4000 ? error[..4000] : error;
        return OutboxMessage.FirstUnstorable(text) < 0 ? text : new string([.. text.Select(static c => c == '\0' || char.IsSurrogate(c) ? '\uFFFD' : c)]);
    }

    /// <summary>One item of the decoded stream: an outbox message (or an envelope that could not be read), or a commit.</summary>
    private sealed class Entry
    {
        private Entry(byte[] envelope, ulong lsn, OutboxMessage? message, string? error, ulong commitEnd, bool replayed = false)
        {
            Envelope = envelope;
            Lsn = lsn;
            Message = message;
            Error = error;
            CommitEnd = commitEnd;
            Replayed = replayed;
        }

        public byte[] Envelope { get; }

        public ulong Lsn { get; }

        public OutboxMessage? Message { get; }

        public string? Error { get; }

        /// <summary>The end of the committed transaction, for a commit; 0 for a message.</summary>
        public ulong CommitEnd { get; }

        /// <summary>Gets a value indicating whether this relay published the message before and acknowledged it: the server streams it again.</summary>
        public bool Replayed { get; }

        public static Entry Commit(ulong end) => new([], 0, null, null, end);

        public static Entry Decode(byte[] envelope, ulong lsn, bool replayed)
        {
            try
            {
                return new Entry(envelope, lsn, LogEnvelope.Read(envelope, (long)lsn), null, 0, replayed);
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                return new Entry(envelope, lsn, null, $"The envelope cannot be read: {ex.Message}", 0);
            }
        }
    }
}
