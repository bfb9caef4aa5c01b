namespace Outboxer.Providers;

/// <summary>One labelled figure of an <see cref="IOutboxStatusReport"/>, as text ready to show.</summary>
public sealed class OutboxStatusItem
{
    /// <summary>Initializes an item.</summary>
    /// <param name="label">What the value is, such as <c>Lag</c>.</param>
    /// <param name="value">The value as text, such as <c>1,024 bytes</c>.</param>
    /// <param name="isProblem">Whether the item reports a problem that needs attention.</param>
    /// <exception cref="ArgumentException"><paramref name="label"/> is empty.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="label"/> or <paramref name="value"/> is <see langword="null"/>.</exception>
    public OutboxStatusItem(string label, string value, bool isProblem = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(label);
        ArgumentNullException.ThrowIfNull(value);
        Label = label;
        Value = value;
        IsProblem = isProblem;
    }

    /// <summary>Gets what the value is.</summary>
    public string Label { get; }

    /// <summary>Gets the value as text.</summary>
    public string Value { get; }

    /// <summary>Gets a value indicating whether the item reports a problem that needs attention.</summary>
    public bool IsProblem { get; }
}
