using System.Globalization;
using System.Text;
using System.Text.Json;
using Amazon.SQS.Model;

namespace Outboxer.Sqs;

/// <summary>
/// Converts <see cref="OutboxMessage.Headers"/> to SQS message attributes, so that no header can make SQS refuse the message or
/// the client fail half-way through a send.
/// </summary>
/// <remarks>
/// Strings are sent as <c>String</c>; integers, decimals and finite doubles within SQS's range as <c>Number</c> (invariant text,
/// never in exponent notation); booleans as the <c>String</c> <c>true</c> or <c>false</c>; <see cref="Guid"/>, <see cref="DateTime"/>
/// and <see cref="DateTimeOffset"/> as <c>String</c> (round-trip format, as <see cref="OutboxValues.GetString"/> reads them); lists
/// and dictionaries as their JSON text in a <c>String</c>. A <see langword="null"/> header is left out. A header name SQS does not
/// accept, an empty string, a string with a character SQS does not accept, and a value that cannot be written as JSON fail with a
/// non-transient <see cref="OutboxException"/> that names the header.
/// </remarks>
internal static class SqsAttributes
{
    /// <summary>The most message attributes SQS accepts on one message.</summary>
    public const int MaxAttributes = 10;

    /// <summary>The attribute that carries <see cref="OutboxMessage.MessageId"/>; SQS assigns its own <c>MessageId</c>.</summary>
    public const string MessageIdAttribute = "message-id";

    /// <summary>The attribute that says how the body is encoded when it is not the payload's text.</summary>
    public const string BodyEncodingAttribute = "outboxer-body-encoding";

    /// <summary>The value of <see cref="BodyEncodingAttribute"/> for a base64-encoded body.</summary>
    public const string Base64Encoding = "base64";

    public const string StringType = "String";
    public const string NumberType = "Number";

    private const int MaxNameLength = 256;

    // SQS numbers: up to 38 significant digits, magnitude from 10^-128 to 10^126.
    private const double MinNumberMagnitude = 1e-128;
    private const double MaxNumberMagnitude = 1e126;

    /// <summary>Converts the headers; <see langword="null"/> headers are left out.</summary>
    public static Dictionary<string, MessageAttributeValue> Convert(OutboxValues headers)
    {
        var attributes = new Dictionary<string, MessageAttributeValue>(headers.Count + 2, StringComparer.Ordinal);
        foreach (var (name, value) in headers)
        {
            if (value is null)
            {
                continue;
            }

            CheckName(name);
            attributes[name] = ConvertValue(name, value);
        }

        return attributes;
    }

    /// <summary>The size SQS counts for an attribute: the UTF-8 bytes of its name, data type and value.</summary>
    public static int SizeOf(string name, MessageAttributeValue value) =>
        Encoding.UTF8.GetByteCount(name) + Encoding.UTF8.GetByteCount(value.DataType) + Encoding.UTF8.GetByteCount(value.StringValue ?? string.Empty);

    public static MessageAttributeValue String(string value) => new() { DataType = StringType, StringValue = value };

    private static MessageAttributeValue Number(string value) => new() { DataType = NumberType, StringValue = value };

    private static void CheckName(string name)
    {
        if (name is MessageIdAttribute or BodyEncodingAttribute)
        {
            throw new OutboxException(
                $"The header name '{name}' is reserved: the SQS publisher sets the message attribute '{name}' itself. Rename the header.",
                isTransient: false);
        }

        if (!IsValidName(name))
        {
            throw new OutboxException(
                $"The header name '{name}' is not a valid SQS message attribute name: use 1 to {MaxNameLength} letters, digits, '_', '-' and '.', " +
                "not starting or ending with '.', without '..', and not starting with 'AWS.' or 'Amazon.'.",
                isTransient: false);
        }
    }

    private static bool IsValidName(string name)
    {
        if (name.Length is 0 or > MaxNameLength || name[0] == '.' || name[^1] == '.' || name.Contains("..", StringComparison.Ordinal))
        {
            return false;
        }

        if (name.StartsWith("AWS.", StringComparison.OrdinalIgnoreCase) || name.StartsWith("Amazon.", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        foreach (var c in name)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('_' or '-' or '.'))
            {
                return false;
            }
        }

        return true;
    }

    private static MessageAttributeValue ConvertValue(string name, object value)
    {
        switch (value)
        {
            case string s:
                return String(CheckedText(name, s));
            case bool b:
                return String(b ? "true" : "false");
            case long or int or short or sbyte or byte or ulong or uint or ushort or decimal:
                return Number(((IFormattable)value).ToString(null, CultureInfo.InvariantCulture));
            case double d:
                return FromFloatingPoint(d, d.ToString("R", CultureInfo.InvariantCulture));
            case float f:
                return FromFloatingPoint(f, f.ToString("R", CultureInfo.InvariantCulture));
            case Guid g:
                return String(g.ToString());
            case DateTimeOffset dto:
                return String(dto.ToString("O", CultureInfo.InvariantCulture));
            case DateTime dt:
                return String(dt.ToString("O", CultureInfo.InvariantCulture));
            default:
                return String(CheckedText(name, ToJson(name, value)));
        }
    }

    private static MessageAttributeValue FromFloatingPoint(double value, string text)
    {
        var magnitude = Math.Abs(value);
        if (!double.IsFinite(value) || (magnitude != 0 && (magnitude < MinNumberMagnitude || magnitude > MaxNumberMagnitude)))
        {
            // Outside what an SQS Number holds: keep the value as text rather than have SQS refuse the message.
            return String(text);
        }

        return Number(ExpandExponent(text));
    }

    /// <summary>Writes a number such as <c>1E-05</c> or <c>-2.5E+20</c> in plain positional notation.</summary>
    internal static string ExpandExponent(string text)
    {
        var e = text.IndexOfAny(['E', 'e']);
        if (e < 0)
        {
            return text;
        }

        var exponent = int.Parse(text.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        var mantissa = text.AsSpan(0, e);
        var negative = mantissa.StartsWith("-");
        if (negative)
        {
            mantissa = mantissa[1..];
        }

        var dot = mantissa.IndexOf('.');
        var digits = dot < 0 ? mantissa.ToString() : string.Concat(mantissa[..dot], mantissa[(dot + 1)..]);
        var integerDigits = (dot < 0 ? mantissa.Length : dot) + exponent;
        string plain;
        if (integerDigits <= 0)
        {
            plain = "0." + new string('0', -integerDigits) + digits;
        }
        else if (integerDigits >= digits.Length)
        {
            plain = digits + new string('0', integerDigits - digits.Length);
        }
        else
        {
            plain = string.Concat(digits.AsSpan(0, integerDigits), ".", digits.AsSpan(integerDigits));
        }

        return negative ? "-" + plain : plain;
    }

    private static string ToJson(string name, object value)
    {
        // OutboxValues writes the same JSON it stores, and rejects what it cannot store; wrap the value in a one-key object.
        string? json;
        try
        {
            json = new OutboxValues { ["v"] = value }.ToJson();
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or JsonException or NotSupportedException)
        {
            throw new OutboxException(
                $"The header '{name}' is a {value.GetType().Name}, which cannot be sent as an SQS message attribute; use a string, number, boolean, " +
                $"Guid, date, list or string-keyed dictionary. {ex.Message}",
                isTransient: false,
                ex);
        }

        const string prefix = "{\"v\":";
        return json!.Substring(prefix.Length, json.Length - prefix.Length - 1);
    }

    private static string CheckedText(string name, string value)
    {
        if (value.Length == 0)
        {
            throw new OutboxException($"The header '{name}' is an empty string, which SQS does not accept as a message attribute value. Leave the header out, or give it a value.", isTransient: false);
        }

        if (!SqsText.IsAllowed(value))
        {
            throw new OutboxException(
                $"The header '{name}' contains a character SQS does not accept in a message attribute (control characters other than tab, " +
                "line feed and carriage return, U+FFFE, U+FFFF, or an unpaired surrogate).",
                isTransient: false);
        }

        return value;
    }
}
