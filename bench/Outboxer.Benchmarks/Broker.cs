using System.Buffers.Binary;
using System.Diagnostics;
using RabbitMQ.Client;

namespace Outboxer.Benchmarks;

/// <summary>
/// The RabbitMQ side of the benchmark: declares the topology (a durable topic exchange, a durable queue bound to it), purges the
/// queue between workloads, and keeps one consumer attached that records when each message arrived.
/// </summary>
internal sealed class Broker : IAsyncDisposable
{
    private readonly IConnection _connection;
    private readonly IChannel _admin;
    private readonly IChannel _consuming;
    private readonly BenchConsumer _consumer;

    private Broker(IConnection connection, IChannel admin, IChannel consuming, BenchConsumer consumer)
    {
        _connection = connection;
        _admin = admin;
        _consuming = consuming;
        _consumer = consumer;
    }

    public static ConnectionFactory Factory(string uri, string name) => new()
    {
        Uri = new Uri(uri),
        ClientProvidedName = name,
        ConsumerDispatchConcurrency = 1,
    };

    public static async Task<Broker> ConnectAsync(string uri)
    {
        var connection = await Factory(uri, "Outboxer.Benchmarks consumer").CreateConnectionAsync();
        var admin = await connection.CreateChannelAsync();
        await admin.ExchangeDeclareAsync(Payloads.Exchange, ExchangeType.Topic, durable: true, autoDelete: false);
        await admin.QueueDeclareAsync(Payloads.Queue, durable: true, exclusive: false, autoDelete: false);
        await admin.QueueBindAsync(Payloads.Queue, Payloads.Exchange, Payloads.Binding);
        await admin.QueuePurgeAsync(Payloads.Queue);

        // Automatic acknowledgement: the broker pushes as fast as the consumer reads (prefetch does not apply); nothing to ack.
        var consuming = await connection.CreateChannelAsync();
        var consumer = new BenchConsumer(consuming);
        await consuming.BasicConsumeAsync(Payloads.Queue, autoAck: true, consumer);
        return new Broker(connection, admin, consuming, consumer);
    }

    /// <summary>Deletes what is left in the queue, and starts counting a new workload's messages.</summary>
    public async Task<ConsumerRun> StartRunAsync(int expected, long tag)
    {
        _consumer.Current = null;
        await _admin.QueuePurgeAsync(Payloads.Queue);
        var run = new ConsumerRun(expected, tag);
        _consumer.Current = run;
        return run;
    }

    public void EndRun() => _consumer.Current = null;

    public async ValueTask DisposeAsync()
    {
        await _consuming.CloseAsync();
        await _admin.CloseAsync();
        await _connection.CloseAsync();
        _connection.Dispose();
    }

    /// <summary>Called by RabbitMQ.Client on one thread (ConsumerDispatchConcurrency = 1), so the run needs no locks.</summary>
    private sealed class BenchConsumer(IChannel channel) : AsyncDefaultBasicConsumer(channel)
    {
        public volatile ConsumerRun? Current;

        public override Task HandleBasicDeliverAsync(
            string consumerTag,
            ulong deliveryTag,
            bool redelivered,
            string exchange,
            string routingKey,
            IReadOnlyBasicProperties properties,
            ReadOnlyMemory<byte> body,
            CancellationToken cancellationToken = default)
        {
            var now = Stopwatch.GetTimestamp();
            Current?.OnMessage(body.Span, now);
            return Task.CompletedTask;
        }
    }
}

/// <summary>One workload's view of the consumer: which sequence numbers arrived, when, and how many were duplicates or strays.</summary>
internal sealed class ConsumerRun(int expected, long tag)
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _distinct;

    /// <summary>Stopwatch timestamp of the first receipt of each sequence number; 0 while it has not arrived.</summary>
    public long[] Received { get; } = new long[expected];

    public int Expected => expected;

    public int Distinct => Volatile.Read(ref _distinct);

    public int Duplicates { get; private set; }

    public int Stray { get; private set; }

    public long FirstTimestamp { get; private set; }

    public long LastTimestamp { get; private set; }

    public Task Done => _done.Task;

    public void OnMessage(ReadOnlySpan<byte> body, long now)
    {
        if (body.Length < Payloads.HeaderSize || BinaryPrimitives.ReadInt64BigEndian(body[8..]) != tag)
        {
            Stray++;
            return;
        }

        var sequence = BinaryPrimitives.ReadInt64BigEndian(body);
        if ((ulong)sequence >= (ulong)Received.Length)
        {
            Stray++;
            return;
        }

        if (Received[sequence] != 0)
        {
            Duplicates++;
            return;
        }

        Received[sequence] = now;
        if (FirstTimestamp == 0)
        {
            FirstTimestamp = now;
        }

        LastTimestamp = now;
        if (Interlocked.Increment(ref _distinct) == Received.Length)
        {
            _done.TrySetResult();
        }
    }

    /// <summary>Waits until every message arrived or <paramref name="timeout"/> passed; returns whether all arrived.</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout)
    {
        try
        {
            await Done.WaitAsync(timeout);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }
}
