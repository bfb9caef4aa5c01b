using System.Collections.Concurrent;
using System.Data.Common;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Outboxer.Providers;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>What happened to one enqueued message on the producer side.</summary>
internal enum Outcome
{
    /// <summary>The transaction is still open.</summary>
    Pending,

    /// <summary><c>COMMIT</c> returned: the message must arrive.</summary>
    Committed,

    /// <summary>Rolled back on purpose, or the transaction failed before <c>COMMIT</c> was sent: the message must never arrive.</summary>
    RolledBack,

    /// <summary><c>COMMIT</c> itself failed (the server went away): it may or may not have committed, so neither check applies.</summary>
    Ambiguous,
}

/// <summary>One enqueued message as the producer knows it: its place in its key's sequence and when its transaction committed.</summary>
internal sealed class Sent(int number, string? key, int sequence, Guid messageId)
{
    public int Number { get; } = number;

    public string? Key { get; } = key;

    public int Sequence { get; } = sequence;

    public Guid MessageId { get; } = messageId;

    public Outcome Outcome { get; set; }

    public long CommittedAt { get; set; }
}

/// <summary>One delivery the consumer received (or one stream entry it read), in receive order.</summary>
internal readonly record struct Arrival(string MessageId, long ReceivedAt, bool Redelivered);

/// <summary>The numbers one scenario reports (one line of artifacts/guarantees.jsonl).</summary>
internal sealed record GuaranteeReport(
    string Scenario,
    bool Crash,
    int Committed,
    int RolledBack,
    int Ambiguous,
    int DeliveredUnique,
    int Lost,
    int Duplicates,
    int ConsumerRedeliveries,
    int RolledBackDelivered,
    int Unknown,
    int OutOfOrder,
    double MaxDelayMs,
    long ElapsedMs,
    string Faults,
    List<string> Problems)
{
    /// <summary>Gets the rows of the table in the dead letters at the end (poison messages included).</summary>
    public long DeadLettered { get; init; }

    /// <summary>
    /// Gets how many republished messages the broker dropped (NATS and Redis publishers log each one; <see langword="null"/> on RabbitMQ):
    /// more than 0 shows that the scenario republished messages and the broker kept their copies out.
    /// </summary>
    public int? DroppedDuplicates { get; init; }

    /// <summary>
    /// Gets the possible duplicates the dispatchers counted (<c>outboxer.messages.possible_duplicates</c>: publishes without an answer,
    /// leases lost before the mark). Without a crash, <see cref="Duplicates"/> may not exceed it.
    /// </summary>
    public int Uncertain { get; init; }

    /// <summary>Gets the dead letters that arrived all the same (a dead letter is a message the broker never got): must be 0.</summary>
    public int DeadLetteredDelivered { get; init; }

    /// <summary>Gets the store the outbox table was in: <c>postgres</c>, <c>mysql</c> or <c>sqlite</c>.</summary>
    public string Store { get; init; } = "postgres";

    /// <summary>
    /// Gets how many messages relays committed themselves with <c>SendWithinTransactionAsync</c> (<see cref="GuaranteeRun.StartSendingRelayAsync"/>),
    /// or <see langword="null"/> when no relay sent.
    /// </summary>
    public int? RelaySent { get; init; }

    /// <summary>
    /// Gets how many of <see cref="RelaySent"/> took the send-after-commit path to the end: their own sender marked them (its
    /// <c>sent-after-commit</c> line) and their row counts 1 attempt, the one it was written with, so no claim ever took it.
    /// </summary>
    public int? SentAfterCommit { get; init; }

    /// <summary>
    /// Gets how many of <see cref="RelaySent"/> were claimed after their sender's lease ran out (their row counts 2 attempts or more):
    /// the sender was killed, or its publish failed, before it marked them.
    /// </summary>
    public int? ClaimedAfterLease { get; init; }

    /// <summary>
    /// Gets how many relay transactions ended without an outcome line (the relay was killed mid-transaction, or the send failed with an
    /// unknown outcome); each was then decided by looking for its row, and <see cref="RelayInDoubtCommitted"/> of them had one.
    /// </summary>
    public int? RelayInDoubt { get; init; }

    /// <summary>Gets how many of <see cref="RelayInDoubt"/> had committed (their row is in the table), so they had to arrive.</summary>
    public int? RelayInDoubtCommitted { get; init; }

    /// <summary>Gets the broker the messages went to: <c>rabbitmq</c>, <c>nats</c> or <c>redis</c>.</summary>
    public string Broker { get; init; } = "rabbitmq";

    /// <summary>
    /// Gets whether the broker dropped republished copies (JetStream's duplicate window, the Redis publisher's deduplication script):
    /// then duplicates must be 0 even after a crash.
    /// </summary>
    public bool Dedup { get; init; }
}

/// <summary>
/// One scenario's world: a fresh outbox table (a PostgreSQL schema, a MySQL table or a SQLite file; see <see cref="IGuaranteeStore"/>), a fresh destination on the broker (a RabbitMQ exchange and queue, a
/// JetStream stream, a Redis stream; see <see cref="IGuaranteeBroker"/>), a producer that commits (and rolls back) known messages with
/// per-key sequence numbers, a consumer that records every delivery, and the checks.
/// </summary>
internal sealed class GuaranteeRun : IAsyncDisposable
{
    public const int KeyCount = 10;

    private static readonly Lock s_reportFile = new();
    private static readonly UTF8Encoding s_utf8WithoutBom = new(encoderShouldEmitUTF8Identifier: false);

    private readonly ConcurrentDictionary<string, Sent> _sent = new();
    private readonly ConcurrentQueue<Arrival> _arrivals = new();
    private readonly int[] _keySequences = new int[KeyCount];
    private readonly Stopwatch _elapsed = Stopwatch.StartNew();
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<int> _dispatchedBy = [];
    private readonly DroppedDuplicateCounter _droppedDuplicates = new();
    private readonly PossibleDuplicateCounter _possibleDuplicates = new();
    private readonly List<RelayProcess> _relays = [];
    private readonly ConcurrentDictionary<string, RelaySend> _relaySends = new();
    private int _relayNumbers;
    private Outbox? _producer;
    private IOutboxPublisher? _producerPublisher;
    private long _lastArrivalAt = Stopwatch.GetTimestamp();
    private int _number;

    private GuaranteeRun(string scenario, IGuaranteeBroker broker, IGuaranteeStore store)
    {
        Scenario = scenario;
        Broker = broker;
        Store = store;
        Suffix = Guid.NewGuid().ToString("N")[..8];
    }

    public string Scenario { get; }

    /// <summary>Gets the store this run's outbox table is in; the run disposes it (drops the table).</summary>
    public IGuaranteeStore Store { get; }

    /// <summary>Gets how the relays this run starts dispatch (<see cref="StartRelayAsync"/>).</summary>
    public RelayOptions RelayOptions { get; set; } = new();

    /// <summary>Gets the broker this run's messages go to; the run disposes it.</summary>
    public IGuaranteeBroker Broker { get; }

    private string Suffix { get; }

    /// <summary>Transactions that failed before their commit (their messages count as rolled back).</summary>
    public int FailedTransactions { get; private set; }

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Creates the run's table and destination and starts the consumer; <paramref name="broker"/> defaults to RabbitMQ, <paramref name="store"/> to PostgreSQL.</summary>
    public static async Task<GuaranteeRun> CreateAsync(string scenario, IGuaranteeBroker? broker = null, IGuaranteeStore? store = null)
    {
        var run = new GuaranteeRun(scenario, broker ?? new RabbitMQGuaranteeBroker(), store ?? new PostgreSqlGuaranteeStore());
        try
        {
            await run.InitializeAsync();
        }
        catch
        {
            await run.DisposeAsync();
            throw;
        }

        return run;
    }

    /// <summary>
    /// The outbox options of a dispatcher in a scenario with crashes: a short lease and fast retries. <see cref="OutboxOptions.MaxAttempts"/>
    /// is raised far above its default (10): every failed publish counts as an attempt, including "the connection is closed" while
    /// the broker restarts, so with 100 ms..1 s retries the default 10 attempts are used up in about 6.5 s and a broker outage longer
    /// than that moves healthy committed messages to the dead letters (seen in scenario 2 with MaxAttempts = 10: 60 of 640 committed
    /// messages dead-lettered with "The RabbitMQ connection is closed (320 CONNECTION_FORCED ...)").
    /// </summary>
    public static OutboxOptions FastRecoveryOptions() => new()
    {
        MaxAttempts = 1000,
        MessageBatchSize = 20,
        CheckInterval = TimeSpan.FromMilliseconds(100),
        LeaseDuration = TimeSpan.FromSeconds(3),
        PublishTimeout = TimeSpan.FromSeconds(2),
        RetryDelay = TimeSpan.FromMilliseconds(100),
        MaxRetryDelay = TimeSpan.FromSeconds(1),
    };

    /// <summary>
    /// Starts an in-process dispatcher (its own data source, publisher and outbox) on this run's table; disposed with the run.
    /// <paramref name="connectionString"/> replaces the database's connection string and <paramref name="brokerPort"/> the broker's port (proxies).
    /// </summary>
    public async Task<Outbox> StartDispatcherAsync(OutboxOptions options, string? connectionString = null, int? brokerPort = null)
    {
        var (store, dataSource) = Store.CreateStore(connectionString);
        var publisher = (IAsyncDisposable)await Broker.CreatePublisherAsync(brokerPort, _droppedDuplicates);
        var outbox = new Outbox(store, (IOutboxPublisher)publisher, options, _possibleDuplicates);

        // Disposed in reverse order: the outbox first (a graceful stop), then the publisher, then the data source.
        if (dataSource is not null)
        {
            _owned.Add(dataSource);
        }

        _owned.Add(publisher);
        _owned.Add(outbox);
        var slot = _dispatchedBy.Count;
        _dispatchedBy.Add(0);
        var reader = outbox.Dispatched;
        _ = Task.Run(async () =>
        {
            await foreach (var _ in reader.ReadAllAsync())
            {
                lock (_dispatchedBy)
                {
                    _dispatchedBy[slot]++;
                }
            }
        });
        outbox.StartDispatcher();
        return outbox;
    }

    /// <summary>
    /// Runs <paramref name="transactions"/> transactions one after the other, <paramref name="pause"/> apart: 1 to 3 messages each, every
    /// fifth rolled back. Two messages in three carry one of <see cref="KeyCount"/> ordering keys and their key's next sequence number.
    /// A transaction that fails (a server is down) is recorded as rolled back, or as ambiguous when its <c>COMMIT</c> failed, and the
    /// producer carries on after a short pause.
    /// </summary>
    public async Task ProduceAsync(int transactions, TimeSpan pause, Func<int, DbTransaction, List<Sent>, Task>? extra = null, CancellationToken cancellationToken = default)
    {
        for (var t = 0; t < transactions; t++)
        {
            var messages = new List<Sent>();
            var rollback = t % 5 == 4;
            var commitSent = false;
            try
            {
                await using var connection = await Store.OpenAsync(cancellationToken);
                await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
                for (var m = 0; m < 1 + (t % 3); m++)
                {
                    var number = _number++;
                    string? key = number % 3 == 0 ? null : $"k{(number / 3) % KeyCount}";
                    var sequence = key is null ? 0 : ++_keySequences[(number / 3) % KeyCount];
                    var message = NewMessage(number, key, sequence);
                    var sent = Track(message, number, key, sequence);
                    messages.Add(sent);
                    await Producer.EnqueueAsync(transaction, message, cancellationToken);
                }

                if (extra is not null)
                {
                    await extra(t, transaction, messages);
                }

                if (rollback)
                {
                    await transaction.RollbackAsync(cancellationToken);
                    Settle(messages, Outcome.RolledBack);
                }
                else
                {
                    commitSent = true;
                    await transaction.CommitAsync(cancellationToken);
                    Settle(messages, Outcome.Committed);
                }
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is DbException or OutboxException or InvalidOperationException or IOException or TimeoutException or System.Net.Sockets.SocketException)
            {
                FailedTransactions++;
                Settle(messages, commitSent ? Outcome.Ambiguous : Outcome.RolledBack);
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
            }

            if (pause > TimeSpan.Zero)
            {
                await Task.Delay(pause, cancellationToken);
            }
        }
    }

    /// <summary>Builds one message for this run's destination; the payload carries its number, key, sequence and the time it was built.</summary>
    public OutboxMessage NewMessage(int number, string? key, int sequence)
    {
        var payload = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object?>
        {
            ["n"] = number,
            ["key"] = key,
            ["seq"] = sequence,
            ["enqueued_ts"] = Stopwatch.GetTimestamp(),
        });
        var message = new OutboxMessage(payload) { OrderingKey = key, MessageId = Guid.CreateVersion7() };
        Broker.Route(message, key);
        message.Headers["n"] = number;
        return message;
    }

    /// <summary>Records a message the caller enqueues itself (for example a poison message); settle it with the transaction.</summary>
    public Sent Track(OutboxMessage message, int number, string? key, int sequence)
    {
        var sent = new Sent(number, key, sequence, message.MessageId);
        _sent[message.MessageId.ToString()] = sent;
        return sent;
    }

    /// <summary>The producer's outbox (its dispatcher never runs), to enqueue extra messages in a transaction.</summary>
    public Outbox Producer => _producer ?? throw new InvalidOperationException("Not initialized.");

    public int NextNumber() => _number++;

    /// <summary>How many messages each in-process dispatcher marked dispatched, in the order they were started.</summary>
    public IReadOnlyList<int> DispatchedBy
    {
        get
        {
            lock (_dispatchedBy)
            {
                return [.. _dispatchedBy];
            }
        }
    }

    public int NextSequence(int key) => ++_keySequences[key];

    /// <summary>
    /// Starts a samples/Outboxer.Relay process on this run's table and broker, dispatching as <see cref="RelayOptions"/> says; the
    /// republished messages its broker dropped and the possible duplicates it counted go into the report.
    /// </summary>
    public Task<RelayProcess> StartRelayAsync() => StartRelayAsync([], onLine: null);

    /// <summary>
    /// Starts a relay as <see cref="StartRelayAsync()"/> does that also sends: <paramref name="transactions"/> transactions,
    /// <paramref name="pause"/> apart, each committing one keyless message with <c>SendWithinTransactionAsync</c> (so the send-after-commit
    /// path: the row is written already leased to the relay's dispatcher and published from memory right after the commit), every fifth
    /// rolled back by its work. The run tracks each message from the relay's lines: <c>sending</c> (before the transaction begins),
    /// then <c>committed</c> or <c>rolled-back</c>. A message whose outcome the relay never printed (killed mid-transaction) stays
    /// pending until <see cref="VerifyAsync"/> looks for its row, so every sending relay must have ended its sends (killed, or
    /// <see cref="RelayProcess.SendsDone"/>) before then.
    /// </summary>
    public Task<RelayProcess> StartSendingRelayAsync(int transactions, TimeSpan pause)
    {
        // Each sending relay numbers its messages from a million of its own, far from the producer's numbers.
        var sender = Interlocked.Increment(ref _relayNumbers);
        var route = new OutboxMessage([]);
        Broker.Route(route, key: null);
        List<string> arguments =
        [
            "--send", transactions.ToString(CultureInfo.InvariantCulture),
            "--send-pause-ms", ((int)pause.TotalMilliseconds).ToString(CultureInfo.InvariantCulture),
            "--send-first", (sender * 1_000_000).ToString(CultureInfo.InvariantCulture),
        ];
        foreach (var (name, value) in route.Options)
        {
            arguments.AddRange(["--send-option", $"{name}={Convert.ToString(value, CultureInfo.InvariantCulture)}"]);
        }

        return StartRelayAsync(arguments, line => OnRelayLine(sender, line));
    }

    private async Task<RelayProcess> StartRelayAsync(IEnumerable<string> extraArguments, Action<string>? onLine)
    {
        var relay = await RelayProcess.StartAsync([.. Store.RelayArguments(RelayOptions.ConnectionString), .. Broker.RelayArguments, .. RelayOptions.Arguments(Store.Name), .. extraArguments], Ct, onLine);
        lock (_relays)
        {
            _relays.Add(relay);
        }

        return relay;
    }

    public int ArrivalCount => _arrivals.Count;

    /// <summary>Gets how many messages the sending relays reported committed so far.</summary>
    public int RelayCommittedCount => _relaySends.Values.Count(s => s.Sent.Outcome == Outcome.Committed);

    /// <summary>
    /// Waits (bounded) until every committed message arrived, then until the table has nothing pending (dead letters excepted) and the
    /// destination has been quiet for a second; computes the report, appends it to artifacts/guarantees.jsonl and returns it. On a
    /// stream, what the reader read must be what the stream holds. Messages of sending relays (<see cref="StartSendingRelayAsync"/>)
    /// whose outcome the relay never printed are decided first by the table: committed when their row is there, rolled back when not.
    /// </summary>
    public async Task<GuaranteeReport> VerifyAsync(bool crash, string faults, IEnumerable<string>? excludedIds = null, TimeSpan? budget = null)
    {
        var (inDoubt, inDoubtCommitted) = await ResolveRelaySendsAsync();
        var excluded = new HashSet<string>(excludedIds ?? []);
        var deadline = Stopwatch.StartNew();
        var limit = budget ?? TimeSpan.FromSeconds(120);
        var committed = _sent.Where(s => s.Value.Outcome == Outcome.Committed && !excluded.Contains(s.Key)).Select(s => s.Key).ToHashSet();
        var problems = new List<string>();

        while (deadline.Elapsed < limit)
        {
            var arrived = _arrivals.Select(a => a.MessageId).ToHashSet();
            if (committed.IsSubsetOf(arrived))
            {
                break;
            }

            await Task.Delay(100, Ct);
        }

        if (deadline.Elapsed >= limit)
        {
            problems.Add($"not every committed message arrived within {limit}");
        }

        // Then nothing pending in the table, and a quiet queue: late duplicates would have arrived by now.
        var settle = Stopwatch.StartNew();
        while (settle.Elapsed < TimeSpan.FromSeconds(30))
        {
            var quietFor = Stopwatch.GetElapsedTime(Interlocked.Read(ref _lastArrivalAt));
            if (quietFor > TimeSpan.FromSeconds(1) && await PendingAsync() == 0)
            {
                break;
            }

            await Task.Delay(100, Ct);
        }

        if (settle.Elapsed >= TimeSpan.FromSeconds(30))
        {
            problems.Add($"the table still had {await PendingAsync()} pending message(s), or the queue was not quiet, 30 s after every message arrived");
        }

        if (await Broker.CountStoredAsync(Ct) is { } stored && stored != _arrivals.Count)
        {
            problems.Add($"the stream holds {stored} message(s) but the reader read {_arrivals.Count}");
        }

        var report = Compute(crash, faults, excluded, committed, problems);

        // A dead letter is a message the broker never got: none may have arrived (the poison messages of a scenario never do).
        var deadLetters = await DeadLetterIdsAsync();
        var arrivedIds = _arrivals.Select(a => a.MessageId).ToHashSet();
        var deadLetteredDelivered = deadLetters.Where(arrivedIds.Contains).ToList();
        if (deadLetteredDelivered.Count > 0)
        {
            report.Problems.Add($"{deadLetteredDelivered.Count} dead letter(s) arrived, for example {string.Join(", ", deadLetteredDelivered.Take(5).Select(id => _sent.TryGetValue(id, out var sent) ? sent.Number.ToString(CultureInfo.InvariantCulture) : id))}");
        }

        report = report with { DeadLettered = deadLetters.Count, DeadLetteredDelivered = deadLetteredDelivered.Count };
        if (!_relaySends.IsEmpty)
        {
            report = await WithRelaySendsAsync(report, inDoubt, inDoubtCommitted);
        }

        if (report.Lost > 0)
        {
            // Where the lost messages are in the table: dispatched (the broker or the consumer lost them) or dead-lettered.
            var lostIds = committed.Where(id => !arrivedIds.Contains(id)).Select(Guid.Parse).ToArray();
            report.Problems.AddRange(await Store.DescribeLostAsync(lostIds, Ct));
        }

        Append(report);
        TestContext.Current.TestOutputHelper?.WriteLine(ToJson(report));
        return report;
    }

    /// <summary>
    /// The checks every scenario makes: nothing lost, no rollback delivered, nothing unknown, per-key order, no dead letter delivered, and
    /// no more duplicates than the dispatchers counted as possible duplicates without a crash (a killed process or server), nor any when
    /// the broker deduplicates.
    /// </summary>
    public static void AssertGuarantees(GuaranteeReport report)
    {
        var summary = ToJson(report);
        Assert.True(report.Problems.Count == 0, $"{string.Join("; ", report.Problems)}\n{summary}");
        Assert.True(report.Committed > 0, summary);
        Assert.True(report.Lost == 0, $"committed messages lost\n{summary}");
        Assert.True(report.RolledBackDelivered == 0, $"rolled-back messages delivered\n{summary}");
        Assert.True(report.Unknown == 0, $"messages nobody enqueued delivered\n{summary}");
        Assert.True(report.OutOfOrder == 0, $"per-key order broken\n{summary}");
        Assert.True(report.DeadLetteredDelivered == 0, $"dead letters delivered\n{summary}");
        if (!report.Crash)
        {
            Assert.True(report.Duplicates <= report.Uncertain, $"more duplicates than the dispatchers counted as possible duplicates, without a crash\n{summary}");
        }

        if (report.Dedup)
        {
            Assert.True(report.Duplicates == 0, $"duplicates in the stream although the broker deduplicates\n{summary}");
        }
    }

    /// <summary>Tracks a sending relay's message from its output lines (see <see cref="StartSendingRelayAsync"/>).</summary>
    private void OnRelayLine(int sender, string line)
    {
        var parts = line.Split(' ');
        if (parts.Length < 2 || !Guid.TryParse(parts[1], out var messageId))
        {
            return;
        }

        var id = messageId.ToString();
        switch (parts[0])
        {
            case "sending":
                var sent = new Sent(int.Parse(parts[2], CultureInfo.InvariantCulture), key: null, sequence: 0, messageId) { Outcome = Outcome.Pending, CommittedAt = Stopwatch.GetTimestamp() };
                _sent[id] = sent;
                _relaySends[id] = new RelaySend(sent, sender);
                break;
            case "committed" when _relaySends.TryGetValue(id, out var send):
                send.Sent.Outcome = Outcome.Committed;
                break;
            case "rolled-back" when _relaySends.TryGetValue(id, out var send):
                send.Sent.Outcome = Outcome.RolledBack;
                break;
            case "sent-after-commit" when _relaySends.TryGetValue(id, out var send):
                send.MarkedBySender = true;
                break;
        }
    }

    /// <summary>
    /// Decides the relay messages still pending (no outcome line: the relay was killed mid-transaction, or the send failed) by the table:
    /// committed when the row is there, rolled back when not. No relay may still be sending.
    /// </summary>
    private async Task<(int InDoubt, int Committed)> ResolveRelaySendsAsync()
    {
        var inDoubt = _relaySends.Values.Where(s => s.Sent.Outcome == Outcome.Pending).ToList();
        if (inDoubt.Count == 0)
        {
            return (0, 0);
        }

        var rows = await Store.ReadAttemptsAsync(Ct);
        foreach (var send in inDoubt)
        {
            send.Sent.Outcome = rows.ContainsKey(send.Sent.MessageId) ? Outcome.Committed : Outcome.RolledBack;
        }

        return (inDoubt.Count, inDoubt.Count(s => s.Sent.Outcome == Outcome.Committed));
    }

    /// <summary>Adds what the table says of the relays' committed messages: published after commit by their sender, or claimed after its lease.</summary>
    private async Task<GuaranteeReport> WithRelaySendsAsync(GuaranteeReport report, int inDoubt, int inDoubtCommitted)
    {
        var rows = await Store.ReadAttemptsAsync(Ct);
        var committed = _relaySends.Values.Where(s => s.Sent.Outcome == Outcome.Committed).ToList();
        int Attempts(RelaySend send) => rows.TryGetValue(send.Sent.MessageId, out var attempts) ? attempts : 0;
        return report with
        {
            RelaySent = committed.Count,
            SentAfterCommit = committed.Count(s => s.MarkedBySender && Attempts(s) == 1),
            ClaimedAfterLease = committed.Count(s => Attempts(s) >= 2),
            RelayInDoubt = inDoubt,
            RelayInDoubtCommitted = inDoubtCommitted,
        };
    }

    /// <summary>Counts the messages neither dispatched nor dead-lettered; tries again while the database is unreachable (a restart).</summary>
    public async Task<long> PendingAsync()
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return (await Producer.GetStatisticsAsync(Ct)).Pending;
            }
            catch (Exception ex) when (attempt < 50 && ex is DbException or OutboxException)
            {
                await Task.Delay(200, Ct);
            }
        }
    }

    /// <summary>Reads the message ids of every dead letter in the table, in the producer's format.</summary>
    private async Task<HashSet<string>> DeadLetterIdsAsync()
    {
        var ids = new HashSet<string>();
        long after = 0;
        while (true)
        {
            var page = await Producer.GetDeadLettersAsync(500, after, Ct);
            foreach (var letter in page)
            {
                ids.Add(letter.MessageId.ToString());
            }

            if (page.Count < 500)
            {
                return ids;
            }

            after = page[^1].Id;
        }
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            try
            {
                await _owned[i].DisposeAsync();
            }
#pragma warning disable CA1031 // Best effort: a dispatcher whose server is gone may fail to stop cleanly.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }

        if (_producer is not null)
        {
            await _producer.DisposeAsync();
        }

        if (_producerPublisher is IAsyncDisposable publisher)
        {
            await publisher.DisposeAsync();
        }

        await Broker.DisposeAsync();
        await Store.DisposeAsync();
    }

    private async Task InitializeAsync()
    {
        await Store.CreateAsync($"{Scenario}_{Suffix}", Ct);
        var (store, owned) = Store.CreateStore(Store.ProducerConnectionString);
        if (owned is not null)
        {
            _owned.Insert(0, owned);
        }

        await Broker.StartAsync($"{Scenario}.{Suffix}", Arrived, Ct);

        // The producer never starts its dispatcher: its publisher only names each message's destination (stored with the row).
        _producerPublisher = await Broker.CreatePublisherAsync();
        _producer = new Outbox(store, _producerPublisher);
    }

    /// <summary>Records a delivery (or a stream entry read) with its message id in the producer's format.</summary>
    private void Arrived(Arrival arrival)
    {
        var id = Guid.TryParse(arrival.MessageId, out var guid) ? guid.ToString() : arrival.MessageId;
        _arrivals.Enqueue(arrival with { MessageId = id });
        Interlocked.Exchange(ref _lastArrivalAt, arrival.ReceivedAt);
    }

    private void Settle(List<Sent> messages, Outcome outcome)
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var sent in messages)
        {
            sent.Outcome = outcome;
            sent.CommittedAt = now;
        }
    }

    private int RelayDroppedDuplicates()
    {
        lock (_relays)
        {
            return _relays.Sum(relay => relay.DuplicatesDropped);
        }
    }

    private int RelayUncertain()
    {
        lock (_relays)
        {
            return _relays.Sum(relay => relay.Uncertain);
        }
    }

    private GuaranteeReport Compute(bool crash, string faults, HashSet<string> excluded, HashSet<string> committed, List<string> problems)
    {
        var arrivals = _arrivals.ToArray();
        var seen = new HashSet<string>();
        var lastSequence = new Dictionary<string, int>();
        int duplicates = 0, redeliveries = 0, rolledBackDelivered = 0, unknown = 0, outOfOrder = 0;
        double maxDelay = 0;
        foreach (var arrival in arrivals)
        {
            if (excluded.Contains(arrival.MessageId))
            {
                continue;
            }

            if (!seen.Add(arrival.MessageId))
            {
                // A delivery the broker repeats to the consumer (its ack was lost) is not a second publish.
                if (arrival.Redelivered)
                {
                    redeliveries++;
                }
                else
                {
                    duplicates++;
                }

                continue;
            }

            if (!_sent.TryGetValue(arrival.MessageId, out var sent))
            {
                unknown++;
                continue;
            }

            if (sent.Outcome == Outcome.RolledBack)
            {
                rolledBackDelivered++;
                problems.Add($"rolled-back message {sent.Number} ({sent.MessageId}) arrived");
            }

            if (sent.Outcome == Outcome.Committed)
            {
                maxDelay = Math.Max(maxDelay, Stopwatch.GetElapsedTime(sent.CommittedAt, arrival.ReceivedAt).TotalMilliseconds);
            }

            if (sent.Key is { } key)
            {
                if (lastSequence.TryGetValue(key, out var last) && sent.Sequence < last)
                {
                    outOfOrder++;
                    if (outOfOrder <= 5)
                    {
                        problems.Add($"key {key}: sequence {sent.Sequence} (message {sent.Number}) first arrived after sequence {last}");
                    }
                }

                lastSequence[key] = Math.Max(last, sent.Sequence);
            }
        }

        var lost = committed.Count(id => !seen.Contains(id));
        if (lost > 0)
        {
            problems.Add($"{lost} committed message(s) never arrived, for example {string.Join(", ", committed.Where(id => !seen.Contains(id)).Take(5).Select(id => _sent[id].Number))}");
        }

        return new GuaranteeReport(
            Scenario,
            crash,
            committed.Count,
            _sent.Count(s => s.Value.Outcome == Outcome.RolledBack && !excluded.Contains(s.Key)),
            _sent.Count(s => s.Value.Outcome == Outcome.Ambiguous && !excluded.Contains(s.Key)),
            committed.Count(seen.Contains),
            lost,
            duplicates,
            redeliveries,
            rolledBackDelivered,
            unknown,
            outOfOrder,
            Math.Round(maxDelay, 1),
            (long)_elapsed.Elapsed.TotalMilliseconds,
            faults,
            problems)
        {
            Broker = Broker.Name,
            Store = Store.Name,
            Uncertain = _possibleDuplicates.Count + RelayUncertain(),
            Dedup = Broker.Deduplicates,
            DroppedDuplicates = Broker.CountsDroppedDuplicates ? _droppedDuplicates.Count + RelayDroppedDuplicates() : null,
        };
    }

    private static string ToJson(GuaranteeReport report)
    {
        var json = new Dictionary<string, object?>
        {
            ["scenario"] = report.Scenario,
            ["store"] = report.Store,
            ["broker"] = report.Broker,
            ["dedup"] = report.Dedup,
            ["time"] = TimeProvider.System.GetUtcNow().ToString("O", CultureInfo.InvariantCulture),
            ["crash"] = report.Crash,
            ["committed"] = report.Committed,
            ["rolled_back"] = report.RolledBack,
            ["ambiguous"] = report.Ambiguous,
            ["delivered_unique"] = report.DeliveredUnique,
            ["lost"] = report.Lost,
            ["duplicates"] = report.Duplicates,
            ["uncertain"] = report.Uncertain,
            ["broker_dropped_duplicates"] = report.DroppedDuplicates,
            ["consumer_redeliveries"] = report.ConsumerRedeliveries,
            ["rolled_back_delivered"] = report.RolledBackDelivered,
            ["unknown_delivered"] = report.Unknown,
            ["out_of_order"] = report.OutOfOrder,
            ["dead_lettered"] = report.DeadLettered,
            ["dead_lettered_delivered"] = report.DeadLetteredDelivered,
            ["max_delay_ms"] = report.MaxDelayMs,
            ["elapsed_ms"] = report.ElapsedMs,
            ["faults"] = report.Faults,
            ["problems"] = report.Problems,
        };
        if (report.RelaySent is not null)
        {
            // Only the scenarios whose relays send write these.
            json["relay_sent"] = report.RelaySent;
            json["sent_after_commit"] = report.SentAfterCommit;
            json["claimed_after_lease"] = report.ClaimedAfterLease;
            json["relay_in_doubt"] = report.RelayInDoubt;
            json["relay_in_doubt_committed"] = report.RelayInDoubtCommitted;
        }

        return JsonSerializer.Serialize(json);
    }

    private static void Append(GuaranteeReport report)
    {
        var folder = Path.Combine(Repository.Root, "artifacts");
        Directory.CreateDirectory(folder);
        AppendLine(Path.Combine(folder, "guarantees.jsonl"), report);
    }

    /// <summary>
    /// Appends the report as one JSON line, in UTF-8 without a byte order mark: JSON Lines has none, and a file that starts with
    /// EF BB BF is rejected by standard parsers (<see cref="Encoding.UTF8"/> would write one to a new file). A file that an earlier
    /// version left starting with one loses it first, so appending never keeps an unreadable file unreadable.
    /// </summary>
    internal static void AppendLine(string path, GuaranteeReport report)
    {
        lock (s_reportFile)
        {
            RemoveByteOrderMark(path);
            File.AppendAllText(path, ToJson(report) + "\n", s_utf8WithoutBom);
        }
    }

    private static void RemoveByteOrderMark(string path)
    {
        if (!File.Exists(path))
        {
            return;
        }

        var bytes = File.ReadAllBytes(path);
        if (bytes.AsSpan().StartsWith(Encoding.UTF8.Preamble))
        {
            File.WriteAllBytes(path, bytes[Encoding.UTF8.Preamble.Length..]);
        }
    }
}

/// <summary>One message a sending relay committed (or tried to): the run's record of it, which relay sent it, and whether that relay marked it itself.</summary>
internal sealed class RelaySend(Sent sent, int sender)
{
    public Sent Sent { get; } = sent;

    public int Sender { get; } = sender;

    /// <summary>Gets or sets whether the sender printed <c>sent-after-commit</c>: its own dispatcher marked the message.</summary>
    public bool MarkedBySender { get; set; }
}
