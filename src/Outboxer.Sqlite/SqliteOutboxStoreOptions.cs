using Outboxer.Providers;

namespace Outboxer.Sqlite;

/// <summary>Settings of a <see cref="SqliteOutboxStore"/>.</summary>
public sealed class SqliteOutboxStoreOptions
{
    /// <summary>Gets or sets the name of the outbox table.</summary>
    /// <value>The default value is <c>outbox_messages</c>. ASCII letters, digits and underscores only.</value>
    public string TableName { get; set; } = "outbox_messages";

    /// <summary>Gets or sets a value indicating whether the store creates its table on first use when it is missing.</summary>
    /// <value>The default value is <see langword="true"/>.</value>
    public bool CreateTableIfMissing { get; set; } = true;

    internal void Validate() => SqlIdentifier.Validate(TableName, $"{nameof(SqliteOutboxStoreOptions)}.{nameof(TableName)}");
}
