using System.Data;
using System.Data.Common;
using System.Diagnostics.Metrics;
using System.Transactions;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Outboxer.Internal;
using Outboxer.Providers;

namespace Outboxer;

/// <summary>
/// A transactional outbox: enqueue messages in the database transaction that changes your data, and let the dispatcher publish
/// them to the event stream at least once after the transaction commits. The counterpart of the Go outboxer's <c>Outboxer</c>.
/// </summary>
/// <remarks>
/// <para>
/// Enqueue in one of three ways: <see cref="EnqueueAsync(DbTransaction, OutboxMessage, CancellationToken)"/> within a transaction your code already opened (the main path),
/// <see cref="SendWithinTransactionAsync"/> with a transaction the outbox opens around your statements, or <see cref="SendAsync"/>
/// on its own. Start the dispatcher and the cleanup with <see cref="StartAsync"/> (or each alone) and stop them with
/// <see cref="StopAsync"/>. The outbox is an <see cref="IHostedService"/>, so a host can start and stop it.
/// </para>
/// <para>Observe outcomes through <see cref="Dispatched"/> and <see cref="Errors"/>, or through the log.</para>
/// </remarks>
public sealed class Outbox : IHostedService, IAsyncDisposable
{
    private readonly IOutboxWriter _writer;
    private readonly IOutboxStore? _store;
    private readonly IOutboxPublisher? _publisher;
    private readonly IOutboxAdministration? _administration;
    private readonly OutboxOptions _options;
    private readonly TimeProvider _time;
    private readonly Notifier<DispatchedMessage> _dispatched;
    private readonly Notifier<OutboxError> _errors;
    private readonly Dispatcher? _dispatcher;
    private readonly Cleanup? _cleanup;
    private readonly Telemetry _telemetry;
    private readonly Lock _lifecycle = new();
    private Loop? _dispatcherLoop;
    private Loop? _cleanupLoop;
    private bool _disposed;
    private Task? _disposal;

    /// <summary>Initializes a new outbox over a store and an event stream.</summary>
    /// <param name="store">Where messages are stored (the Go outboxer's data store), for example the store of a database package.</param>
    /// <param name="publisher">Where messages are published (the Go outboxer's event stream), for example the publisher of a broker package.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="loggerFactory">The logger factory; <see langword="null"/> for no logging.</param>
    /// <param name="timeProvider">The clock; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <exception cref="ArgumentNullException">The data store or the event stream is missing.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it and its value.</exception>
    public Outbox(IOutboxStore store, IOutboxPublisher publisher, OutboxOptions? options = null, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
        : this(
            options,
            store ?? throw new ArgumentNullException(nameof(store), "A data store (IOutboxStore) is required for the outbox to work."),
            publisher ?? throw new ArgumentNullException(nameof(publisher), "An event stream (IOutboxPublisher) is required for the outbox to work."),
            loggerFactory,
            timeProvider,
            meterFactory: null)
    {
    }

    /// <summary>
    /// Initializes an outbox that only enqueues, for a process that writes messages and leaves publishing to other processes: it
    /// needs no publisher and runs no dispatcher. When <paramref name="writer"/> is a whole store (<see cref="IOutboxStore"/>), it can
    /// still run the cleanup and read statistics and dead letters; a writer that is not (a log-mode writer, for example) only enqueues.
    /// </summary>
    /// <param name="writer">Where messages are written, for example the store of a database package.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="loggerFactory">The logger factory; <see langword="null"/> for no logging.</param>
    /// <param name="timeProvider">The clock; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="writer"/> is missing.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it and its value.</exception>
    // The two public constructors differ by their first two parameters (a store and a publisher, or a writer and options); a call with
    // only a store binds here on purpose: without a publisher, the outbox only enqueues and cleans up.
#pragma warning disable RS0026
    public Outbox(IOutboxWriter writer, OutboxOptions? options = null, ILoggerFactory? loggerFactory = null, TimeProvider? timeProvider = null)
        : this(
            options,
            writer ?? throw new ArgumentNullException(nameof(writer), "A writer (IOutboxWriter) is required for the outbox to enqueue."),
            null,
            loggerFactory,
            timeProvider,
            meterFactory: null)
#pragma warning restore RS0026
    {
    }

    /// <summary>The constructor of every outbox; dependency injection passes the host's <see cref="IMeterFactory"/>.</summary>
    internal Outbox(OutboxOptions? options, IOutboxWriter writer, IOutboxPublisher? publisher, ILoggerFactory? loggerFactory, TimeProvider? timeProvider, IMeterFactory? meterFactory)
    {
        _writer = writer;
        _store = writer as IOutboxStore;
        _publisher = publisher;
        _administration = writer as IOutboxAdministration;
        _options = (options ?? new OutboxOptions()).Clone();
        _options.Validate();
        _time = timeProvider ?? TimeProvider.System;
        loggerFactory ??= NullLoggerFactory.Instance;

        _telemetry = new Telemetry(meterFactory, publisher, _time);
        _dispatched = new Notifier<DispatchedMessage>(_options.NotificationCapacity);
        _errors = new Notifier<OutboxError>(_options.NotificationCapacity);
        if (_store is not null && publisher is not null)
        {
            _dispatcher = new Dispatcher(_store, _telemetry.Instrument(publisher), _options, _time, loggerFactory.CreateLogger("Outboxer.Dispatcher"), _dispatched, _errors, _telemetry);
        }

        if (_store is not null)
        {
            _cleanup = new Cleanup(_store, _options, _time, loggerFactory.CreateLogger("Outboxer.Cleanup"), _errors, _telemetry, _administration is null ? null : ct => GetStatisticsAsync(ct));
        }
    }

    /// <summary>
    /// Gets a reader of the messages the broker confirmed and the outbox marked dispatched, with their ids. The counterpart of the
    /// Go outboxer's <c>OkChan</c>, except that nobody reading never blocks dispatch: it keeps the newest
    /// <see cref="OutboxOptions.NotificationCapacity"/> notifications and drops older ones. Notifications start when this property is first read.
    /// </summary>
    public ChannelReader<DispatchedMessage> Dispatched => _dispatched.Reader;

    /// <summary>
    /// Gets a reader of the failures of the dispatcher and the cleanup, with the message concerned where there is one. The counterpart of
    /// the Go outboxer's <c>ErrChan</c>; bounded like <see cref="Dispatched"/>. Failures are also logged.
    /// </summary>
    public ChannelReader<OutboxError> Errors => _errors.Reader;

    /// <summary>Gets the store the outbox writes to and reads from.</summary>
    /// <exception cref="InvalidOperationException">The outbox only enqueues, through a writer that is not a whole store; see <see cref="Writer"/>.</exception>
    public IOutboxStore Store => _store ?? throw new InvalidOperationException($"This outbox only enqueues through {_writer.GetType().Name}, which is not an IOutboxStore; use Writer.");

    /// <summary>Gets where the outbox writes messages: the store, or the writer of an outbox that only enqueues.</summary>
    public IOutboxWriter Writer => _writer;

    /// <summary>Gets a value indicating whether this outbox can dispatch: it has a whole store and a publisher.</summary>
    public bool CanDispatch => _dispatcher is not null;

    /// <summary>Gets a value indicating whether <see cref="StartAsync"/> starts a dispatcher: the outbox can dispatch and its options ask for it.</summary>
    internal bool StartsDispatcher => _dispatcher is not null && _options.RunDispatcher;

    /// <summary>
    /// Gets what operators need of the store (statistics, dead letters), or <see langword="null"/> when the store offers none
    /// (it does not implement <see cref="IOutboxAdministration"/>). Every relational store does.
    /// </summary>
    public IOutboxAdministration? Administration => _administration;

    /// <summary>
    /// Enqueues <paramref name="message"/> within <paramref name="transaction"/>, which your code opened and will commit or roll back:
    /// the message is published only if the transaction commits. Assigns <see cref="OutboxMessage.Id"/>, and
    /// <see cref="OutboxMessage.MessageId"/> and <see cref="OutboxMessage.CreatedAt"/> when they are unset.
    /// </summary>
    /// <param name="transaction">An open transaction on the outbox's database.</param>
    /// <param name="message">The message to enqueue.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the message.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">The transaction is completed or of another database; an option or header value cannot be stored.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public ValueTask<long> EnqueueAsync(DbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        return EnqueueCoreAsync(message, transaction, static (store, m, tx, ct) => store.AddAsync(tx, m, ct), committed: false, cancellationToken);
    }

    /// <summary>
    /// Enqueues <paramref name="message"/> within a transaction your code holds as an <see cref="IDbTransaction"/> (Dapper style). The same
    /// as <see cref="EnqueueAsync(DbTransaction, OutboxMessage, CancellationToken)"/>: every ADO.NET provider's transaction is a <see cref="DbTransaction"/>.
    /// </summary>
    /// <param name="transaction">An open transaction on the outbox's database.</param>
    /// <param name="message">The message to enqueue.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the message.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">The transaction is not an ADO.NET <see cref="DbTransaction"/>, is completed, or is of another database.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public ValueTask<long> EnqueueAsync(IDbTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        return EnqueueAsync(
            transaction as DbTransaction ?? throw new ArgumentException($"The transaction is a {transaction.GetType().FullName}, not an ADO.NET DbTransaction.", nameof(transaction)),
            message,
            cancellationToken);
    }

    /// <summary>
    /// Enqueues <paramref name="message"/> on <paramref name="connection"/> inside an ambient <see cref="TransactionScope"/>: the message
    /// commits when the scope completes and is discarded when it does not. Open the connection inside the scope so that it enlists.
    /// </summary>
    /// <remarks>
    /// The outbox learns of the commit from the ambient transaction (<see cref="Transaction.TransactionCompleted"/>). While this process's
    /// dispatcher runs and the store can (<see cref="IOutboxLeasedWriter"/>), a message without an ordering key is written already claimed
    /// by the dispatcher and published from memory right after the commit, without a claim (send after commit); an aborted or in-doubt
    /// transaction sends nothing, and a message whose process dies first is claimed as usual once its lease runs out. Otherwise the
    /// dispatcher is woken when the transaction commits.
    /// </remarks>
    /// <param name="connection">An open connection to the outbox's database, enlisted in the ambient transaction.</param>
    /// <param name="message">The message to enqueue.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the message.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">There is no ambient transaction: the message would commit on its own.</exception>
    /// <exception cref="NotSupportedException">The store's database provider does not enlist in ambient transactions.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public ValueTask<long> EnqueueAsync(DbConnection connection, OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var ambient = Transaction.Current ?? throw new InvalidOperationException(
            "There is no ambient transaction (TransactionScope), so the message would commit on its own. Enqueue inside a TransactionScope " +
            "created with TransactionScopeAsyncFlowOption.Enabled, or pass the DbTransaction.");
        return EnqueueInScopeAsync(ambient, connection, message, cancellationToken);
    }

    /// <summary>
    /// The ambient-transaction enqueue: written already claimed where it can be, then sent (or the dispatcher woken) when
    /// <paramref name="ambient"/>, which <paramref name="connection"/> is enlisted in, commits. Also the EF Core integration's.
    /// </summary>
    internal async ValueTask<long> EnqueueInScopeAsync(Transaction ambient, DbConnection connection, OutboxMessage message, CancellationToken cancellationToken)
    {
        long id;
        SendAfterCommit send;
        if (message is { OrderingKey: null } && BeginLease() is { } lease)
        {
            id = await EnqueueCoreAsync(
                message,
                (Lease: lease, Connection: connection),
                static (_, m, s, ct) => s.Lease.Writer.AddLeasedAsync(s.Connection, m, s.Lease.Now, s.Lease.Until, s.Lease.Token, ct),
                committed: null,
                cancellationToken).ConfigureAwait(false);
            send = new SendAfterCommit(lease.Dispatcher, [message.SnapshotForPublish()], lease.Started, wake: false);
        }
        else
        {
            id = await EnqueueCoreAsync(message, connection, static (store, m, c, ct) => store.AddAsync(c, m, ct), committed: false, cancellationToken).ConfigureAwait(false);
            send = new SendAfterCommit(_dispatcher, [], 0, wake: true);
        }

        send.OnCommitOf(ambient);
        return id;
    }

    /// <summary>
    /// Enqueues many messages within <paramref name="transaction"/> in as few round trips as the store allows: the relational stores
    /// write a short list with one multi-row <c>INSERT</c> (PostgreSQL up to 200 messages, then one bulk <c>COPY</c>; MySQL and SQLite
    /// in chunks of one statement each), for a transaction's handful of events as for imports and fan-outs. Every message is checked
    /// before anything is written, so a message that cannot be stored leaves the transaction usable. Assigns
    /// <see cref="OutboxMessage.MessageId"/> and <see cref="OutboxMessage.CreatedAt"/> when unset; <see cref="OutboxMessage.Id"/> is
    /// assigned from the insert, except after a bulk copy, which leaves it zero.
    /// </summary>
    /// <param name="transaction">An open transaction on the outbox's database.</param>
    /// <param name="messages">The messages to enqueue, in order.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were enqueued.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">A message is null or cannot be stored, or the transaction is completed or of another database.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async ValueTask<int> EnqueueManyAsync(DbTransaction transaction, IEnumerable<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        var list = PrepareAll(messages);
        var count = await InsertManyAsync(list, (Writer: _writer, Transaction: transaction), static (s, l, ct) => s.Writer.AddRangeAsync(s.Transaction, l, ct), cancellationToken).ConfigureAwait(false);
        _dispatcher?.Wake(committed: false);
        return count;
    }

    /// <summary>
    /// Enqueues <paramref name="messages"/> within <paramref name="transaction"/>, which the caller commits and then reports through the
    /// returned <see cref="SendAfterCommit"/> (the EF Core integration): while this process's dispatcher runs and the store can, the
    /// messages without an ordering key are written already claimed and published from memory once the caller reports the commit;
    /// the others are written pending, and the report wakes the dispatcher for them.
    /// </summary>
    /// <param name="transaction">The caller's open transaction.</param>
    /// <param name="messages">The messages.</param>
    /// <param name="reportsCommit">Whether the caller will surely learn of the commit; when not, every message is written pending and the
    /// dispatcher is woken now, as <see cref="EnqueueManyAsync"/> does, in case the commit comes unreported.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    internal async ValueTask<SendAfterCommit> EnqueueManyForCommitAsync(DbTransaction transaction, IEnumerable<OutboxMessage> messages, bool reportsCommit, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        var list = PrepareAll(messages);
        if (!reportsCommit || BeginLease() is not { } lease)
        {
            await InsertManyAsync(list, (Writer: _writer, Transaction: transaction), static (s, l, ct) => s.Writer.AddRangeAsync(s.Transaction, l, ct), cancellationToken).ConfigureAwait(false);
            _dispatcher?.Wake(committed: false);
            return new SendAfterCommit(_dispatcher, [], 0, wake: true);
        }

        OutboxMessage[] free = [.. list.Where(m => m.OrderingKey is null)];
        OutboxMessage[] keyed = [.. list.Where(m => m.OrderingKey is not null)];
        if (free.Length > 0)
        {
            await InsertManyAsync(free, (Lease: lease, Transaction: transaction), static (s, l, ct) => s.Lease.Writer.AddLeasedRangeAsync(s.Transaction, l, s.Lease.Now, s.Lease.Until, s.Lease.Token, ct), cancellationToken).ConfigureAwait(false);
        }

        if (keyed.Length > 0)
        {
            // An ordering key goes through a claim, which keeps its messages in order.
            await InsertManyAsync(keyed, (Writer: _writer, Transaction: transaction), static (s, l, ct) => s.Writer.AddRangeAsync(s.Transaction, l, ct), cancellationToken).ConfigureAwait(false);
        }

        return new SendAfterCommit(lease.Dispatcher, [.. free.Select(m => m.SnapshotForPublish())], lease.Started, wake: keyed.Length > 0);
    }

    private List<OutboxMessage> PrepareAll(IEnumerable<OutboxMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        List<OutboxMessage> list = [.. messages];
        for (var i = 0; i < list.Count; i++)
        {
            Prepare(list[i] ?? throw new ArgumentException($"messages[{i}] is null.", nameof(messages)));
        }

        return list;
    }

    private async ValueTask<int> InsertManyAsync<TState>(IReadOnlyList<OutboxMessage> list, TState state, Func<TState, IReadOnlyList<OutboxMessage>, CancellationToken, ValueTask<int>> insert, CancellationToken cancellationToken)
    {
        using var activity = _telemetry.StartEnqueue(list);
        int count;
        try
        {
            count = await insert(state, list, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Telemetry.Failed(activity, ex);
            throw;
        }

        _telemetry.Enqueued(count);
        return count;
    }

    /// <summary>
    /// Enqueues <paramref name="message"/> in a transaction of its own and commits it. The counterpart of the Go outboxer's <c>Send</c>.
    /// Use <see cref="EnqueueAsync(DbTransaction, OutboxMessage, CancellationToken)"/> when the message must commit together with your own changes.
    /// </summary>
    /// <param name="message">The message to enqueue.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the message.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option or header value cannot be stored.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public Task<long> SendAsync(OutboxMessage message, CancellationToken cancellationToken = default) =>
        CommitAndSendAsync(message, null, cancellationToken);

    /// <summary>
    /// Opens a transaction, runs <paramref name="work"/> with it, enqueues <paramref name="message"/> in it and commits. When
    /// <paramref name="work"/> throws, the transaction is rolled back, nothing is written, and the exception is rethrown unchanged.
    /// The counterpart of the Go outboxer's <c>SendWithinTx</c>.
    /// </summary>
    /// <param name="message">The message to enqueue.</param>
    /// <param name="work">Your statements; create commands on <see cref="DbTransaction.Connection"/> with the given transaction.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The database id of the message.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option or header value cannot be stored.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public Task<long> SendWithinTransactionAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task> work, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return CommitAndSendAsync(message, work, cancellationToken);
    }

    /// <summary>
    /// The paths where the outbox commits: while this process's dispatcher runs and the store can (<see cref="IOutboxLeasedWriter"/>),
    /// a message without an ordering key is written already claimed by the dispatcher and published from memory right after the
    /// commit (send after commit); otherwise it is written pending and the dispatcher is woken to claim it. A message with an ordering
    /// key always goes through a claim, which is what keeps its key in order.
    /// </summary>
    private async Task<long> CommitAndSendAsync(OutboxMessage message, Func<DbTransaction, CancellationToken, Task>? work, CancellationToken cancellationToken)
    {
        if (message is { OrderingKey: null } && BeginLease() is { } lease)
        {
            var id = await EnqueueCoreAsync(
                message,
                (Lease: lease, Work: work),
                static (_, m, s, ct) => new ValueTask<long>(s.Lease.Writer.AddLeasedWithinTransactionAsync(m, s.Work, s.Lease.Now, s.Lease.Until, s.Lease.Token, ct)),
                committed: null,
                cancellationToken).ConfigureAwait(false);
            lease.Dispatcher.SendCommitted(message.SnapshotForPublish(), lease.Started);
            return id;
        }

        return await EnqueueCoreAsync(message, work, static (store, m, w, ct) => new ValueTask<long>(store.AddWithinTransactionAsync(m, w, ct)), committed: true, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Begins a send after commit: while this process's dispatcher runs and the store can write rows already claimed
    /// (<see cref="IOutboxLeasedWriter"/>), the lease to write them with, taken now; otherwise <see langword="null"/>.
    /// </summary>
    private Lease? BeginLease()
    {
        if (_dispatcher is not { } dispatcher || _writer is not IOutboxLeasedWriter writer || !IsDispatcherRunning)
        {
            return null;
        }

        // The timestamp first: the lease, stamped a moment later, ends no earlier than the dispatcher reckons from it.
        var started = _time.GetTimestamp();
        var now = _time.GetUtcNow();
        return new Lease(dispatcher, writer, now, now + _options.LeaseDuration, started);
    }

    /// <summary>
    /// Tells this process's dispatcher that messages were just committed, so that it looks for them at once instead of at its next
    /// check. Integrations that learn of the commit (an EF Core interceptor, a unit of work) call it after committing; enqueueing
    /// already wakes the dispatcher, so plain code never needs it.
    /// </summary>
    public void Wake() => _dispatcher?.Wake(committed: true);

    /// <summary>
    /// Starts the dispatcher and the cleanup in the background, each where this outbox can run it and its options ask for it
    /// (<see cref="OutboxOptions.RunDispatcher"/>, <see cref="OutboxOptions.RunCleanup"/>): an outbox without a publisher starts
    /// no dispatcher, and one that only enqueues through a writer starts neither. Starting what is already running does nothing.
    /// </summary>
    /// <param name="cancellationToken">Not used; starting does not wait.</param>
    /// <returns>A completed task.</returns>
    /// <exception cref="ObjectDisposedException">The outbox was disposed.</exception>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
        }

        if (_dispatcher is not null && _options.RunDispatcher)
        {
            StartDispatcher();
        }

        if (_cleanup is not null && _options.RunCleanup)
        {
            StartCleanup();
        }

        return Task.CompletedTask;
    }

    /// <summary>Starts only the dispatcher in the background (the Go outboxer's <c>StartDispatcher</c>). Starting it again while it runs does nothing.</summary>
    /// <exception cref="ObjectDisposedException">The outbox was disposed.</exception>
    /// <exception cref="InvalidOperationException">The outbox only enqueues (it has no publisher, or no whole store).</exception>
    public void StartDispatcher()
    {
        var dispatcher = RequireDispatcher();
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _dispatcherLoop ??= Loop.Start(dispatcher.RunAsync);
        }
    }

    /// <summary>Starts only the cleanup in the background (the Go outboxer's <c>StartCleanup</c>), for example on one node only. Starting it again while it runs does nothing.</summary>
    /// <exception cref="ObjectDisposedException">The outbox was disposed.</exception>
    /// <exception cref="InvalidOperationException">The outbox only enqueues through a writer that is not a whole store.</exception>
    public void StartCleanup()
    {
        var cleanup = RequireCleanup();
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _cleanupLoop ??= Loop.Start(cleanup.RunAsync);
        }
    }

    /// <summary>
    /// Stops the dispatcher and the cleanup gracefully: no new batch starts, the batch in flight is published and settled, and the loops
    /// are awaited. Stopping what is not running does nothing. Concurrent calls (and <see cref="DisposeAsync"/>) share one stop: each
    /// returns when the loops have ended, and <see cref="IsDispatcherRunning"/> stays true until then. The outbox can be started again
    /// afterwards; starting while a stop is under way does nothing.
    /// </summary>
    /// <param name="cancellationToken">When cancelled, the batch in flight is abandoned; its messages are published again after their lease.</param>
    /// <returns>A task that completes when both loops have ended.</returns>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        Loop? dispatcher, cleanup;
        lock (_lifecycle)
        {
            (dispatcher, cleanup) = (_dispatcherLoop, _cleanupLoop);
        }

        if (dispatcher is null && cleanup is null)
        {
            return;
        }

        try
        {
            await Task.WhenAll(
                dispatcher?.StopAsync(cancellationToken) ?? Task.CompletedTask,
                cleanup?.StopAsync(cancellationToken) ?? Task.CompletedTask).ConfigureAwait(false);
        }
        finally
        {
            lock (_lifecycle)
            {
                // Only the loops this call stopped, and only once they ended: a start after the stop keeps its new loop.
                if (ReferenceEquals(_dispatcherLoop, dispatcher) && dispatcher is { IsRunning: false })
                {
                    _dispatcherLoop = null;
                }

                if (ReferenceEquals(_cleanupLoop, cleanup) && cleanup is { IsRunning: false })
                {
                    _cleanupLoop = null;
                }
            }
        }
    }

    /// <summary>
    /// Publishes every message that is pending now, batch after batch, until none is left to claim, without waiting for the dispatcher loop.
    /// Useful in tests, tools and one-shot jobs.
    /// </summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were claimed (published or failed).</returns>
    /// <exception cref="OutboxException">Claiming failed.</exception>
    /// <exception cref="InvalidOperationException">The outbox only enqueues (it has no publisher, or no whole store).</exception>
    public async Task<int> DispatchPendingAsync(CancellationToken cancellationToken = default)
    {
        var dispatcher = RequireDispatcher();
        var total = 0;
        int claimed;
        while ((claimed = await dispatcher.DispatchBatchAsync(cancellationToken).ConfigureAwait(false)) > 0)
        {
            total += claimed;
        }

        return total;
    }

    /// <summary>Gets a value indicating whether this outbox's dispatcher loop is running (started and not stopped).</summary>
    public bool IsDispatcherRunning
    {
        get
        {
            lock (_lifecycle)
            {
                return _dispatcherLoop is { IsRunning: true };
            }
        }
    }

    /// <summary>Gets a value indicating whether this outbox's cleanup loop is running (started and not stopped).</summary>
    internal bool IsCleanupRunning
    {
        get
        {
            lock (_lifecycle)
            {
                return _cleanupLoop is { IsRunning: true };
            }
        }
    }

    /// <summary>
    /// Counts the pending, in-flight and dead-lettered messages and finds the age of the oldest pending one (the lag). The snapshot
    /// also feeds the <c>outboxer.backlog</c>, <c>outboxer.lag</c> and <c>outboxer.dead_letters</c> gauges, which every cleanup run
    /// refreshes as well.
    /// </summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The snapshot.</returns>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async Task<OutboxStatistics> GetStatisticsAsync(CancellationToken cancellationToken = default)
    {
        var statistics = await Admin().GetStatisticsAsync(_time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        _telemetry.Record(statistics);
        return statistics;
    }

    /// <summary>
    /// Waits until nothing is pending: every committed message is dispatched or dead-lettered. For tests and one-shot tools that
    /// enqueue, let the dispatcher work (started, or another process's), and then check what the broker received.
    /// </summary>
    /// <param name="pollInterval">How often to look at the store; <see langword="null"/> for 50 milliseconds (measured by the outbox's
    /// <see cref="TimeProvider"/>).</param>
    /// <param name="cancellationToken">Stops waiting; bound the wait with a timeout here.</param>
    /// <returns>A task that completes when no message is pending.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled first.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async Task WaitUntilDrainedAsync(TimeSpan? pollInterval = null, CancellationToken cancellationToken = default)
    {
        var interval = pollInterval ?? TimeSpan.FromMilliseconds(50);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero, nameof(pollInterval));
        while ((await GetStatisticsAsync(cancellationToken).ConfigureAwait(false)).Pending > 0)
        {
            await Task.Delay(interval, _time, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Reads the dead letters: messages that failed <see cref="OutboxOptions.MaxAttempts"/> times, or once with a failure that cannot
    /// succeed, with their <see cref="OutboxMessage.LastError"/> and <see cref="OutboxMessage.DeadLetteredAt"/>, oldest first.
    /// </summary>
    /// <param name="limit">The most messages to return.</param>
    /// <param name="afterId">Return only messages with a greater id, to read page after page; 0 for the first page.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The dead letters.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="limit"/> is not positive.</exception>
    /// <exception cref="OutboxException">The database failed.</exception>
    public Task<IReadOnlyList<OutboxMessage>> GetDeadLettersAsync(int limit = 100, long afterId = 0, CancellationToken cancellationToken = default) =>
        Admin().GetDeadLettersAsync(limit, afterId, cancellationToken);

    /// <summary>Makes dead letters pending again with their attempts reset, and wakes the dispatcher to publish them.</summary>
    /// <param name="ids">The ids to requeue; <see langword="null"/> for every dead letter.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were requeued.</returns>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async Task<int> RequeueDeadLettersAsync(IReadOnlyCollection<long>? ids = null, CancellationToken cancellationToken = default)
    {
        var count = await Admin().RequeueDeadLettersAsync(ids, cancellationToken).ConfigureAwait(false);
        if (count > 0)
        {
            _dispatcher?.Wake(committed: true);
        }

        return count;
    }

    /// <summary>Deletes dead letters.</summary>
    /// <param name="ids">The ids to delete; <see langword="null"/> for every dead letter.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were deleted.</returns>
    /// <exception cref="OutboxException">The database failed.</exception>
    public Task<int> PurgeDeadLettersAsync(IReadOnlyCollection<long>? ids = null, CancellationToken cancellationToken = default) =>
        Admin().PurgeDeadLettersAsync(ids, cancellationToken);

    /// <summary>Deletes every message dispatched longer ago than <see cref="OutboxOptions.CleanupOlderThan"/> now, in batches, without waiting for the cleanup loop.</summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many messages were deleted.</returns>
    /// <exception cref="OutboxException">The database failed.</exception>
    /// <exception cref="InvalidOperationException">The outbox only enqueues through a writer that is not a whole store.</exception>
    public Task<int> CleanupAsync(CancellationToken cancellationToken = default) =>
        RequireCleanup().RunOnceAsync(CancellationToken.None, cancellationToken);

    /// <summary>
    /// Stops the loops gracefully (see <see cref="StopAsync"/>) and then completes the notification readers. Concurrent calls share
    /// one disposal and all return when it is over.
    /// </summary>
    /// <returns>A task that completes when the loops have ended.</returns>
    public ValueTask DisposeAsync()
    {
        Task disposal;
        lock (_lifecycle)
        {
            _disposed = true;
            disposal = _disposal ??= DisposeCoreAsync();
        }

        return new ValueTask(disposal);
    }

    /// <summary>The one disposal every <see cref="DisposeAsync"/> call waits for: the notifications end after the last mark.</summary>
    private async Task DisposeCoreAsync()
    {
        await Task.Yield();
        await StopAsync(CancellationToken.None).ConfigureAwait(false);
        _telemetry.Dispose();
        _dispatched.Complete();
        _errors.Complete();
    }

    /// <summary>
    /// The one path of every single-message enqueue: ids, trace context, insert, counters, wake-up (<paramref name="committed"/>: whether
    /// the insert committed, or <see langword="null"/> for no wake-up).
    /// </summary>
    private async ValueTask<long> EnqueueCoreAsync<TState>(
        OutboxMessage message,
        TState state,
        Func<IOutboxWriter, OutboxMessage, TState, CancellationToken, ValueTask<long>> insert,
        bool? committed,
        CancellationToken cancellationToken)
    {
        Prepare(message);
        using var activity = _telemetry.StartEnqueue(message);
        long id;
        try
        {
            id = await insert(_writer, message, state, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Telemetry.Failed(activity, ex);
            throw;
        }

        _telemetry.Enqueued(1);
        if (committed is { } wake)
        {
            // Null for a send after commit: its row is claimed already, so no claim needs waking.
            _dispatcher?.Wake(wake);
        }

        return id;
    }

    private void Prepare(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var now = _time.GetUtcNow();
        if (message.MessageId == Guid.Empty)
        {
            message.MessageId = Guid.CreateVersion7(now);
        }

        if (message.CreatedAt == default)
        {
            message.CreatedAt = now;
        }

        // A name the table cannot store (too long, U+0000, half a surrogate pair) is left out: the destination is informational.
        if (message.Destination is null
            && _publisher?.GetDestinationName(message) is { Length: > 0 and <= OutboxMessage.MaxDestinationLength } destination
            && OutboxMessage.FirstUnstorable(destination) < 0)
        {
            message.Destination = destination;
        }
    }

    private IOutboxAdministration Admin() =>
        _administration ?? throw new NotSupportedException($"The store {_writer.GetType().Name} offers no statistics or dead letters (it does not implement IOutboxAdministration).");

    private Dispatcher RequireDispatcher() =>
        _dispatcher ?? throw new InvalidOperationException(_store is null
            ? $"This outbox only enqueues: {_writer.GetType().Name} is not an IOutboxStore, so there is nothing to dispatch from."
            : "This outbox only enqueues: it was created without a publisher (IOutboxPublisher), so it cannot dispatch.");

    private Cleanup RequireCleanup() =>
        _cleanup ?? throw new InvalidOperationException($"This outbox only enqueues: {_writer.GetType().Name} is not an IOutboxStore, so there is nothing to clean up.");

    /// <summary>
    /// The lease of a send after commit: the dispatcher that sends, the writer, the time the lease was computed from and its end, and the
    /// timestamp taken before it.
    /// </summary>
    private readonly record struct Lease(Dispatcher Dispatcher, IOutboxLeasedWriter Writer, DateTimeOffset Now, DateTimeOffset Until, long Started)
    {
        public long Token => Dispatcher.CommittedLeaseToken;
    }

    /// <summary>
    /// One running loop with its two tokens: stopping (no new work) and abort (drop the work in flight). Every stop of a loop waits for
    /// the same end; a stop cancelled by its caller aborts the work in flight.
    /// </summary>
    private sealed class Loop
    {
        private readonly CancellationTokenSource _stopping = new();
        private readonly CancellationTokenSource _abort = new();
        private Task _task = Task.CompletedTask;

        public bool IsRunning => !_task.IsCompleted;

        public static Loop Start(Func<CancellationToken, CancellationToken, Task> run)
        {
            var loop = new Loop();
            loop._task = Task.Run(() => run(loop._stopping.Token, loop._abort.Token));
            return loop;
        }

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            lock (_stopping)
            {
                if (!_task.IsCompleted)
                {
                    _stopping.Cancel();
                }
            }

            try
            {
                await _task.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.None);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                lock (_stopping)
                {
                    if (!_task.IsCompleted)
                    {
                        _abort.Cancel();
                    }
                }

                await _task.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                throw;
            }
        }
    }
}
