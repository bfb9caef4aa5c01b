using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace Outboxer.Sqs;

/// <summary>
/// The characters SQS accepts in a message body and in a <c>String</c> attribute value: <c>#x9 | #xA | #xD | #x20-#xD7FF |
/// #xE000-#xFFFD | #x10000-#x10FFFF</c> (the XML 1.0 characters). Anything else makes SQS refuse the message (<c>InvalidMessageContents</c>).
/// </summary>
internal static class SqsText
{
    private static readonly SearchValues<char> s_forbidden = SearchValues.Create(
        "\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000B\u000C\u000E\u000F" +
        "\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001A\u001B\u001C\u001D\u001E\u001F\uFFFE\uFFFF");

    /// <summary>Whether every character of <paramref name="text"/> is one SQS accepts (and every surrogate is part of a pair).</summary>
    public static bool IsAllowed(ReadOnlySpan<char> text)
    {
        if (text.IndexOfAny(s_forbidden) >= 0)
        {
            return false;
        }

        var i = text.IndexOfAnyInRange('\uD800', '\uDFFF');
        if (i < 0)
        {
            return true;
        }

        for (; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c))
            {
                if (i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    i++;
                    continue;
                }

                return false;
            }

            if (char.IsLowSurrogate(c))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Returns <paramref name="payload"/> as text when it is valid UTF-8 made only of characters SQS accepts, so that the receiver's
    /// UTF-8 encoding of the body gives back the same bytes; otherwise <see langword="null"/>.
    /// </summary>
    public static string? AsText(byte[] payload)
    {
        if (!Utf8.IsValid(payload))
        {
            return null;
        }

        // GetString keeps a byte order mark, so the bytes round-trip exactly.
        var text = Encoding.UTF8.GetString(payload);
        return IsAllowed(text) ? text : null;
    }
}
