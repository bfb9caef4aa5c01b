using System.Buffers.Binary;
using System.Text;
using Outboxer.Providers;

namespace Outboxer.PostgreSql;

/// <summary>
/// The bytes an outbox message is written as in the write-ahead log (the content of its logical decoding message), and back.
/// </summary>
/// <remarks>
/// <para>Version 1, all integers big-endian:</para>
/// <code>
/// byte      version (1)
/// byte      flags: 1 ordering key, 2 destination, 4 options, 8 headers
/// 16 bytes  message id (RFC 4122 byte order)
/// int64     created at, UTC ticks (100 ns since 0001-01-01)
/// then, for each flag set, in flag order: int32 length + UTF-8 text (options and headers as the table stores' JSON)
/// the rest  the payload, unchanged
/// </code>
/// <para>
/// The trace context travels in the headers (<c>traceparent</c>, <c>tracestate</c>), as in a table. A reader refuses a version it does
/// not know, so a relay older than its writers stops instead of publishing what it cannot read; versions only ever get added.
/// </para>
/// </remarks>
internal static class LogEnvelope
{
    public const byte Version = 1;

    private const byte HasOrderingKey = 1;
    private const byte HasDestination = 2;
    private const byte HasOptions = 4;
    private const byte HasHeaders = 8;
    private const int FixedLength = 1 + 1 + 16 + 8;

    private static readonly UTF8Encoding s_utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Writes a validated message.</summary>
    public static byte[] Write(SerializedMessage row)
    {
        var message = row.Message;
        var length = FixedLength + message.Payload.Length;
        byte flags = 0;
        length += Measure(message.OrderingKey, HasOrderingKey, ref flags);
        length += Measure(message.Destination, HasDestination, ref flags);
        length += Measure(row.OptionsJson, HasOptions, ref flags);
        length += Measure(row.HeadersJson, HasHeaders, ref flags);

        var bytes = new byte[length];
        var span = bytes.AsSpan();
        span[0] = Version;
        span[1] = flags;
        message.MessageId.TryWriteBytes(span[2..18], bigEndian: true, out _);
        BinaryPrimitives.WriteInt64BigEndian(span[18..], message.CreatedAt.UtcTicks);
        var at = FixedLength;
        at += WriteText(span[at..], message.OrderingKey);
        at += WriteText(span[at..], message.Destination);
        at += WriteText(span[at..], row.OptionsJson);
        at += WriteText(span[at..], row.HeadersJson);
        message.Payload.CopyTo(span[at..]);
        return bytes;
    }

    /// <summary>Reads an envelope back into a message whose <see cref="OutboxMessage.Id"/> is <paramref name="id"/>.</summary>
    /// <exception cref="FormatException">The bytes are not an envelope of a known version.</exception>
    public static OutboxMessage Read(ReadOnlySpan<byte> bytes, long id)
    {
        if (bytes.Length < FixedLength)
        {
            throw new FormatException($"An outbox log message has {bytes.Length} bytes, fewer than the {FixedLength} of its fixed fields.");
        }

        if (bytes[0] != Version)
        {
            throw new FormatException($"An outbox log message has envelope version {bytes[0]}; this Outboxer reads version {Version}. Upgrade the relay.");
        }

        var flags = bytes[1];
        var messageId = new Guid(bytes[2..18], bigEndian: true);
        var created = new DateTimeOffset(BinaryPrimitives.ReadInt64BigEndian(bytes[18..]), TimeSpan.Zero);
        var at = FixedLength;
        var key = ReadText(bytes, ref at, flags, HasOrderingKey);
        var destination = ReadText(bytes, ref at, flags, HasDestination);
        var options = ReadText(bytes, ref at, flags, HasOptions);
        var headers = ReadText(bytes, ref at, flags, HasHeaders);
        var message = new OutboxMessage(bytes[at..].ToArray())
        {
            Id = id,
            MessageId = messageId,
            CreatedAt = created,
            OrderingKey = key,
            Destination = destination,
            Attempts = 0,
        };
        Fill(message.Options, options);
        Fill(message.Headers, headers);
        return message;
    }

    /// <summary>Reads only the message id (for the dead letters of an envelope that cannot be read whole), or <see cref="Guid.Empty"/>.</summary>
    public static Guid PeekMessageId(ReadOnlySpan<byte> bytes) => bytes.Length >= 18 ? new Guid(bytes[2..18], bigEndian: true) : Guid.Empty;

    private static void Fill(OutboxValues values, string? json)
    {
        if (json is not null)
        {
            foreach (var (key, value) in OutboxValues.FromJson(json))
            {
                values[key] = value;
            }
        }
    }

    private static int Measure(string? text, byte flag, ref byte flags)
    {
        if (text is null)
        {
            return 0;
        }

        flags |= flag;
        return 4 + s_utf8.GetByteCount(text);
    }

    private static int WriteText(Span<byte> span, string? text)
    {
        if (text is null)
        {
            return 0;
        }

        var written = s_utf8.GetBytes(text, span[4..]);
        BinaryPrimitives.WriteInt32BigEndian(span, written);
        return 4 + written;
    }

    private static string? ReadText(ReadOnlySpan<byte> bytes, ref int at, byte flags, byte flag)
    {
        if ((flags & flag) == 0)
        {
            return null;
        }

        if (bytes.Length - at < 4)
        {
            throw new FormatException("An outbox log message ends inside its fields.");
        }

        var length = BinaryPrimitives.ReadInt32BigEndian(bytes[at..]);
        if (length < 0 || length > bytes.Length - at - 4)
        {
            throw new FormatException($"An outbox log message has a field of {length} bytes where {bytes.Length - at - 4} remain.");
        }

        var text = s_utf8.GetString(bytes.Slice(at + 4, length));
        at += 4 + length;
        return text;
    }
}
