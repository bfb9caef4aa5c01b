using System.Text;
using Outboxer.Dashboard.Internal;
using Xunit;

namespace Outboxer.Dashboard.Tests;

public sealed class PayloadPreviewTests
{
    [Fact]
    public void Json_is_pretty_printed_with_its_text_unescaped()
    {
        var preview = PayloadPreview.Format("{\"name\":\"Zoë <b>\",\"lines\":[1,2]}"u8, 4096);

        Assert.Equal(PreviewKind.Json, preview.Kind);
        Assert.Equal("{\n  \"name\": \"Zoë <b>\",\n  \"lines\": [\n    1,\n    2\n  ]\n}", preview.Text.ReplaceLineEndings("\n"));
        Assert.False(preview.Cut);
        Assert.Equal("JSON, 33 bytes", preview.Description);
    }

    [Fact]
    public void Text_that_is_not_json_is_shown_as_text_even_when_it_starts_like_json()
    {
        Assert.Equal(new Preview(PreviewKind.Text, "hello, world", 12, false), PayloadPreview.Format("hello, world"u8, 4096));
        Assert.Equal(PreviewKind.Text, PayloadPreview.Format("{not json"u8, 4096).Kind);
        Assert.Equal(PreviewKind.Text, PayloadPreview.Format("{} {}"u8, 4096).Kind);
    }

    [Fact]
    public void Long_text_is_cut_at_the_limit_without_splitting_a_character()
    {
        var payload = Encoding.UTF8.GetBytes("ab\u00e9\u00e9\u00e9"); // a b é é é: 2 + 3 * 2 bytes

        var preview = PayloadPreview.Format(payload, 5);

        Assert.Equal("ab\u00e9", preview.Text);
        Assert.True(preview.Cut);
        Assert.Equal(8, preview.TotalBytes);
        Assert.Equal("UTF-8 text, 8 bytes, cut", preview.Description);
    }

    [Fact]
    public void Long_json_is_cut_after_pretty_printing()
    {
        var payload = Encoding.UTF8.GetBytes("[" + string.Join(',', Enumerable.Range(0, 100)) + "]");

        var preview = PayloadPreview.Format(payload, 32);

        Assert.Equal(PreviewKind.Json, preview.Kind);
        Assert.True(preview.Cut);
        Assert.StartsWith("[\n  0,\n  1,", preview.Text.ReplaceLineEndings("\n"), StringComparison.Ordinal);
        Assert.True(Encoding.UTF8.GetByteCount(preview.Text) <= 32);
    }

    [Fact]
    public void Bytes_that_are_not_utf8_or_are_control_characters_are_shown_as_hex()
    {
        var binary = PayloadPreview.Format(new byte[] { 0x00, 0x01, 0x48, 0x69, 0xff, 0xfe, 0x10, 0x20, 0x7e, 0x7f, 0x80, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47 }, 4096);

        Assert.Equal(PreviewKind.Binary, binary.Kind);
        Assert.Equal(
            "00000000  00 01 48 69 ff fe 10 20  7e 7f 80 41 42 43 44 45  |..Hi... ~..ABCDE|\n" +
            "00000010  46 47                                             |FG|",
            binary.Text);
        Assert.Equal(PreviewKind.Binary, PayloadPreview.Format("valid\u0001utf8"u8, 4096).Kind);
    }

    [Fact]
    public void A_hex_dump_is_cut_at_the_limit()
    {
        var preview = PayloadPreview.Format(Enumerable.Range(0, 100).Select(i => (byte)(0x80 + i)).ToArray(), 16);

        Assert.True(preview.Cut);
        Assert.Single(preview.Text.Split('\n'));
        Assert.Equal("binary (hex), 100 bytes, cut", preview.Description);
    }

    [Fact]
    public void An_empty_payload_is_empty()
    {
        Assert.Equal(new Preview(PreviewKind.Empty, string.Empty, 0, false), PayloadPreview.Format([], 4096));
    }
}
