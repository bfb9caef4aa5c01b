using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;

namespace Outboxer.Dashboard.Internal;

/// <summary>Writes HTML: text is always encoded (the <c>Text</c> and <c>Attr</c> methods); <see cref="Raw"/> is for markup only.</summary>
internal sealed class Html
{
    private readonly StringBuilder _builder = new(8192);

    public Html Raw(string markup)
    {
        _builder.Append(markup);
        return this;
    }

    public Html Text(string? text)
    {
        _builder.Append(HtmlEncoder.Default.Encode(text ?? string.Empty));
        return this;
    }

    public Html Text(long value) => Raw(value.ToString("N0", CultureInfo.InvariantCulture));

    /// <summary>Writes <c> name="value"</c> with the value encoded.</summary>
    public Html Attr(string name, string? value)
    {
        _builder.Append(' ').Append(name).Append("=\"").Append(HtmlEncoder.Default.Encode(value ?? string.Empty)).Append('"');
        return this;
    }

    /// <summary>Writes an element with encoded text content and optional attributes (name, value pairs).</summary>
    public Html Element(string tag, string? text, params (string Name, string? Value)[] attributes)
    {
        Raw("<").Raw(tag);
        foreach (var (name, value) in attributes)
        {
            Attr(name, value);
        }

        return Raw(">").Text(text).Raw("</").Raw(tag).Raw(">");
    }

    public override string ToString() => _builder.ToString();

    /// <summary>A time for people: UTC, to the second, with the ISO form in a machine-readable element.</summary>
    public Html Time(DateTimeOffset? value)
    {
        if (value is not { } time)
        {
            return Raw("&#8212;");
        }

        var utc = time.ToUniversalTime();
        return Element("time", utc.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture), ("datetime", utc.ToString("O", CultureInfo.InvariantCulture)));
    }

    /// <summary>A duration for people: 850 ms, 42 s, 3 min 5 s, 2 h 10 min, 3 d 4 h.</summary>
    public static string Duration(TimeSpan value) => value switch
    {
        { TotalSeconds: < 1 } => string.Create(CultureInfo.InvariantCulture, $"{value.TotalMilliseconds:0} ms"),
        { TotalMinutes: < 1 } => string.Create(CultureInfo.InvariantCulture, $"{value.TotalSeconds:0.#} s"),
        { TotalHours: < 1 } => Two(value.Minutes, "min", value.Seconds, "s"),
        { TotalDays: < 1 } => Two(value.Hours, "h", value.Minutes, "min"),
        _ => Two((int)value.TotalDays, "d", value.Hours, "h"),
    };

    private static string Two(int major, string majorUnit, int minor, string minorUnit) => minor == 0
        ? string.Create(CultureInfo.InvariantCulture, $"{major} {majorUnit}")
        : string.Create(CultureInfo.InvariantCulture, $"{major} {majorUnit} {minor} {minorUnit}");

    public static string Rate(double? perSecond) => perSecond is { } value ? value.ToString(value < 10 ? "0.##" : "N0", CultureInfo.InvariantCulture) : "\u2014";
}
