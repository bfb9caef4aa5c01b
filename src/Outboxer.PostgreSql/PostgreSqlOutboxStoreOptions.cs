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
    /// The default value is <see langword="true"/>. A process whose own dispatcher listens does not notify for its own enqueues (its
    /// outbox wakes the dispatcher in memory), so only processes that enqueue without dispatching pay for notifications: PostgreSQL
    /// serializes the commits of transactions that sent one (a global lock held through the commit's disk flush), which caps such
    /// processes' concurrent enqueuing commits at a few hundred to a few thousand a second. Turn it off when that matters more than the
    /// wake-up; dispatchers then find other processes' messages by polling, every few milliseconds while messages come and backing off
    /// to <see cref="OutboxOptions.CheckInterval"/> when idle. Turning it off for an existing table also needs
    /// <c>DROP TRIGGER "&lt;table&gt;_notify" ON &lt;table&gt;</c>.
    /// </value>
    public bool NotifyOnCommit { get; set; } = true;

    /// <summary>
    /// Gets or sets a value indicating whether the store prepares its frequent statements (the insert, the claim, the mark), so that
    /// PostgreSQL parses and plans each of them once per connection instead of every time. Npgsql keeps prepared statements on the
    /// physical connection across pool rentals; the insert is prepared on your transaction's connection.
    /// </summary>
    /// <value>
    /// The default value is <see langword="true"/>. Turn it off behind a connection pooler in transaction mode that does not support
    /// prepared statements (PgBouncer before 1.21).
    /// </value>
    public bool PrepareStatements { get; set; } = true;

    /// <summary>
    /// Gets or sets a value indicating whether leases are stamped and compared with the database server's clock
    /// (<c>statement_timestamp()</c>) instead of the dispatcher's: a claim reserves rows for the outbox's
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

    /// <summary>
    /// Gets or sets a value indicating whether the dispatcher claims by locking rows (<c>SELECT ... FOR UPDATE SKIP LOCKED</c>) in a
    /// transaction held open while the batch publishes, and marks the confirmed messages in that transaction, instead of writing a lease
    /// into every claimed row and marking in a second transaction.
    /// </summary>
    /// <value>
    /// The default value is <see langword="true"/>: per message one row version and two index entries fewer, and no claim
    /// <c>UPDATE</c>, which roughly halves PostgreSQL's work per dispatched message. Each batch in flight holds a pooled connection
    /// while it publishes (up to <see cref="OutboxOptions.MaxBatchesInFlight"/>), and its transaction keeps PostgreSQL's vacuum horizon
    /// for that long. The transaction sets <c>idle_in_transaction_session_timeout</c> to <see cref="OutboxOptions.LeaseDuration"/>:
    /// PostgreSQL ends the session of a dispatcher that stalls longer with rows locked, so other dispatchers take them, and the stalled
    /// dispatcher's settlement fails (its published messages count as possible duplicates). A dispatcher that dies frees its rows at
    /// once (its connection closes), without counting an attempt. Turn it off behind a pooler in transaction mode that must not pin a
    /// server connection per batch, or to keep the lease columns as the only claim record. Sends after commit always use leases.
    /// </value>
    public bool ClaimByRowLock { get; set; } = true;

    internal void Validate()
    {
        SqlIdentifier.Validate(SchemaName, $"{nameof(PostgreSqlOutboxStoreOptions)}.{nameof(SchemaName)}");
        SqlIdentifier.Validate(TableName, $"{nameof(PostgreSqlOutboxStoreOptions)}.{nameof(TableName)}");
    }
}
