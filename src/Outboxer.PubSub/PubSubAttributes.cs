using System.Globalization;
using System.Text;
using System.Text.Json;
using Google.Protobuf.Collections;

namespace Outboxer.PubSub;

/// <summary>
/// Converts <see cref="OutboxMessage.Headers"/> to Pub/Sub attributes (string to string), checking Pub/Sub's attribute limits so that
/// one bad header fails its message alone instead of the whole publish request.
/// </summary>
/// <remarks>
/// Strings are sent as they are; numbers and booleans as invariant text (<c>42</c>, <c>0.25</c>, <c>true</c>); <see cref="Guid"/>,
/// <see cref="DateTime"/> and <see cref="DateTimeOffset"/> in their round-trip format; <see langword="null"/> as an empty string;
/// lists and dictionaries as JSON text. The message id is added as <see cref="MessageId"/>.
/// </remarks>
internal static class PubSubAttributes
{
    /// <summary>The attribute that carries <see cref="OutboxMessage.MessageId"/>; Pub/Sub assigns its own <c>message_id</c>.</summary>
    public const string MessageId = "message-id";

    /// <summary>Pub/Sub's limit of attributes per message.</summary>
    public const int MaxAttributes = 100;

    /// <summary>Pub/Sub's limit of an attribute key, in UTF-8 bytes.</summary>
    public const int MaxKeyBytes = 256;

    /// <summary>Pub/Sub's limit of an attribute value, in UTF-8 bytes.</summary>
    public const int MaxValueBytes = 1024;

    public static void Add(MapField<string, string> attributes, OutboxMessage message)
    {
        foreach (var (key, value) in message.Headers)
        {
            CheckKey(key);
            var text = ToText(key, value);
            if (Encoding.UTF8.GetByteCount(text) > MaxValueBytes)
            {
                throw new OutboxException(
                    $"The header '{key}' is {Encoding.UTF8.GetByteCount(text)} bytes as a Pub/Sub attribute value; Pub/Sub allows at most {MaxValueBytes} bytes. Put large values in the payload.",
                    isTransient: false);
            }

            attributes[key] = text;
        }

        if (message.MessageId != Guid.Empty)
        {
            attributes[MessageId] = message.MessageId.ToString();
        }

        if (attributes.Count > MaxAttributes)
        {
            throw new OutboxException(
                $"The message has {attributes.Count} Pub/Sub attributes (its headers and '{MessageId}'); Pub/Sub allows at most {MaxAttributes}.",
                isTransient: false);
        }
    }

    private static void CheckKey(string key)
    {
        if (key.Length == 0)
        {
            throw new OutboxException("A header has an empty name, which Pub/Sub does not accept as an attribute key.", isTransient: false);
        }

        if (key.StartsWith("goog", StringComparison.OrdinalIgnoreCase))
        {
            throw new OutboxException($"The header '{key}' starts with 'goog', which Pub/Sub reserves for its own attributes.", isTransient: false);
        }

        if (Encoding.UTF8.GetByteCount(key) > MaxKeyBytes)
        {
            throw new OutboxException($"The header name '{key}' is longer than {MaxKeyBytes} bytes in UTF-8, the limit of a Pub/Sub attribute key.", isTransient: false);
        }
    }

    private static string ToText(string key, object? value) => value switch
    {
        null => string.Empty,
        string s => s,
        bool b => b ? "true" : "false",
        long or int or short or sbyte or byte or ulong or uint or ushort or double or float or decimal => Convert.ToString(value, CultureInfo.InvariantCulture)!,
        Guid g => g.ToString(),
        DateTimeOffset d => d.ToString("O", CultureInfo.InvariantCulture),
        DateTime d => d.ToString("O", CultureInfo.InvariantCulture),
        _ => ToJson(key, value),
    };

    /// <summary>Writes a list or dictionary as JSON text, with the same rules (and errors) as the outbox uses to store headers.</summary>
    private static string ToJson(string key, object value)
    {
        string json;
        try
        {
            json = new OutboxValues { [key] = value }.ToJson()!;
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
        {
            throw new OutboxException(
                $"The header '{key}' is a {value.GetType().Name}, which a Pub/Sub attribute cannot carry: {ex.Message}",
                isTransient: false,
                ex);
        }

        using var document = JsonDocument.Parse(json);
        foreach (var property in document.RootElement.EnumerateObject())
        {
            return property.Value.GetRawText();
        }

        throw new InvalidOperationException("The header did not serialize.");
    }
}
