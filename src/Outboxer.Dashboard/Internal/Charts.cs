using System.Globalization;
using System.Text;

namespace Outboxer.Dashboard.Internal;

/// <summary>Line charts as inline SVG, drawn on the server: no script, no font, nothing fetched.</summary>
internal static class Charts
{
    private const int Width = 300;
    private const int Height = 80;

    /// <summary>
    /// Draws <paramref name="values"/> over <paramref name="window"/> ending at <paramref name="now"/>; the chart's accessible name and
    /// caption say what it shows, the latest value and the highest.
    /// </summary>
    public static void Line(Html html, string title, string unit, IReadOnlyList<(DateTimeOffset At, double Value)> values, DateTimeOffset now, TimeSpan window, Func<double, string> format)
    {
        var latest = values.Count == 0 ? "no samples yet" : $"now {format(values[^1].Value)}{unit}";
        var max = values.Count == 0 ? 0 : values.Max(v => v.Value);
        var label = values.Count == 0 ? $"{title}: {latest}" : $"{title}: {latest}, highest {format(max)}{unit} in the last {Html.Duration(window)}";
        html.Raw("<figure class=\"chart\">");
        html.Raw("<svg viewBox=\"0 0 ").Raw(Num(Width)).Raw(" ").Raw(Num(Height + 4)).Raw("\" role=\"img\" preserveAspectRatio=\"none\"").Attr("aria-label", label).Raw(">");
        html.Raw("<title>").Text(label).Raw("</title>");
        html.Raw("<line class=\"axis\" x1=\"0\" y1=\"").Raw(Num(Height + 1)).Raw("\" x2=\"").Raw(Num(Width)).Raw("\" y2=\"").Raw(Num(Height + 1)).Raw("\"/>");
        if (values.Count > 0)
        {
            var top = max <= 0 ? 1 : max * 1.1;
            var start = now - window;
            var points = new StringBuilder();
            foreach (var (at, value) in values)
            {
                var x = Math.Clamp((at - start).TotalSeconds / window.TotalSeconds, 0, 1) * Width;
                var y = Height - (value / top * Height) + 1;
                points.Append(Num(x)).Append(',').Append(Num(y)).Append(' ');
            }

            if (values.Count == 1)
            {
                var (x, y) = (Math.Clamp((values[0].At - start).TotalSeconds / window.TotalSeconds, 0, 1) * Width, Height - (values[0].Value / top * Height) + 1);
                html.Raw("<circle r=\"2.5\" cx=\"").Raw(Num(x)).Raw("\" cy=\"").Raw(Num(y)).Raw("\"/>");
            }
            else
            {
                html.Raw("<polyline fill=\"none\" points=\"").Raw(points.ToString().TrimEnd()).Raw("\"/>");
            }
        }

        html.Raw("</svg><figcaption>").Text(title).Raw(" <span class=\"latest\">").Text(latest).Raw("</span>");
        if (values.Count > 0)
        {
            html.Raw(" <span class=\"max\">").Text($"(highest {format(max)}{unit}, last {Html.Duration(window)})").Raw("</span>");
        }

        html.Raw("</figcaption></figure>");
    }

    private static string Num(double value) => value.ToString("0.#", CultureInfo.InvariantCulture);
}
