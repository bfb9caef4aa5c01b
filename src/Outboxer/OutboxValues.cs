using System.Globalization;

namespace Outboxer;

/// <summary>
/// String-keyed values stored as JSON with a message: its <see cref="OutboxMessage.Options"/> and
/// <see cref="OutboxMessage.Headers"/>. The counterpart of the Go outboxer's <c>DynamicValues</c>.
/// </summary>
/// <remarks>
/// Values may be <see langword="null"/>, <see cref="string"/>, <see cref="bool"/>, any integer type, <see cref="float"/>,
/// <see cref="double"/>, <see cref="decimal"/>, <see cref="Guid"/>, <see cref="DateTime"/>, <see cref="DateTimeOffset"/>,
/// lists of those, or nested string-keyed dictionaries. Any other type is rejected when the message is enqueued,
/// before anything is written. Values read back from the database are <see cref="string"/>, <see cref="long"/>,
/// <see cref="double"/>, <see cref="bool"/>, <see langword="null"/>, <see cref="List{T}"/> of <see cref="object"/>,
/// or <see cref="Dictionary{TKey, TValue}"/> of <see cref="string"/> and <see cref="object"/>.
/// The typed getters accept every representation of a value that means the same thing (a whole <see cref="double"/>
/// is a valid integer; the string <c>"true"</c> is a valid boolean), so options survive the round trip.
/// </remarks>
public sealed partial class OutboxValues : Dictionary<string, object?>
{
    /// <summary>Initializes a new, empty set of values with ordinal key comparison.</summary>
    public OutboxValues()
        : base(StringComparer.Ordinal)
    {
    }

    /// <summary>Gets the value of <paramref name="key"/> as a string, or <paramref name="defaultValue"/> when absent or null.</summary>
    /// <param name="key">The key to read.</param>
    /// <param name="defaultValue">The value returned when the key is absent or its value is <see langword="null"/>.</param>
    /// <returns>The string value.</returns>
    /// <exception cref="OutboxException">The value is not a string, number or boolean.</exception>
    public string? GetString(string key, string? defaultValue = null)
    {
        if (!TryGetValue(key, out var value) || value is null)
        {
            return defaultValue;
        }

        return value switch
        {
            string s => s,
            bool b => b ? "true" : "false",
            IConvertible c when value is not DateTime => Convert.ToString(c, CultureInfo.InvariantCulture),
            Guid g => g.ToString(),
            DateTimeOffset d => d.ToString("O", CultureInfo.InvariantCulture),
            DateTime d => d.ToString("O", CultureInfo.InvariantCulture),
            _ => throw WrongType(key, value, "a string"),
        };
    }

    /// <summary>Gets the value of <paramref name="key"/> as a boolean, or <paramref name="defaultValue"/> when absent or null.</summary>
    /// <param name="key">The key to read.</param>
    /// <param name="defaultValue">The value returned when the key is absent or its value is <see langword="null"/>.</param>
    /// <returns>The boolean value.</returns>
    /// <exception cref="OutboxException">The value is not a boolean or the string <c>true</c> or <c>false</c>.</exception>
    public bool GetBoolean(string key, bool defaultValue)
    {
        if (!TryGetValue(key, out var value) || value is null)
        {
            return defaultValue;
        }

        return value switch
        {
            bool b => b,
            string s when bool.TryParse(s, out var parsed) => parsed,
            _ => throw WrongType(key, value, "a boolean"),
        };
    }

    /// <summary>Gets the value of <paramref name="key"/> as a 64-bit integer, or <paramref name="defaultValue"/> when absent or null.</summary>
    /// <param name="key">The key to read.</param>
    /// <param name="defaultValue">The value returned when the key is absent or its value is <see langword="null"/>.</param>
    /// <returns>The integer value.</returns>
    /// <exception cref="OutboxException">The value is not a whole number (or a string holding one) within range.</exception>
    public long GetInt64(string key, long defaultValue)
    {
        if (!TryGetValue(key, out var value) || value is null)
        {
            return defaultValue;
        }

        switch (value)
        {
            case long l: return l;
            case int i: return i;
            case short s: return s;
            case sbyte sb: return sb;
            case byte b: return b;
            case ushort us: return us;
            case uint ui: return ui;
            case ulong ul when ul <= long.MaxValue: return (long)ul;
            case double d when double.IsInteger(d) && d >= long.MinValue && d <= long.MaxValue: return (long)d;
            case float f when float.IsInteger(f) && f >= long.MinValue && f <= long.MaxValue: return (long)f;
            case decimal m when decimal.IsInteger(m) && m >= long.MinValue && m <= long.MaxValue: return (long)m;
            case string str when long.TryParse(str, NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed): return parsed;
            default: throw WrongType(key, value, "a whole number");
        }
    }

    /// <summary>Gets the value of <paramref name="key"/> as a 32-bit integer, or <paramref name="defaultValue"/> when absent or null.</summary>
    /// <param name="key">The key to read.</param>
    /// <param name="defaultValue">The value returned when the key is absent or its value is <see langword="null"/>.</param>
    /// <returns>The integer value.</returns>
    /// <exception cref="OutboxException">The value is not a whole number within the range of <see cref="int"/>.</exception>
    public int GetInt32(string key, int defaultValue)
    {
        var value = GetInt64(key, defaultValue);
        if (value is < int.MinValue or > int.MaxValue)
        {
            throw WrongType(key, value, "a 32-bit whole number");
        }

        return (int)value;
    }

    private static OutboxException WrongType(string key, object value, string expected) =>
        new($"The value of '{key}' must be {expected}, but it is {value.GetType().Name} '{Convert.ToString(value, CultureInfo.InvariantCulture)}'.", isTransient: false);
}
