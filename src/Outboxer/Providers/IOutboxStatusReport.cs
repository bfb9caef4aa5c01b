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
