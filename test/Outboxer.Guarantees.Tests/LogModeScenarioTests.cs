using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;
using Outboxer.Testing.Servers;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// Log mode scenario: two relay processes on one replication slot, the active one killed with SIGKILL twice while transactions commit
/// (and roll back): the standby takes over each time and resumes from the slot's acknowledged position. Every committed message arrives,
/// no rolled-back one does, the first delivery of each key's messages is in commit order, and duplicates are counted.
/// </summary>
public sealed class LogModeScenarioTests
{
    [Fact]
    public async Task LogMode_relay_SIGKILL_with_a_standby_taking_over_loses_nothing_and_keeps_key_order()
    {
        await using var run = await LogModeRun.CreateAsync("logmode-relay-sigkill-standby");
        var active = await run.StartRelayAsync();
        await active.WaitForActiveAsync();
        var standby = await run.StartRelayAsync();

        using var produced = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var producing = run.ProduceAsync(450, TimeSpan.FromMilliseconds(5), produced.Token);

        var faults = new List<string>();
        for (var kill = 0; kill < 2; kill++)
        {
            await run.WaitForArrivalsAsync(60 * (kill + 1));
            await active.KillAsync();
            faults.Add($"SIGKILL active relay pid {active.Id} after {run.ArrivalCount} arrivals");
            var takeover = Stopwatch.StartNew();
            await standby.WaitForActiveAsync();
            faults.Add($"standby pid {standby.Id} took over in {takeover.ElapsedMilliseconds} ms");
            (active, standby) = (standby, await run.StartRelayAsync());
        }

        await producing;
        var report = await run.VerifyAsync(string.Join("; ", faults));
        GuaranteeRun.AssertGuarantees(report);
    }
}

/// <summary>
/// Log mode scenario: the server process that streams the slot to the active relay is terminated three times (a cut replication
/// connection, as a failover or an administrator does): a relay reconnects and resumes from the acknowledged position.
/// </summary>
public sealed class LogModeConsumerCutScenarioTests
{
    [Fact]
    public async Task LogMode_slot_consumer_cut_three_times_loses_nothing_and_keeps_key_order()
    {
        await using var run = await LogModeRun.CreateAsync("logmode-slot-consumer-cut");
        var first = await run.StartRelayAsync();
        await first.WaitForActiveAsync();
        await run.StartRelayAsync();
        var producing = run.ProduceAsync(400, TimeSpan.FromMilliseconds(5), TestContext.Current.CancellationToken);
        var faults = new List<string>();
        for (var cut = 0; cut < 3; cut++)
        {
            await run.WaitForArrivalsAsync(60 * (cut + 1));
            var pid = await run.CutSlotConsumerAsync();
            faults.Add($"walsender {pid?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"} terminated after {run.ArrivalCount} arrivals");
        }

        await producing;
        var report = await run.VerifyAsync($"2 relay processes; {string.Join("; ", faults)}");
        GuaranteeRun.AssertGuarantees(report);
    }
}

/// <summary>One log-mode scenario's world: its own slot, publication, prefix and dead-letter schema, exchange and queue, producer and consumer.</summary>
internal sealed class LogModeRun : IAsyncDisposable
{
    private const int KeyCount = 10;

    private readonly ConcurrentDictionary<string, Sent> _sent = new();
    private readonly ConcurrentQueue<Arrival> _arrivals = new();
    private readonly int[] _keySequences = new int[KeyCount];
    private readonly Stopwatch _elapsed = Stopwatch.StartNew();
    private readonly List<LogRelayProcess> _relays = [];
    private readonly PostgreSqlLogOptions _options;
    private readonly NpgsqlDataSource _data;
    private readonly Outbox _producer;
    private readonly string _postgres;
    private IConnection _consumerConnection = null!;
    private IChannel _consumerChannel = null!;
    private long _lastArrivalAt = Stopwatch.GetTimestamp();
    private int _number;

    private LogModeRun(string scenario, string postgres)
    {
        Scenario = scenario;
        _postgres = postgres;
        var suffix = Guid.NewGuid().ToString("N")[..8];
        _options = new PostgreSqlLogOptions
        {
            Prefix = $"outboxer.guarantees.{suffix}",
            SlotName = $"guarantees_logmode_{suffix}",
            PublicationName = $"guarantees_logmode_{suffix}",
            SchemaName = $"guarantees_logmode_{suffix}",
        };
        Exchange = $"outboxer.guarantees.{scenario}.{suffix}";
        _data = NpgsqlDataSource.Create(postgres);
        _producer = new Outbox(new PostgreSqlLogWriter(_data, _options));
    }

    public string Scenario { get; }

    public string Exchange { get; }

    public int ArrivalCount => _arrivals.Count;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Creates the run's slot, publication and dead-letter schema and starts its consumer.</summary>
    /// <param name="scenario">The scenario's name in artifacts/guarantees.jsonl.</param>
    /// <param name="postgres">The server's connection string; <see langword="null"/> for the shared one (eng/servers.sh).</param>
    public static async Task<LogModeRun> CreateAsync(string scenario, string? postgres = null)
    {
        var run = new LogModeRun(scenario, postgres ?? PostgreSqlServer.ConnectionString);
        await using (await PostgreSqlServer.OpenAsync(run._data))
        {
        }

        var status = await new PostgreSqlLogSetup(run._data, run._options).SetupAsync(Ct);
        Assert.Empty(status.Problems);
        run._consumerConnection = await RabbitMQServer.ConnectAsync($"Outboxer.Guarantees.Tests.{scenario}", factory =>
        {
            factory.AutomaticRecoveryEnabled = true;
            factory.TopologyRecoveryEnabled = true;
            factory.NetworkRecoveryInterval = TimeSpan.FromSeconds(1);
        });
        run._consumerChannel = await run._consumerConnection.CreateChannelAsync(cancellationToken: Ct);
        await run._consumerChannel.ExchangeDeclareAsync(run.Exchange, ExchangeType.Topic, durable: true, autoDelete: false, cancellationToken: Ct);
        await run._consumerChannel.QueueDeclareAsync(run.Exchange, durable: true, exclusive: false, autoDelete: false, cancellationToken: Ct);
        await run._consumerChannel.QueueBindAsync(run.Exchange, run.Exchange, "#", cancellationToken: Ct);
        await run._consumerChannel.BasicQosAsync(0, 500, global: false, Ct);
        var consumer = new AsyncEventingBasicConsumer(run._consumerChannel);
        consumer.ReceivedAsync += async (_, delivery) =>
        {
            var now = Stopwatch.GetTimestamp();
            run._arrivals.Enqueue(new Arrival(delivery.BasicProperties.MessageId ?? string.Empty, now, delivery.Redelivered));
            Interlocked.Exchange(ref run._lastArrivalAt, now);
            try
            {
                await run._consumerChannel.BasicAckAsync(delivery.DeliveryTag, multiple: false);
            }
#pragma warning disable CA1031 // The broker redelivers with the redelivered flag.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        };
        await run._consumerChannel.BasicConsumeAsync(run.Exchange, autoAck: false, consumer, Ct);
        return run;
    }

    /// <summary>Deletes this run's exchange and queue (best effort), with a connection of its own.</summary>
    private async Task DeleteTopologyAsync()
    {
        try
        {
            var factory = new ConnectionFactory { Uri = RabbitMQServer.Url, ClientProvidedName = "Outboxer.Guarantees.Tests.logmode.cleanup" };
            await using var connection = await factory.CreateConnectionAsync(CancellationToken.None);
            await using var channel = await connection.CreateChannelAsync();
            await channel.QueueDeleteAsync(Exchange);
            await channel.ExchangeDeleteAsync(Exchange);
        }
#pragma warning disable CA1031 // Best effort: the scenario's result does not depend on it.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    public async Task<LogRelayProcess> StartRelayAsync()
    {
        var relay = await LogRelayProcess.StartAsync(_postgres, RabbitMQServer.Url, _options, Ct);
        _relays.Add(relay);
        return relay;
    }

    /// <summary>
    /// Runs <paramref name="transactions"/> transactions in log mode, <paramref name="pause"/> apart: 1 to 3 messages each, every fifth
    /// rolled back; two messages in three carry one of ten ordering keys and their key's next sequence number.
    /// </summary>
    public async Task ProduceAsync(int transactions, TimeSpan pause, CancellationToken cancellationToken)
    {
        await Task.Yield();
        for (var t = 0; t < transactions; t++)
        {
            var messages = new List<Sent>();
            var rollback = t % 5 == 4;
            var commitSent = false;
            try
            {
                await using var connection = await _data.OpenConnectionAsync(cancellationToken);
                await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
                for (var m = 0; m < 1 + (t % 3); m++)
                {
                    var number = _number++;
                    string? key = number % 3 == 0 ? null : $"k{(number / 3) % KeyCount}";
                    var sequence = key is null ? 0 : ++_keySequences[(number / 3) % KeyCount];
                    var message = new OutboxMessage(JsonSerializer.SerializeToUtf8Bytes(new { n = number, key, seq = sequence })) { OrderingKey = key, MessageId = Guid.CreateVersion7() };
                    message.Options[RabbitMQOptionKeys.ExchangeName] = Exchange;
                    message.Options[RabbitMQOptionKeys.ExchangeType] = "topic";
                    message.Options[RabbitMQOptionKeys.RoutingKey] = key is null ? "guarantees.unordered" : $"guarantees.{key}";
                    var sent = new Sent(number, key, sequence, message.MessageId);
                    _sent[message.MessageId.ToString()] = sent;
                    messages.Add(sent);
                    await _producer.EnqueueAsync(transaction, message, cancellationToken);
                }

                if (rollback)
                {
                    await transaction.RollbackAsync(cancellationToken);
                }
                else
                {
                    commitSent = true;
                    await transaction.CommitAsync(cancellationToken);
                }

                Settle(messages, rollback ? Outcome.RolledBack : Outcome.Committed);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is NpgsqlException or OutboxException or InvalidOperationException or IOException or TimeoutException)
            {
                // The server went away (a restart): before COMMIT the transaction is rolled back; during COMMIT nobody knows.
                FailedTransactions++;
                Settle(messages, commitSent ? Outcome.Ambiguous : Outcome.RolledBack);
                await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
            }

            await Task.Delay(pause, cancellationToken);
        }
    }

    public int FailedTransactions { get; private set; }

    /// <summary>Terminates the server process that streams the slot to the active relay (a cut replication connection); returns its pid.</summary>
    public async Task<int?> CutSlotConsumerAsync()
    {
        await using var command = _data.CreateCommand("SELECT active_pid, pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL");
        command.Parameters.AddWithValue(_options.SlotName);
        await using var reader = await command.ExecuteReaderAsync(Ct);
        return await reader.ReadAsync(Ct) ? reader.GetInt32(0) : null;
    }

    private static void Settle(List<Sent> messages, Outcome outcome)
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var sent in messages)
        {
            sent.Outcome = outcome;
            sent.CommittedAt = now;
        }
    }

    public async Task WaitForArrivalsAsync(int count)
    {
        var deadline = Stopwatch.StartNew();
        while (_arrivals.Count < count)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), $"only {_arrivals.Count} of {count} messages arrived within a minute:\n{string.Join("\n", _relays.Select(r => r.Output))}");
            await Task.Delay(20, Ct);
        }
    }

    /// <summary>Waits until every committed message arrived and the queue is quiet; computes the report and appends it to artifacts/guarantees.jsonl.</summary>
    /// <param name="faults">What the scenario did.</param>
    /// <param name="crash">
    /// Whether a relay process was killed (its count of possible duplicates died with it); without, the report's duplicates may not exceed
    /// what the relays counted (their "uncertain" lines).
    /// </param>
    public async Task<GuaranteeReport> VerifyAsync(string faults, bool crash = true)
    {
        var committed = _sent.Where(s => s.Value.Outcome == Outcome.Committed).Select(s => s.Key).ToHashSet();
        var problems = new List<string>();
        var deadline = Stopwatch.StartNew();
        while (!committed.IsSubsetOf(_arrivals.Select(a => a.MessageId)) && deadline.Elapsed < TimeSpan.FromSeconds(120))
        {
            await Task.Delay(100, Ct);
        }

        while (Stopwatch.GetElapsedTime(Interlocked.Read(ref _lastArrivalAt)) < TimeSpan.FromSeconds(2) && deadline.Elapsed < TimeSpan.FromSeconds(150))
        {
            await Task.Delay(100, Ct);
        }

        var seen = new HashSet<string>();
        var lastSequence = new Dictionary<string, int>();
        int duplicates = 0, redeliveries = 0, rolledBackDelivered = 0, unknown = 0, outOfOrder = 0;
        double maxDelay = 0;
        foreach (var arrival in _arrivals)
        {
            if (!seen.Add(arrival.MessageId))
            {
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
                problems.Add($"rolled-back message {sent.Number} arrived");
            }
            else
            {
                maxDelay = Math.Max(maxDelay, Stopwatch.GetElapsedTime(sent.CommittedAt, arrival.ReceivedAt).TotalMilliseconds);
            }

            if (sent.Key is { } key)
            {
                if (lastSequence.TryGetValue(key, out var last) && sent.Sequence < last)
                {
                    outOfOrder++;
                    problems.Add($"key {key}: sequence {sent.Sequence} first arrived after {last}");
                }

                lastSequence[key] = Math.Max(last, sent.Sequence);
            }
        }

        var lost = committed.Count(id => !seen.Contains(id));
        if (lost > 0)
        {
            problems.Add($"{lost} committed message(s) never arrived");
        }

        var deadLetters = (await new PostgreSqlLogSetup(_data, _options).GetStatusAsync(Ct)).DeadLetters;
        var report = new GuaranteeReport(
            Scenario,
            Crash: crash,
            committed.Count,
            _sent.Count(s => s.Value.Outcome == Outcome.RolledBack),
            _sent.Count(s => s.Value.Outcome == Outcome.Ambiguous),
            committed.Count(seen.Contains),
            lost,
            duplicates,
            redeliveries,
            rolledBackDelivered,
            unknown,
            outOfOrder,
            Math.Round(maxDelay, 1),
            (long)_elapsed.Elapsed.TotalMilliseconds,
            $"log mode (pg_logical_emit_message + pgoutput slot, RabbitMQ); {faults}",
            problems) { DeadLettered = deadLetters, Uncertain = _relays.Sum(r => r.Uncertain) };
        GuaranteeRun.AppendLine(Path.Combine(Directory.CreateDirectory(Path.Combine(Repository.Root, "artifacts")).FullName, "guarantees.jsonl"), report);
        TestContext.Current.TestOutputHelper?.WriteLine(JsonSerializer.Serialize(report));
        return report;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var relay in _relays)
        {
            await relay.DisposeAsync();
        }

        await _producer.DisposeAsync();
        try
        {
            await _consumerChannel.CloseAsync();
            await _consumerConnection.CloseAsync();
            await _consumerConnection.DisposeAsync();
        }
#pragma warning disable CA1031 // Best effort: the scenario's result does not depend on it.
        catch (Exception)
#pragma warning restore CA1031
        {
        }

        await DeleteTopologyAsync();

        // The slot must go (it would retain the shared server's write-ahead log forever); its last walsender may still be ending. A
        // private server is deleted with its slots: a failure there (the server is down after a failed scenario) must not hide the
        // scenario's own failure.
        var setup = new PostgreSqlLogSetup(_data, _options);
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    await setup.DropAsync(CancellationToken.None);
                    break;
                }
                catch (OutboxException) when (attempt < (_postgres == PostgreSqlServer.ConnectionString ? 100 : 5))
                {
                    await Task.Delay(200, CancellationToken.None);
                }
            }

            await using (var drop = _data.CreateCommand($"DROP SCHEMA IF EXISTS \"{_options.SchemaName}\" CASCADE"))
            {
                await drop.ExecuteNonQueryAsync(CancellationToken.None);
            }
        }
        catch (Exception ex) when (_postgres != PostgreSqlServer.ConnectionString && ex is OutboxException or NpgsqlException)
        {
            TestContext.Current.TestOutputHelper?.WriteLine($"the private server's slot was not dropped: {ex.Message}");
        }

        await _data.DisposeAsync();
    }
}

/// <summary>One samples/Outboxer.LogRelay process: started, killed with SIGKILL, or stopped gracefully.</summary>
internal sealed class LogRelayProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _active = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _uncertain;

    private LogRelayProcess(Process process) => _process = process;

    public int Id => _process.Id;

    /// <summary>Gets the possible duplicates this relay counted (the sum of its "uncertain &lt;n&gt;" lines).</summary>
    public int Uncertain => Volatile.Read(ref _uncertain);

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static async Task<LogRelayProcess> StartAsync(string postgres, Uri rabbitMQ, PostgreSqlLogOptions options, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var program = Repository.BuildOutput("samples/Outboxer.LogRelay", "build test/Outboxer.Guarantees.Tests (it builds the log relay) first");
        foreach (var argument in new[] { program, postgres, rabbitMQ.ToString(), options.SlotName, options.PublicationName, options.Prefix, options.SchemaName })
        {
            start.ArgumentList.Add(argument);
        }

        var relay = new LogRelayProcess(Process.Start(start) ?? throw new InvalidOperationException("Could not start the log relay."));
        relay._process.OutputDataReceived += (_, e) => relay.OnLine(e.Data, error: false);
        relay._process.ErrorDataReceived += (_, e) => relay.OnLine(e.Data, error: true);
        relay._process.BeginOutputReadLine();
        relay._process.BeginErrorReadLine();
        await relay._ready.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        return relay;
    }

    public Task WaitForActiveAsync() => _active.Task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

    /// <summary>Kills the process with SIGKILL: no graceful stop, its replication connection simply vanishes.</summary>
    public async Task KillAsync()
    {
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            try
            {
                await _process.StandardInput.WriteLineAsync();
                _process.StandardInput.Close();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await _process.WaitForExitAsync(timeout.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }

        _process.Dispose();
    }

    private void OnLine(string? line, bool error)
    {
        if (line is null)
        {
            if (!error)
            {
                _ready.TrySetException(new InvalidOperationException($"The log relay ended before it was ready:\n{Output}"));
                _active.TrySetException(new InvalidOperationException($"The log relay ended before it was active:\n{Output}"));
            }

            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }

        if (line.StartsWith("uncertain ", StringComparison.Ordinal))
        {
            Interlocked.Add(ref _uncertain, int.Parse(line.AsSpan("uncertain ".Length), System.Globalization.CultureInfo.InvariantCulture));
        }
        else if (line == "ready")
        {
            _ready.TrySetResult();
        }
        else if (line == "active")
        {
            _active.TrySetResult();
        }
    }
}
