using Npgsql;
using NpgsqlTypes;
using RabbitMQ.Client;

namespace Outboxer.Benchmarks;

/// <summary>
/// The reference: a hand-written minimal relay straight on Npgsql and RabbitMQ.Client, measured in the same run as Outboxer, to
/// show what this machine does with the same guarantee. Its own table (<c>id bigserial, payload bytea, dispatched bool</c>, the
/// primary key and one partial index on pending ids) in its own schema, nothing else: no message id, options, headers, lease,
/// attempts, ordering keys, dead letters, cleanup index or NOTIFY trigger.
/// </summary>
/// <remarks>
/// <para>
/// <b>At least once</b> (the reference): each of <see cref="Workers"/> workers holds one connection and, in a transaction, claims up to
/// 500 rows (<c>SELECT id, payload ... ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED</c>), publishes them (persistent, mandatory, to
/// the durable queue's exchange) while the claim transaction stays open, with up to 1,000 confirms in flight over all workers (one
/// channel with publisher-confirm tracking), then marks the confirmed rows with one <c>UPDATE ... WHERE id = ANY($1)</c> and commits.
/// A crash before the commit leaves the rows unmarked and unlocked: they are published again. Two workers keep the confirms
/// pipelined: one publishes while the other claims or marks.
/// </para>
/// <para>
/// <b>At most once</b> (an upper bound only, never a design to use): one statement marks up to 500 rows and returns them, its
/// transaction commits, and only then are they published (up to 1,000 unconfirmed); a crash loses what was marked and not yet
/// confirmed. The loop claims again as soon as there are free confirm slots.
/// </para>
/// <para>
/// The relay's connections commit with <c>synchronous_commit=off</c> (set once per session in the connection string, not per
/// transaction): a mark lost in a database crash only publishes again, which at least once allows. Its statements are prepared
/// once per connection. Producers are separate, durable connections (<see cref="InsertManyAsync"/>, <see cref="InsertOneAsync"/>)
/// that wake the relay in memory after their commit (<see cref="Wake"/>); the relay also polls every second.
/// </para>
/// </remarks>
internal sealed class MinimalRelay : IAsyncDisposable
{
    public const string Schema = "outboxer_bench_relay";
    public const string Table = "messages";
    public const string QualifiedTable = $"\"{Schema}\".\"{Table}\"";
    public const int BatchSize = 500;
    public const int InFlight = 1000;
    public const int Workers = 2;
    private static readonly TimeSpan s_poll = TimeSpan.FromSeconds(1);

    private readonly string _routingKey;
    private readonly bool _atMostOnce;
    private readonly SemaphoreSlim _slots = new(InFlight);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private TaskCompletionSource _signal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _generation;
    private NpgsqlDataSource? _dataSource;
    private IConnection? _connection;
    private IChannel? _channel;
    private int _publishFailures;
    private long _batches;
    private long _emptyClaims;

    private MinimalRelay(string routingKey, bool atMostOnce)
    {
        _routingKey = routingKey;
        _atMostOnce = atMostOnce;
    }

    public int PublishFailures => Volatile.Read(ref _publishFailures);

    public long Batches => Interlocked.Read(ref _batches);

    public long EmptyClaims => Interlocked.Read(ref _emptyClaims);

    public string Guarantee => _atMostOnce ? "at most once (marks before publishing: an upper bound only)" : "at least once";

    /// <summary>Drops and creates the relay's schema: the table, its primary key and one partial index on the pending ids.</summary>
    public static async Task ResetAsync(NpgsqlDataSource admin)
    {
        await using var command = admin.CreateCommand($"""
            DROP SCHEMA IF EXISTS "{Schema}" CASCADE;
            CREATE SCHEMA "{Schema}";
            CREATE TABLE {QualifiedTable} (id bigserial PRIMARY KEY, payload bytea NOT NULL, dispatched boolean NOT NULL DEFAULT false);
            CREATE INDEX "{Table}_pending" ON {QualifiedTable} (id) WHERE NOT dispatched;
            """);
        await command.ExecuteNonQueryAsync();
    }

    public static async Task DropAsync(NpgsqlDataSource admin)
    {
        await using var command = admin.CreateCommand($"DROP SCHEMA IF EXISTS \"{Schema}\" CASCADE");
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>A backlog straight in SQL (as <see cref="Database.FillAsync"/> does for Outboxer's table), then ANALYZE and CHECKPOINT.</summary>
    public static async Task FillAsync(NpgsqlDataSource admin, int count, long tag)
    {
        await using (var command = admin.CreateCommand($"""
            INSERT INTO {QualifiedTable} (payload)
            SELECT int8send(g) || int8send($2::bigint) || decode(repeat('{Payloads.Filler:x2}', {Payloads.Size - Payloads.HeaderSize}), 'hex')
            FROM generate_series(0, $1::bigint - 1) AS g
            ORDER BY g
            """))
        {
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = count });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = tag });
            command.CommandTimeout = 600;
            await command.ExecuteNonQueryAsync();
        }

        foreach (var sql in new[] { $"ANALYZE {QualifiedTable}", "CHECKPOINT" })
        {
            await using var command = admin.CreateCommand(sql);
            command.CommandTimeout = 600;
            await command.ExecuteNonQueryAsync();
        }
    }

    /// <summary>
    /// A data source for the relay's producers: durable commits, and Npgsql's automatic preparation so the insert is prepared once
    /// per pooled connection (as Outboxer's is with PrepareStatements).
    /// </summary>
    public static NpgsqlDataSource ProducerDataSource(string postgresUrl) =>
        NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(postgresUrl) { MaxAutoPrepare = 16, AutoPrepareMinUsages = 2 }.ConnectionString);

    /// <summary>One producer transaction's messages in ONE statement (unnest of a bytea[]), within the caller's transaction.</summary>
    public static async Task InsertManyAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, byte[][] payloads, CancellationToken cancellationToken = default)
    {
        await using var command = new NpgsqlCommand($"INSERT INTO {QualifiedTable} (payload) SELECT unnest($1::bytea[])", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<byte[][]> { TypedValue = payloads, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>One message, within the caller's transaction.</summary>
    public static async Task InsertOneAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, byte[] payload, CancellationToken cancellationToken = default)
    {
        await using var command = new NpgsqlCommand($"INSERT INTO {QualifiedTable} (payload) VALUES ($1)", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = payload });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Connects (PostgreSQL pool, one AMQP connection and confirming channel); <see cref="Start"/> starts the workers.</summary>
    public static async Task<MinimalRelay> CreateAsync(string postgresUrl, string rabbitMQUrl, string routingKey, bool atMostOnce)
    {
        var relay = new MinimalRelay(routingKey, atMostOnce);
        try
        {
            relay._dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(postgresUrl)
            {
                Options = "-c synchronous_commit=off",
                ApplicationName = "Outboxer.Benchmarks minimal relay",
            }.ConnectionString);
            relay._connection = await Broker.Factory(rabbitMQUrl, "Outboxer.Benchmarks minimal relay").CreateConnectionAsync();
            relay._channel = await relay._connection.CreateChannelAsync(new CreateChannelOptions(
                publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true, outstandingPublisherConfirmationsRateLimiter: null));
        }
        catch
        {
            await relay.DisposeAsync();
            throw;
        }

        return relay;
    }

    public void Start()
    {
        var workers = _atMostOnce ? 1 : Workers;
        for (var i = 0; i < workers; i++)
        {
            _loops.Add(Task.Run(() => RunAsync(_stop.Token)));
        }
    }

    /// <summary>Tells the relay that messages were committed (the producers call it right after their commit).</summary>
    public void Wake()
    {
        Interlocked.Increment(ref _generation);
        Interlocked.Exchange(ref _signal, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    private async Task WaitForWakeAsync(long generation, CancellationToken cancellationToken)
    {
        var signal = Volatile.Read(ref _signal);
        if (Interlocked.Read(ref _generation) != generation)
        {
            return;
        }

        try
        {
            await signal.Task.WaitAsync(s_poll, cancellationToken);
        }
        catch (TimeoutException)
        {
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource!.OpenConnectionAsync(cancellationToken);
        await using var claim = new NpgsqlCommand(
            _atMostOnce
                ? $"""
                  UPDATE {QualifiedTable} AS m SET dispatched = true
                  FROM (SELECT id FROM {QualifiedTable} WHERE NOT dispatched ORDER BY id LIMIT {BatchSize} FOR UPDATE SKIP LOCKED) AS c
                  WHERE m.id = c.id
                  RETURNING m.id, m.payload
                  """
                : $"SELECT id, payload FROM {QualifiedTable} WHERE NOT dispatched ORDER BY id LIMIT {BatchSize} FOR UPDATE SKIP LOCKED",
            connection);
        await claim.PrepareAsync(cancellationToken);
        await using var mark = new NpgsqlCommand($"UPDATE {QualifiedTable} SET dispatched = true WHERE id = ANY($1)", connection);
        var ids = new NpgsqlParameter<long[]> { TypedValue = [] };
        mark.Parameters.Add(ids);
        await mark.PrepareAsync(cancellationToken);

        var rows = new List<(long Id, byte[] Payload)>(BatchSize);
        var publishes = new List<Task<bool>>(BatchSize);
        while (!cancellationToken.IsCancellationRequested)
        {
            var generation = Interlocked.Read(ref _generation);
            try
            {
                rows.Clear();
                publishes.Clear();
                if (_atMostOnce)
                {
                    // Mark first (autocommit), publish after: a crash in between loses the batch.
                    await ReadAsync(claim, rows, cancellationToken);
                    foreach (var (id, payload) in rows)
                    {
                        await _slots.WaitAsync(cancellationToken);
                        _ = PublishAsync(id, payload);
                    }
                }
                else
                {
                    await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
                    claim.Transaction = transaction;
                    mark.Transaction = transaction;
                    await ReadAsync(claim, rows, cancellationToken);
                    if (rows.Count > 0)
                    {
                        foreach (var (id, payload) in rows)
                        {
                            await _slots.WaitAsync(cancellationToken);
                            publishes.Add(PublishAsync(id, payload));
                        }

                        await Task.WhenAll(publishes);
                        var confirmed = new List<long>(rows.Count);
                        for (var i = 0; i < rows.Count; i++)
                        {
                            if (publishes[i].Result)
                            {
                                confirmed.Add(rows[i].Id);
                            }
                        }

                        ids.TypedValue = [.. confirmed];
                        await mark.ExecuteNonQueryAsync(cancellationToken);
                    }

                    await transaction.CommitAsync(cancellationToken);
                }

                Interlocked.Increment(ref _batches);
                if (rows.Count == 0)
                {
                    Interlocked.Increment(ref _emptyClaims);
                }

                if (rows.Count < BatchSize)
                {
                    await WaitForWakeAsync(generation, cancellationToken);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
            {
                Console.Error.WriteLine($"[bench] minimal relay: batch failed, retrying: {ex.GetType().Name}: {ex.Message}");
                await Task.Delay(100, CancellationToken.None);
            }
        }
    }

    private static async Task ReadAsync(NpgsqlCommand claim, List<(long Id, byte[] Payload)> rows, CancellationToken cancellationToken)
    {
        await using var reader = await claim.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add((reader.GetInt64(0), reader.GetFieldValue<byte[]>(1)));
        }
    }

    /// <summary>Publishes one message and waits for its confirm (RabbitMQ.Client's tracking throws on a nack or a return).</summary>
    private async Task<bool> PublishAsync(long id, byte[] payload)
    {
        try
        {
            var properties = new BasicProperties
            {
                ContentType = "application/octet-stream",
                DeliveryMode = DeliveryModes.Persistent,
                MessageId = id.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Timestamp = new AmqpTimestamp(TimeProvider.System.GetUtcNow().ToUnixTimeSeconds()),
            };
            await _channel!.BasicPublishAsync(Payloads.Exchange, _routingKey, mandatory: true, properties, payload);
            return true;
        }
        catch (Exception ex)
        {
            if (Interlocked.Increment(ref _publishFailures) == 1)
            {
                Console.Error.WriteLine($"[bench] minimal relay: publish of row {id} failed: {ex.GetType().Name}: {ex.Message}");
            }

            return false;
        }
        finally
        {
            _slots.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        foreach (var loop in _loops)
        {
            await loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (loop.IsFaulted)
            {
                Console.Error.WriteLine($"[bench] minimal relay worker failed: {loop.Exception!.GetBaseException()}");
            }
        }

        // Publishes of the at-most-once loop still awaiting their confirm.
        var deadline = TimeProvider.System.GetTimestamp() + (10 * TimeProvider.System.TimestampFrequency);
        while (_slots.CurrentCount < InFlight && TimeProvider.System.GetTimestamp() < deadline)
        {
            await Task.Delay(10);
        }

        if (_channel is not null)
        {
            await _channel.CloseAsync();
        }

        if (_connection is not null)
        {
            await _connection.CloseAsync();
            _connection.Dispose();
        }

        if (_dataSource is not null)
        {
            await _dataSource.DisposeAsync();
        }

        _stop.Dispose();
    }
}
