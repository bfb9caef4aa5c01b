using System.Text.Json;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>artifacts/guarantees.jsonl is JSON Lines that standard parsers read: UTF-8 without a byte order mark.</summary>
public sealed class GuaranteeReportFileTests
{
    [Fact]
    public void The_report_file_starts_with_a_JSON_object_not_a_byte_order_mark_and_every_line_parses()
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-guarantees-{Guid.NewGuid():N}.jsonl");
        try
        {
            var report = new GuaranteeReport("file-format", false, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1.5, 10, "none", ["ü problem"]);
            GuaranteeRun.AppendLine(path, report);
            GuaranteeRun.AppendLine(path, report);

            var bytes = File.ReadAllBytes(path);
            Assert.Equal((byte)'{', bytes[0]);
            var lines = File.ReadAllLines(path);
            Assert.Equal(2, lines.Length);
            foreach (var line in lines)
            {
                using var json = JsonDocument.Parse(line);
                Assert.Equal("file-format", json.RootElement.GetProperty("scenario").GetString());
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
