using System.Collections;
using System.Globalization;
using System.Text;

namespace Outboxer.RabbitMQ;

/// <summary>
/// Converts <see cref="OutboxMessage.Headers"/> to values an AMQP field table carries, so that no header can fail the client's
/// serializer half-way through a publish.
/// </summary>
/// <remarks>
/// Strings, booleans, 64-bit integers, doubles and nulls are sent as they are; smaller integers widen to <see cref="long"/>;
/// <see cref="float"/> and <see cref="decimal"/> become <see cref="double"/>, as they would after the JSON round trip;
/// <see cref="Guid"/>, <see cref="DateTime"/> and <see cref="DateTimeOffset"/> become strings (round-trip format); lists become
/// AMQP arrays and string-keyed dictionaries nested tables. Anything else, and a key longer than the 255 bytes of an AMQP short
/// string, fails with a non-transient <see cref="OutboxException"/> that names the header.
/// </remarks>
internal static class AmqpHeaders
{
    private const int MaxDepth = 32;

    public static Dictionary<string, object?> Convert(OutboxValues headers)
    {
        // Always a new, writable dictionary: RabbitMQ.Client adds its publish sequence number header to it.
        var table = new Dictionary<string, object?>(headers.Count + 1, StringComparer.Ordinal);
        foreach (var (key, value) in headers)
        {
            CheckKey(key, key);
            table[key] = ConvertValue(value, key, 0);
        }

        return table;
    }

    private static object? ConvertValue(object? value, string path, int depth)
    {
        if (depth > MaxDepth)
        {
            throw new OutboxException($"The header '{path}' is nested more than {MaxDepth} levels deep.", isTransient: false);
        }

        switch (value)
        {
            case null:
            case string:
            case bool:
            case long:
            case double:
                return value;
            case int i: return (long)i;
            case short s: return (long)s;
            case sbyte sb: return (long)sb;
            case byte b: return (long)b;
            case ushort us: return (long)us;
            case uint ui: return (long)ui;
            case ulong ul: return ul <= long.MaxValue ? (long)ul : ul.ToString(CultureInfo.InvariantCulture);
            case float f: return (double)f;
            case decimal m: return (double)m;
            case Guid g: return g.ToString();
            case DateTimeOffset dto: return dto.ToString("O", CultureInfo.InvariantCulture);
            case DateTime dt: return dt.ToString("O", CultureInfo.InvariantCulture);
            case IDictionary<string, object?> dictionary:
                var table = new Dictionary<string, object?>(dictionary.Count, StringComparer.Ordinal);
                foreach (var (key, item) in dictionary)
                {
                    var itemPath = $"{path}.{key}";
                    CheckKey(key, itemPath);
                    table[key] = ConvertValue(item, itemPath, depth + 1);
                }

                return table;
            case IDictionary dictionary:
                var converted = new Dictionary<string, object?>(dictionary.Count, StringComparer.Ordinal);
                foreach (DictionaryEntry entry in dictionary)
                {
                    if (entry.Key is not string key)
                    {
                        throw new OutboxException($"The header '{path}' is a dictionary with {entry.Key.GetType().Name} keys; AMQP tables need string keys.", isTransient: false);
                    }

                    var itemPath = $"{path}.{key}";
                    CheckKey(key, itemPath);
                    converted[key] = ConvertValue(entry.Value, itemPath, depth + 1);
                }

                return converted;
            case IEnumerable list:
                var array = new List<object?>();
                var index = 0;
                foreach (var item in list)
                {
                    array.Add(ConvertValue(item, $"{path}[{index}]", depth + 1));
                    index++;
                }

                return array;
            default:
                throw new OutboxException(
                    $"The header '{path}' is a {value.GetType().Name}, which an AMQP header cannot carry; use a string, number, boolean, list or string-keyed dictionary.",
                    isTransient: false);
        }
    }

    private static void CheckKey(string key, string path)
    {
        if (Encoding.UTF8.GetByteCount(key) > 255)
        {
            throw new OutboxException($"The header name '{path}' is longer than 255 bytes in UTF-8, the limit of an AMQP field name.", isTransient: false);
        }
    }
}
