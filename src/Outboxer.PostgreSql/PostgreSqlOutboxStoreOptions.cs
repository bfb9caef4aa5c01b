using Outboxer.Providers;

namespace Outboxer.PostgreSql;

/// <summary>Settings of a <see cref="PostgreSqlOutboxStore"/>.</summary>
public sealed class PostgreSqlOutboxStoreOptions
{
    /// <summary>Gets or sets the schema that holds the outbox table; the store creates it when it is missing.</summary>
    /// <value>
    /// The default value is <c>public</c>. ASCII letters, digits and underscores only; the name is quoted, so it is case-sensitive.
    /// </value>
    public string SchemaName { get; set; } = "public";

    /// <summary>Gets or sets the name of the outbox table.</summary>
    /// <value>
    /// The default value is <c>outbox_messages</c>. ASCII letters, digits and underscores only; the name is quoted, so it is case-sensitive.
    /// </value>
    public string TableName { get; set; } = "outbox_messages";

    /// <summary>Gets or sets a value indicating whether the store creates its schema, table and indexes on first use when they are missing.</summary>
    /// <value>
    /// The default value is <see langword="true"/>. Set it to <see langword="false"/> when the table is created by your migrations
    /// from <see cref="PostgreSqlOutboxStore.GetCreateScript"/>.
    /// </value>
    public bool CreateTableIfMissing { get; set; } = true;

    /// <summary>
    /// Gets or sets a value indicating whether the table gets a statement-level insert trigger that sends <c>NOTIFY</c> when an enqueuing
    /// transaction commits, so that dispatchers in every process wake at once (they <c>LISTEN</c>).
    /// </summary>
    /// <value>
    /// The default value is <see langword="true"/>. Turn it off for the highest enqueue rates: PostgreSQL serializes the commits of
    /// transactions that sent a notification (a global lock held through the commit's disk flush), which caps concurrent enqueuing
    /// commits at a few hundred to a few thousand a second; dispatchers then find other processes' messages by polling every
    /// <see cref="OutboxOptions.CheckInterval"/>. Turning it off for an existing table also needs
    /// <c>DROP TRIGGER "&lt;table&gt;_notify" ON &lt;table&gt;</c>.
    /// </value>
    public bool NotifyOnCommit { get; set; } = true;

    internal void Validate()
    {
        SqlIdentifier.Validate(SchemaName, $"{nameof(PostgreSqlOutboxStoreOptions)}.{nameof(SchemaName)}");
        SqlIdentifier.Validate(TableName, $"{nameof(PostgreSqlOutboxStoreOptions)}.{nameof(TableName)}");
    }
}
