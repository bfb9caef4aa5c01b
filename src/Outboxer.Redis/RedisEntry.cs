using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;
using StackExchange.Redis;

namespace Outboxer.Redis;

/// <summary>
/// One message as it is appended: its stream, its deduplication key, its trimming and its fields (the layout the README documents).
/// Creating it checks every option and header, so a message that cannot be appended fails before anything is sent.
/// </summary>
internal sealed class RedisEntry
{
    public const string MessageIdField = "message-id";
    public const string PayloadField = "payload";
    public const string CreatedAtField = "created-at";
    public const string OrderingKeyField = "ordering-key";
    public const string HeaderFieldPrefix = "h:";

    private RedisEntry(OutboxMessage message, int index, string stream, string trimKind, string trimOperator, string trimThreshold, RedisValue[] fields, long size)
    {
        Message = message;
        Index = index;
        Stream = stream;
        TrimKind = trimKind;
        TrimOperator = trimOperator;
        TrimThreshold = trimThreshold;
        Fields = fields;
        Size = size;
    }

    public OutboxMessage Message { get; }

    /// <summary>Gets the message's index in the batch.</summary>
    public int Index { get; }

    public string Stream { get; }

    /// <summary>Gets <c>MAXLEN</c>, <c>MINID</c> or empty (no trimming).</summary>
    public string TrimKind { get; }

    /// <summary>Gets <c>~</c> or <c>=</c>.</summary>
    public string TrimOperator { get; }

    public string TrimThreshold { get; }

    /// <summary>Gets the field names and values, alternating.</summary>
    public RedisValue[] Fields { get; }

    /// <summary>Gets the bytes of the field names and values.</summary>
    public long Size { get; }

    public string? OrderingKey => Message.OrderingKey;

    /// <summary>Gets the stream <paramref name="message"/> goes to, or <see langword="null"/> when it names none and there is no default.</summary>
    /// <exception cref="OutboxException">The stream option is of a wrong type or empty.</exception>
    public static string? FindStream(OutboxMessage message, RedisPublisherOptions options)
    {
        var stream = message.Options.GetString(RedisOptionKeys.Stream);
        if (stream is null)
        {
            return options.DefaultStream;
        }

        if (stream.Length == 0)
        {
            throw new OutboxException($"The value of '{RedisOptionKeys.Stream}' must be a stream key, but it is ''.", isTransient: false);
        }

        return stream;
    }

    /// <summary>Reads and checks the message's options and headers.</summary>
    /// <exception cref="OutboxException">An option or header is invalid, or the entry is larger than the limit; not transient.</exception>
    public static RedisEntry Create(OutboxMessage message, int index, RedisPublisherOptions options)
    {
        var stream = FindStream(message, options) ?? throw new OutboxException(
            $"Message {message.MessageId} names no stream: set its '{RedisOptionKeys.Stream}' option or {nameof(RedisPublisherOptions)}.{nameof(RedisPublisherOptions.DefaultStream)}.",
            isTransient: false);

        var (kind, threshold) = ReadTrim(message.Options);
        var approximate = message.Options.GetBoolean(RedisOptionKeys.ApproximateTrim, true);

        var fields = new List<RedisValue>(8 + (2 * message.Headers.Count));
        long size = 0;
        void Add(string name, RedisValue value, long valueBytes)
        {
            fields.Add(name);
            fields.Add(value);
            size += Encoding.UTF8.GetByteCount(name) + valueBytes;
        }

        var id = message.MessageId.ToString();
        Add(MessageIdField, id, id.Length);
        Add(PayloadField, message.Payload, message.Payload.Length);
        var createdAt = message.CreatedAt.ToString("O", CultureInfo.InvariantCulture);
        Add(CreatedAtField, createdAt, createdAt.Length);
        if (!string.IsNullOrEmpty(message.OrderingKey))
        {
            Add(OrderingKeyField, message.OrderingKey, Encoding.UTF8.GetByteCount(message.OrderingKey));
        }

        foreach (var (name, value) in message.Headers)
        {
            var text = HeaderText(name, value);
            Add(HeaderFieldPrefix + name, text, Encoding.UTF8.GetByteCount(text));
        }

        if (size > options.MaxMessageSize)
        {
            throw new OutboxException(
                $"Message {message.MessageId} is {size} bytes as a stream entry (payload, message id and headers), more than " +
                $"{nameof(RedisPublisherOptions)}.{nameof(RedisPublisherOptions.MaxMessageSize)} ({options.MaxMessageSize}); Redis refuses an argument longer than its proto-max-bulk-len.",
                isTransient: false);
        }

        return new RedisEntry(message, index, stream, kind, approximate ? "~" : "=", threshold, [.. fields], size);
    }

    private static (string Kind, string Threshold) ReadTrim(OutboxValues options)
    {
        var hasMaxLength = options.TryGetValue(RedisOptionKeys.MaxLength, out var maxLengthValue) && maxLengthValue is not null;
        var minId = options.GetString(RedisOptionKeys.MinId);
        if (hasMaxLength && minId is not null)
        {
            throw new OutboxException(
                $"The options '{RedisOptionKeys.MaxLength}' and '{RedisOptionKeys.MinId}' cannot both be set: XADD trims by one of them. Remove one.",
                isTransient: false);
        }

        if (hasMaxLength)
        {
            var maxLength = options.GetInt64(RedisOptionKeys.MaxLength, 0);
            if (maxLength < 0)
            {
                throw new OutboxException($"The value of '{RedisOptionKeys.MaxLength}' must be 0 or more, but it is {maxLength}.", isTransient: false);
            }

            return ("MAXLEN", maxLength.ToString(CultureInfo.InvariantCulture));
        }

        if (minId is not null)
        {
            if (!IsStreamId(minId))
            {
                throw new OutboxException(
                    $"The value of '{RedisOptionKeys.MinId}' must be a stream id, <milliseconds> or <milliseconds>-<sequence>, but it is '{minId}'.",
                    isTransient: false);
            }

            return ("MINID", minId);
        }

        return (string.Empty, string.Empty);
    }

    private static bool IsStreamId(string value)
    {
        var dash = value.IndexOf('-', StringComparison.Ordinal);
        var milliseconds = dash < 0 ? value : value[..dash];
        return ulong.TryParse(milliseconds, NumberStyles.None, CultureInfo.InvariantCulture, out _)
            && (dash < 0 || ulong.TryParse(value.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out _));
    }

    /// <summary>A header's value as the text of its field: strings as they are, scalars in invariant form, lists and objects as JSON.</summary>
    private static string HeaderText(string name, object? value)
    {
        switch (value)
        {
            case null: return string.Empty;
            case string s: return s;
            case bool b: return b ? "true" : "false";
            case Guid g: return g.ToString();
            case DateTimeOffset dto: return dto.ToString("O", CultureInfo.InvariantCulture);
            case DateTime dt: return dt.ToString("O", CultureInfo.InvariantCulture);
            case double d: return d.ToString("R", CultureInfo.InvariantCulture);
            case float f: return f.ToString("R", CultureInfo.InvariantCulture);
            case IConvertible c when value is not char: return Convert.ToString(c, CultureInfo.InvariantCulture) ?? string.Empty;
            case IDictionary or IEnumerable:
                try
                {
                    // The core's JSON writer keeps the types the outbox stores; the value is read back out of a one-key object.
                    var json = new OutboxValues { ["v"] = value }.ToJson()!;
                    using var document = JsonDocument.Parse(json);
                    return document.RootElement.GetProperty("v").GetRawText();
                }
                catch (ArgumentException ex)
                {
                    throw new OutboxException($"The header '{name}' cannot be written as a stream field: {ex.Message}", isTransient: false, ex);
                }

            default:
                throw new OutboxException(
                    $"The header '{name}' is a {value.GetType().Name}, which a stream field cannot carry; use a string, number, boolean, list or string-keyed dictionary.",
                    isTransient: false);
        }
    }
}
