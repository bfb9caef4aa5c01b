using Xunit;

namespace Outboxer.Tests;

public sealed class OutboxValuesTests
{
    [Fact]
    public void Values_keep_their_json_type_through_a_round_trip()
    {
        var values = new OutboxValues
        {
            ["int"] = 42,
            ["long"] = long.MaxValue,
            ["bool"] = true,
            ["double"] = 2.5,
            ["string"] = "text",
            ["null"] = null,
            ["list"] = new[] { 1, 2 },
            ["map"] = new Dictionary<string, object?> { ["inner"] = false },
        };

        var back = OutboxValues.FromJson(values.ToJson());

        Assert.IsType<long>(back["int"]);
        Assert.Equal(42L, (long)back["int"]!);
        Assert.Equal(long.MaxValue, (long)back["long"]!);
        Assert.Equal(true, back["bool"]);
        Assert.Equal(2.5, (double)back["double"]!);
        Assert.Equal("text", back["string"]);
        Assert.Null(back["null"]);
        Assert.Equal(new List<object?> { 1L, 2L }, back["list"]);
        Assert.Equal(false, ((Dictionary<string, object?>)back["map"]!)["inner"]);
    }

    [Fact]
    public void No_values_are_stored_as_null_and_read_back_empty()
    {
        Assert.Null(new OutboxValues().ToJson());
        Assert.Empty(OutboxValues.FromJson(null));
        Assert.Empty(OutboxValues.FromJson(""));
    }

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("{not json")]
    public void Stored_text_that_is_not_a_json_object_is_a_format_error(string json)
    {
        Assert.Throws<FormatException>(() => OutboxValues.FromJson(json));
    }

    [Fact]
    public void A_value_of_an_unsupported_type_is_rejected_with_its_key_and_type()
    {
        var values = new OutboxValues { ["ok"] = 1, ["when"] = new { Nested = 1 } };

        var ex = Assert.Throws<ArgumentException>(values.ToJson);

        Assert.Contains("'when'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("AnonymousType", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Not_a_number_is_rejected()
    {
        var values = new OutboxValues { ["ratio"] = double.NaN };
        Assert.Contains("'ratio'", Assert.Throws<ArgumentException>(values.ToJson).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Typed_getters_accept_every_representation_that_means_the_same_value()
    {
        var values = new OutboxValues
        {
            ["whole double"] = 30.0,
            ["int"] = 30,
            ["text number"] = "30",
            ["text bool"] = "true",
            ["number"] = 7L,
        };

        Assert.Equal(30L, values.GetInt64("whole double", 0));
        Assert.Equal(30, values.GetInt32("int", 0));
        Assert.Equal(30L, values.GetInt64("text number", 0));
        Assert.True(values.GetBoolean("text bool", false));
        Assert.Equal("7", values.GetString("number"));
        Assert.Equal(9, values.GetInt32("absent", 9));
        Assert.Equal("fallback", values.GetString("absent", "fallback"));
    }

    [Fact]
    public void A_typed_getter_names_the_key_and_value_of_a_wrong_type_and_says_it_is_permanent()
    {
        var values = new OutboxValues { ["exchange.durable"] = "maybe", ["delay_seconds"] = 1.5 };

        var notBool = Assert.Throws<OutboxException>(() => values.GetBoolean("exchange.durable", true));
        var notWhole = Assert.Throws<OutboxException>(() => values.GetInt64("delay_seconds", 0));

        Assert.Contains("'exchange.durable'", notBool.Message, StringComparison.Ordinal);
        Assert.Contains("'maybe'", notBool.Message, StringComparison.Ordinal);
        Assert.False(notBool.IsTransient);
        Assert.Contains("'delay_seconds'", notWhole.Message, StringComparison.Ordinal);
    }
}
