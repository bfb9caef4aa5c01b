using System.Text.Json;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>artifacts/guarantees.jsonl is JSON Lines that standard parsers read: UTF-8 without a byte order mark.</summary>
public sealed class GuaranteeReportFileTests
{
    [Fact]
    public void The_report_file_starts_with_a_JSON_object_not_a_byte_order_mark_and_every_line_parses_with_its_store_broker_dedup_and_uncertain_count()
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-guarantees-{Guid.NewGuid():N}.jsonl");
        try
        {
            var report = new GuaranteeReport("file-format", false, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1.5, 10, "none", ["ü problem"]) { Broker = "nats", Dedup = true, Store = "sqlite", Uncertain = 3, DeadLetteredDelivered = 0 };
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
                Assert.Equal("nats", json.RootElement.GetProperty("broker").GetString());
                Assert.True(json.RootElement.GetProperty("dedup").GetBoolean());
                Assert.Equal("sqlite", json.RootElement.GetProperty("store").GetString());
                Assert.Equal(3, json.RootElement.GetProperty("uncertain").GetInt32());
                Assert.Equal(0, json.RootElement.GetProperty("dead_lettered_delivered").GetInt32());
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Appending_to_a_file_that_an_earlier_version_started_with_a_byte_order_mark_removes_the_mark_and_keeps_its_lines()
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-guarantees-{Guid.NewGuid():N}.jsonl");
        try
        {
            var report = new GuaranteeReport("file-format", false, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1.5, 10, "none", []);
            File.WriteAllText(path, "{\"scenario\":\"old\"}\n", new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
            Assert.Equal(0xEF, File.ReadAllBytes(path)[0]);

            GuaranteeRun.AppendLine(path, report);

            Assert.Equal((byte)'{', File.ReadAllBytes(path)[0]);
            var scenarios = File.ReadAllLines(path).Select(line => JsonDocument.Parse(line).RootElement.GetProperty("scenario").GetString());
            Assert.Equal(["old", "file-format"], scenarios);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
