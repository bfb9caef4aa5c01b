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

    internal void Validate() => SqlIdentifier.Validate(TableName, $"{nameof(MySqlOutboxStoreOptions)}.{nameof(TableName)}");
}
