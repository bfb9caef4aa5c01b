using System.Buffers;
using System.Collections;
using System.Text;
using System.Text.Json;

namespace Outboxer;

public sealed partial class OutboxValues
{
    /// <summary>
    /// Writes the values as a JSON object, or returns <see langword="null"/> when there are none
    /// (stored as SQL <c>NULL</c>, as the Go outboxer does).
    /// </summary>
    /// <returns>The JSON text, or <see langword="null"/> when the set is empty.</returns>
    /// <exception cref="ArgumentException">A value has a type that cannot be stored; the message names its key and type.</exception>
    public string? ToJson()
    {
        if (Count == 0)
        {
            return null;
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            WriteObject(writer, this, path: null);
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Reads values written by <see cref="ToJson"/>.</summary>
    /// <param name="json">A JSON object, or <see langword="null"/> or empty for no values.</param>
    /// <returns>The values; empty when <paramref name="json"/> is <see langword="null"/> or empty.</returns>
    /// <exception cref="FormatException"><paramref name="json"/> is not a JSON object.</exception>
    public static OutboxValues FromJson(string? json)
    {
        var values = new OutboxValues();
        if (string.IsNullOrEmpty(json))
        {
            return values;
        }

        try
        {
            using var document = JsonDocument.Parse(json);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException($"Outbox values must be a JSON object, but the stored value is a {document.RootElement.ValueKind}.");
            }

            foreach (var property in document.RootElement.EnumerateObject())
            {
                values[property.Name] = ToClr(property.Value);
            }
        }
        catch (JsonException ex)
        {
            throw new FormatException($"Outbox values are not valid JSON: {ex.Message}", ex);
        }

        return values;
    }

    private static object? ToClr(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => element.GetString(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.Number => element.TryGetInt64(out var l) ? (object)l : element.GetDouble(),
        JsonValueKind.Array => element.EnumerateArray().Select(ToClr).ToList(),
        JsonValueKind.Object => element.EnumerateObject().ToDictionary(p => p.Name, p => ToClr(p.Value), StringComparer.Ordinal),
        _ => throw new FormatException($"Unexpected JSON value kind {element.ValueKind}."),
    };

    private static void WriteObject(Utf8JsonWriter writer, IEnumerable<KeyValuePair<string, object?>> values, string? path)
    {
        writer.WriteStartObject();
        foreach (var (key, value) in values)
        {
            ArgumentNullException.ThrowIfNull(key);
            writer.WritePropertyName(key);
            WriteValue(writer, value, path is null ? key : $"{path}.{key}");
        }

        writer.WriteEndObject();
    }

    private static void WriteValue(Utf8JsonWriter writer, object? value, string path)
    {
        switch (value)
        {
            case null: writer.WriteNullValue(); break;
            case string s: writer.WriteStringValue(s); break;
            case bool b: writer.WriteBooleanValue(b); break;
            case long l: writer.WriteNumberValue(l); break;
            case int i: writer.WriteNumberValue(i); break;
            case short s: writer.WriteNumberValue(s); break;
            case sbyte sb: writer.WriteNumberValue(sb); break;
            case byte b: writer.WriteNumberValue(b); break;
            case ushort us: writer.WriteNumberValue(us); break;
            case uint ui: writer.WriteNumberValue(ui); break;
            case ulong ul: writer.WriteNumberValue(ul); break;
            case double d when double.IsFinite(d): writer.WriteNumberValue(d); break;
            case float f when float.IsFinite(f): writer.WriteNumberValue(f); break;
            case decimal m: writer.WriteNumberValue(m); break;
            case Guid g: writer.WriteStringValue(g); break;
            case DateTimeOffset dto: writer.WriteStringValue(dto); break;
            case DateTime dt: writer.WriteStringValue(dt); break;
            case IEnumerable<KeyValuePair<string, object?>> map: WriteObject(writer, map, path); break;
            case IDictionary dictionary: WriteObject(writer, ToPairs(dictionary, path), path); break;
            case IEnumerable list when value is not byte[]:
                writer.WriteStartArray();
                var index = 0;
                foreach (var item in list)
                {
                    WriteValue(writer, item, $"{path}[{index++}]");
                }

                writer.WriteEndArray();
                break;
            default:
                throw new ArgumentException(
                    $"The value of '{path}' has type {value.GetType().FullName}, which cannot be stored with an outbox message. " +
                    "Use null, a string, a boolean, a finite number, a Guid, a date, a list or a string-keyed dictionary of those.",
                    path);
        }
    }

    private static IEnumerable<KeyValuePair<string, object?>> ToPairs(IDictionary dictionary, string path)
    {
        foreach (DictionaryEntry entry in dictionary)
        {
            if (entry.Key is not string key)
            {
                throw new ArgumentException($"The value of '{path}' is a dictionary with a {entry.Key.GetType().Name} key; only string keys can be stored.", path);
            }

            yield return new KeyValuePair<string, object?>(key, entry.Value);
        }
    }
}
