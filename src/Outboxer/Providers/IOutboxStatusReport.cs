namespace Outboxer.Providers;

/// <summary>
/// A writer or store that can describe its own state in a few labelled figures (for example the replication slot of an outbox in log
/// mode: its lag, the write-ahead log it retains, its problems), so that a dashboard can show them without knowing the provider.
/// </summary>
public interface IOutboxStatusReport
{
    /// <summary>Gets the title of the report, such as <c>Log mode</c>.</summary>
    string StatusTitle { get; }

    /// <summary>Reads the state now and describes it.</summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The items, in the order to show them; a problem has <see cref="OutboxStatusItem.IsProblem"/> set.</returns>
    /// <exception cref="OutboxException">The state could not be read.</exception>
    Task<IReadOnlyList<OutboxStatusItem>> GetStatusAsync(CancellationToken cancellationToken = default);
}

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
