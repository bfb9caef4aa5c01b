using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Outboxer.Dashboard.Internal;

/// <summary>How a payload is shown.</summary>
internal enum PreviewKind
{
    /// <summary>No bytes.</summary>
    Empty,

    /// <summary>JSON, pretty printed.</summary>
    Json,

    /// <summary>UTF-8 text.</summary>
    Text,

    /// <summary>Anything else, as a hex dump.</summary>
    Binary,
}

/// <summary>A payload made readable: its kind, the text to show, and whether (and where) it was cut.</summary>
/// <param name="Kind">How the payload was read.</param>
/// <param name="Text">What to show (escape it for HTML).</param>
/// <param name="TotalBytes">The payload's size.</param>
/// <param name="Cut">Whether <paramref name="Text"/> shows only the start.</param>
internal sealed record Preview(PreviewKind Kind, string Text, int TotalBytes, bool Cut)
{
    /// <summary>Gets a short description for the page: kind, size, and whether it was cut.</summary>
    public string Description => string.Create(CultureInfo.InvariantCulture, $"{Kind switch
    {
        PreviewKind.Json => "JSON",
        PreviewKind.Text => "UTF-8 text",
        PreviewKind.Binary => "binary (hex)",
        _ => "empty",
    }}, {TotalBytes:N0} bytes{(Cut ? ", cut" : string.Empty)}");
}

/// <summary>
/// Makes payloads readable for the dead letters and message pages: valid UTF-8 that parses as JSON is pretty printed, other valid
/// UTF-8 without control characters is shown as text, anything else as a hex dump; everything is cut at a number of bytes.
/// </summary>
internal static class PayloadPreview
{
    /// <summary>JSON larger than this is shown as text (cut), not parsed.</summary>
    private const int MaxJsonParseBytes = 1 << 20;

    private static readonly JsonWriterOptions Indented = new() { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Formats a payload, showing at most <paramref name="limit"/> bytes of it (of its pretty-printed form for JSON).</summary>
    /// <param name="payload">The payload.</param>
    /// <param name="limit">The most bytes to show.</param>
    /// <returns>The preview.</returns>
    public static Preview Format(ReadOnlySpan<byte> payload, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        if (payload.IsEmpty)
        {
            return new Preview(PreviewKind.Empty, string.Empty, 0, false);
        }

        if (!Utf8.IsValid(payload))
        {
            return Hex(payload, limit);
        }

        if (payload.Length <= MaxJsonParseBytes && LooksLikeJson(payload) && TryPrettyPrint(payload) is { } pretty)
        {
            var bytes = Encoding.UTF8.GetBytes(pretty);
            return bytes.Length <= limit
                ? new Preview(PreviewKind.Json, pretty, payload.Length, false)
                : new Preview(PreviewKind.Json, CutUtf8(bytes, limit), payload.Length, true);
        }

        var shown = CutUtf8(payload, limit);
        if (HasControlCharacters(shown))
        {
            return Hex(payload, limit);
        }

        return new Preview(PreviewKind.Text, shown, payload.Length, payload.Length > limit);
    }

    /// <summary>A hex dump: 16 bytes a line, with the offset and the printable ASCII characters.</summary>
    public static Preview Hex(ReadOnlySpan<byte> payload, int limit)
    {
        var shown = payload[..Math.Min(payload.Length, limit)];
        var text = new StringBuilder(shown.Length * 4 + 16);
        for (var offset = 0; offset < shown.Length; offset += 16)
        {
            var line = shown.Slice(offset, Math.Min(16, shown.Length - offset));
            text.Append(CultureInfo.InvariantCulture, $"{offset:x8}  ");
            for (var i = 0; i < 16; i++)
            {
                text.Append(i < line.Length ? line[i].ToString("x2", CultureInfo.InvariantCulture) : "  ").Append(i == 7 ? "  " : " ");
            }

            text.Append(" |");
            foreach (var b in line)
            {
                text.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
            }

            text.Append('|');
            if (offset + 16 < shown.Length)
            {
                text.Append('\n');
            }
        }

        return new Preview(PreviewKind.Binary, text.ToString(), payload.Length, shown.Length < payload.Length);
    }

    /// <summary>Decodes at most <paramref name="limit"/> bytes of valid UTF-8, never splitting a character.</summary>
    public static string CutUtf8(ReadOnlySpan<byte> utf8, int limit)
    {
        if (utf8.Length <= limit)
        {
            return Encoding.UTF8.GetString(utf8);
        }

        var end = limit;
        while (end > 0 && (utf8[end] & 0xC0) == 0x80)
        {
            end--;
        }

        return Encoding.UTF8.GetString(utf8[..end]);
    }

    private static bool LooksLikeJson(ReadOnlySpan<byte> payload)
    {
        var trimmed = payload.TrimStart(" \t\r\n"u8);
        if (trimmed.StartsWith("\uFEFF"u8))
        {
            trimmed = trimmed[3..];
        }

        return !trimmed.IsEmpty && trimmed[0] is (byte)'{' or (byte)'[' or (byte)'"';
    }

    private static string? TryPrettyPrint(ReadOnlySpan<byte> payload)
    {
        try
        {
            var reader = new Utf8JsonReader(payload.StartsWith("\uFEFF"u8) ? payload[3..] : payload, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
            using var document = JsonDocument.ParseValue(ref reader);
            if (reader.Read())
            {
                return null; // more than one value: not a JSON document
            }

            var output = new System.Buffers.ArrayBufferWriter<byte>(payload.Length * 2);
            using (var writer = new Utf8JsonWriter(output, Indented))
            {
                document.WriteTo(writer);
            }

            return Encoding.UTF8.GetString(output.WrittenSpan);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static bool HasControlCharacters(string text)
    {
        foreach (var c in text)
        {
            if ((c < 0x20 && c is not '\t' and not '\n' and not '\r') || c == 0x7f)
            {
                return true;
            }
        }

        return false;
    }
}
