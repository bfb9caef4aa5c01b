using System.Globalization;
using System.Text;
using System.Text.Json;
using NATS.Client.Core;

namespace Outboxer.Nats;

/// <summary>
/// Converts <see cref="OutboxMessage.Headers"/> to NATS headers, whose values are text, so that no header can fail the client half-way
/// through a publish.
/// </summary>
/// <remarks>
/// Strings are sent as they are, booleans as <c>true</c>/<c>false</c>, numbers in invariant culture (doubles round-trip),
/// <see cref="Guid"/> and dates in round-trip format, <see langword="null"/> as an empty value, and lists and dictionaries as their
/// JSON. A header name must be printable ASCII without <c>:</c> and spaces; a value must not contain CR or LF; and where the connection
/// encodes headers as ASCII (the NATS client's default) neither may contain other characters. Anything else fails with a
/// non-transient <see cref="OutboxException"/> that names the header.
/// </remarks>
internal static class NatsHeaderValues
{
    /// <summary>The header JetStream deduplicates by.</summary>
    public const string MsgId = "Nats-Msg-Id";

    /// <summary>The header JetStream checks the storing stream's name against.</summary>
    public const string ExpectedStream = "Nats-Expected-Stream";

    public static NatsHeaders Convert(OutboxMessage message, string? expectedStream, bool asciiOnly)
    {
        var headers = new NatsHeaders();
        foreach (var (name, value) in message.Headers)
        {
            CheckName(name);
            var text = ToText(name, value);
            if (text.Contains('\r', StringComparison.Ordinal) || text.Contains('\n', StringComparison.Ordinal))
            {
                throw new OutboxException($"The value of header '{name}' contains a line break, which a NATS header cannot carry.", isTransient: false);
            }

            if (asciiOnly && !Ascii.IsValid(text))
            {
                throw new OutboxException(
                    $"The value of header '{name}' has non-ASCII characters, which this NATS connection would replace with '?' (its HeaderEncoding is ASCII). " +
                    "Create the connection with NatsOpts.HeaderEncoding = Encoding.UTF8, or let the publisher create it.",
                    isTransient: false);
            }

            headers[name] = text;
        }

        if (message.MessageId != Guid.Empty)
        {
            headers[MsgId] = message.MessageId.ToString();
        }

        if (expectedStream is not null)
        {
            headers[ExpectedStream] = expectedStream;
        }

        return headers;
    }

    private static void CheckName(string name)
    {
        if (name.Length == 0)
        {
            throw new OutboxException("A header has an empty name, which a NATS header cannot have.", isTransient: false);
        }

        foreach (var c in name)
        {
            if (c is <= ' ' or > '~' or ':')
            {
                throw new OutboxException(
                    $"The header name '{name}' has a character a NATS header name cannot have: only printable ASCII without ':' and spaces.",
                    isTransient: false);
            }
        }
    }

    private static string ToText(string name, object? value)
    {
        switch (value)
        {
            case null:
                return string.Empty;
            case string s:
                return s;
            case bool b:
                return b ? "true" : "false";
            case double d:
                return d.ToString("R", CultureInfo.InvariantCulture);
            case float f:
                return f.ToString("R", CultureInfo.InvariantCulture);
            case long or int or short or sbyte or byte or ulong or uint or ushort or decimal:
                return ((IFormattable)value).ToString(null, CultureInfo.InvariantCulture);
            case Guid g:
                return g.ToString();
            case DateTimeOffset dto:
                return dto.ToString("O", CultureInfo.InvariantCulture);
            case DateTime dt:
                return dt.ToString("O", CultureInfo.InvariantCulture);
            default:
                return ToJson(name, value);
        }
    }

    private static string ToJson(string name, object value)
    {
        // OutboxValues writes the same JSON it stores, and rejects what it cannot store; wrap the value in a one-key object.
        string json;
        try
        {
            json = new OutboxValues { ["v"] = value }.ToJson()!;
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or JsonException or NotSupportedException)
        {
            throw new OutboxException(
                $"The header '{name}' is a {value.GetType().Name}, which cannot be sent as a NATS header; use a string, number, boolean, Guid, date, " +
                $"list or string-keyed dictionary. {ex.Message}",
                isTransient: false,
                ex);
        }

        const string prefix = "{\"v\":";
        return json.Substring(prefix.Length, json.Length - prefix.Length - 1);
    }
}
