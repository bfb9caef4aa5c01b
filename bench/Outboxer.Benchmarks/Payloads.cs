using System.Buffers.Binary;
using Outboxer.RabbitMQ;

namespace Outboxer.Benchmarks;

/// <summary>
/// The benchmark's messages: 256-byte payloads routed to one durable queue through a topic exchange.
/// </summary>
/// <remarks>
/// Payload layout (big-endian, so that SQL <c>int8send</c> writes the same bytes): bytes 0-7 the message's sequence number in
/// its workload (0 .. n-1), bytes 8-15 the workload's random tag (the consumer ignores anything else), bytes 16-255 filler
/// (<c>'x'</c>). Latency is not carried in the payload: the producer records the time each sequence number's transaction
/// committed, the consumer the time it received it (see <see cref="ConsumerRun"/>).
/// </remarks>
internal static class Payloads
{
    public const int Size = 256;
    public const int HeaderSize = 16;
    public const byte Filler = (byte)'x';
    public const string Exchange = "outboxer.bench";
    public const string Queue = "outboxer.bench";
    public const string Binding = "bench.#";

    public static string RoutingKey(string workload) => "bench." + workload.ToLowerInvariant();

    public static byte[] Body(long sequence, long tag)
    {
        var payload = new byte[Size];
        BinaryPrimitives.WriteInt64BigEndian(payload, sequence);
        BinaryPrimitives.WriteInt64BigEndian(payload.AsSpan(8), tag);
        payload.AsSpan(HeaderSize).Fill(Filler);
        return payload;
    }

    public static OutboxMessage Message(long sequence, long tag, string routingKey)
    {
        var message = new OutboxMessage(Body(sequence, tag));
        message.Options[RabbitMQOptionKeys.ExchangeName] = Exchange;
        message.Options[RabbitMQOptionKeys.RoutingKey] = routingKey;
        return message;
    }

    /// <summary>The options JSON exactly as the library stores it for a benchmark message (used by the SQL backlog fill).</summary>
    public static string OptionsJson(string routingKey) => Message(0, 0, routingKey).Options.ToJson()!;

    public static long NewTag() => Random.Shared.NextInt64(1, long.MaxValue);
}
