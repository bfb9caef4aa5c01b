using Outboxer.Providers;

namespace Outboxer.MySql;

/// <summary>Settings of a <see cref="MySqlOutboxStore"/>.</summary>
public sealed class MySqlOutboxStoreOptions
{
    /// <summary>Gets or sets the name of the outbox table, in the database that the connection string names.</summary>
    /// <value>
    /// The default value is <c>outbox_messages</c>. ASCII letters, digits and underscores only; the name is quoted with backticks.
    /// Whether it is case-sensitive depends on the server's <c>lower_case_table_names</c>.
    /// </value>
    public string TableName { get; set; } = "outbox_messages";

    /// <summary>Gets or sets a value indicating whether the store creates its table and indexes on first use when they are missing.</summary>
    /// <value>
    /// The default value is <see langword="true"/>. Set it to <see langword="false"/> when the table is created by your migrations
    /// from <see cref="MySqlOutboxStore.GetCreateScript"/>.
    /// </value>
    public bool CreateTableIfMissing { get; set; } = true;

    /// <summary>
    /// Gets or sets a value indicating whether leases are stamped and compared with the database server's clock
    /// (<c>UTC_TIMESTAMP(6)</c>) instead of the dispatcher's: a claim reserves rows for the outbox's
    /// <see cref="OutboxOptions.LeaseDuration"/> from the moment the server runs it, and rows count as due by the server's time, so
    /// dispatchers on hosts whose clocks disagree never take each other's rows early.
    /// </summary>
    /// <value>
    /// The default value is <see langword="true"/>. With <see langword="false"/> the times the dispatcher passes (from its
    /// <see cref="TimeProvider"/>) are written and compared: for tests that move time with a fake <see cref="TimeProvider"/>, and
    /// then every host's clock must agree to well within <c>LeaseDuration - PublishTimeout</c>. Retry times after a failed attempt are
    /// always the dispatcher's (a skew only moves a retry).
    /// </value>
    public bool UseDatabaseClock { get; set; } = true;

    internal void Validate() => SqlIdentifier.Validate(TableName, $"{nameof(MySqlOutboxStoreOptions)}.{nameof(TableName)}");
}
