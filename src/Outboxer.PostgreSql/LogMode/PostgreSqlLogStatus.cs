namespace Outboxer.PostgreSql;

/// <summary>
/// The state of an outbox in log mode as PostgreSQL reports it: the server's settings, the replication slot's lag and the write-ahead
/// log it retains, the dead letters, and every problem that stops the relay.
/// </summary>
public sealed class PostgreSqlLogStatus
{
    internal PostgreSqlLogStatus()
    {
    }

    /// <summary>Gets the slot's name.</summary>
    public string SlotName { get; internal init; } = string.Empty;

    /// <summary>Gets the server's <c>wal_level</c>; the log mode needs <c>logical</c>.</summary>
    public string WalLevel { get; internal init; } = string.Empty;

    /// <summary>Gets a value indicating whether the connecting role may use replication (the <c>REPLICATION</c> attribute, superuser, or <c>rds_replication</c>).</summary>
    public bool CanReplicate { get; internal init; }

    /// <summary>Gets a value indicating whether the replication slot exists (with the <c>pgoutput</c> plugin, in this database).</summary>
    public bool SlotExists { get; internal init; }

    /// <summary>Gets a value indicating whether the publication exists.</summary>
    public bool PublicationExists { get; internal init; }

    /// <summary>Gets a value indicating whether the dead-letter table exists.</summary>
    public bool DeadLetterTableExists { get; internal init; }

    /// <summary>Gets a value indicating whether a relay is consuming the slot now.</summary>
    public bool Active { get; internal init; }

    /// <summary>Gets the process id of the server process that streams the slot to the active relay, or <see langword="null"/>.</summary>
    public int? ActivePid { get; internal init; }

    /// <summary>
    /// Gets how far the slot's acknowledged position (<c>confirmed_flush_lsn</c>) is behind the end of the write-ahead log, in bytes: what
    /// the relay has yet to publish and acknowledge (with other transactions' log in between); <see langword="null"/> without a slot.
    /// </summary>
    public long? LagBytes { get; internal init; }

    /// <summary>
    /// Gets how long ago the newest position the active relay acknowledged was written, in seconds (<c>flush_lag</c> of
    /// <c>pg_stat_replication</c>); <see langword="null"/> when no relay is active or PostgreSQL has no recent measure (it clears it when
    /// the relay is caught up and idle).
    /// </summary>
    public double? LagSeconds { get; internal init; }

    /// <summary>
    /// Gets how much write-ahead log the slot keeps PostgreSQL from removing (from its <c>restart_lsn</c> to the end of the log), in bytes;
    /// <see langword="null"/> without a slot.
    /// </summary>
    public long? RetainedWalBytes { get; internal init; }

    /// <summary>
    /// Gets the slot's <c>wal_status</c>: <c>reserved</c> or <c>extended</c> (fine), <c>unreserved</c> (past
    /// <c>max_slot_wal_keep_size</c>: the log it needs is removed at the next checkpoint unless the relay catches up), <c>lost</c> (the
    /// log it needs is gone: the slot cannot be consumed again and the messages in that log are lost); <see langword="null"/> without a slot.
    /// </summary>
    public string? WalStatus { get; internal init; }

    /// <summary>
    /// Gets how many more bytes of log can be written before the slot passes <c>max_slot_wal_keep_size</c>, or <see langword="null"/>
    /// when the guard is off (-1) or there is no slot.
    /// </summary>
    public long? SafeWalSizeBytes { get; internal init; }

    /// <summary>Gets the server's <c>max_slot_wal_keep_size</c> in megabytes; -1 when unlimited (the default: a stalled relay keeps the log until the disk fills).</summary>
    public long MaxSlotWalKeepSizeMegabytes { get; internal init; }

    /// <summary>Gets the number of messages in the dead-letter table (0 when it does not exist).</summary>
    public long DeadLetters { get; internal init; }

    /// <summary>Gets the problems that stop the log mode from working, each with what to do; empty when there are none.</summary>
    public IReadOnlyList<string> Problems { get; internal init; } = [];
}
