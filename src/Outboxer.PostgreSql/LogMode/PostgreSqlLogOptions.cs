using Outboxer.Providers;

namespace Outboxer.PostgreSql;

/// <summary>
/// Where an outbox in log mode lives in PostgreSQL: the prefix its messages carry in the write-ahead log, the replication slot and
/// publication its relay reads through, and the dead-letter table. The writer, the relay and the setup of one outbox use the same values.
/// </summary>
public sealed class PostgreSqlLogOptions
{
    /// <summary>
    /// Gets or sets the prefix of the outbox's logical decoding messages (<c>pg_logical_emit_message</c>'s second argument). The relay
    /// publishes only messages with exactly this prefix, so two outboxes in log mode in one database keep apart by prefix.
    /// </summary>
    /// <value>The default value is <c>outboxer</c>. 1 to 63 ASCII letters, digits, underscores, dots or hyphens.</value>
    public string Prefix { get; set; } = "outboxer";

    /// <summary>Gets or sets the name of the logical replication slot (plugin <c>pgoutput</c>) that the relay consumes.</summary>
    /// <value>The default value is <c>outboxer</c>. 1 to 63 lowercase ASCII letters, digits and underscores (PostgreSQL's rule for slots).</value>
    public string SlotName { get; set; } = "outboxer";

    /// <summary>
    /// Gets or sets the name of the publication the relay names when it starts replication. <c>pgoutput</c> requires one; the setup
    /// creates it with no table, so the slot decodes no row changes, only the outbox's messages.
    /// </summary>
    /// <value>The default value is <c>outboxer</c>. ASCII letters, digits and underscores; quoted, so case-sensitive.</value>
    public string PublicationName { get; set; } = "outboxer";

    /// <summary>Gets or sets the schema of the dead-letter table; the setup creates it when it is missing.</summary>
    /// <value>The default value is <c>public</c>. ASCII letters, digits and underscores; quoted, so case-sensitive.</value>
    public string SchemaName { get; set; } = "public";

    /// <summary>
    /// Gets or sets the name of the table where the relay keeps messages that the broker refused for good (a non-transient failure),
    /// with the error, so that the stream moves on without losing them.
    /// </summary>
    /// <value>The default value is <c>outbox_log_dead_letters</c>. ASCII letters, digits and underscores; quoted, so case-sensitive.</value>
    public string DeadLetterTableName { get; set; } = "outbox_log_dead_letters";

    /// <summary>Gets the dead-letter table's quoted, schema-qualified name.</summary>
    internal string DeadLetterTable => $"\"{SchemaName}\".\"{DeadLetterTableName}\"";

    /// <summary>Checks every value and throws for the first invalid one, naming the option.</summary>
    /// <exception cref="ArgumentException">A value is invalid; <see cref="ArgumentException.ParamName"/> names the option.</exception>
    internal PostgreSqlLogOptions Validate()
    {
        if (string.IsNullOrEmpty(Prefix) || Prefix.Length > SqlIdentifier.MaxLength || !Prefix.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-'))
        {
            throw new ArgumentException(
                $"{nameof(PostgreSqlLogOptions)}.{nameof(Prefix)} '{Prefix}' is not valid: use 1 to {SqlIdentifier.MaxLength} ASCII letters, digits, underscores, dots or hyphens.",
                $"{nameof(PostgreSqlLogOptions)}.{nameof(Prefix)}");
        }

        if (string.IsNullOrEmpty(SlotName) || SlotName.Length > SqlIdentifier.MaxLength || !SlotName.All(c => char.IsAsciiDigit(c) || char.IsAsciiLetterLower(c) || c == '_'))
        {
            throw new ArgumentException(
                $"{nameof(PostgreSqlLogOptions)}.{nameof(SlotName)} '{SlotName}' is not a valid replication slot name: use 1 to {SqlIdentifier.MaxLength} lowercase ASCII letters, digits and underscores.",
                $"{nameof(PostgreSqlLogOptions)}.{nameof(SlotName)}");
        }

        SqlIdentifier.Validate(PublicationName, $"{nameof(PostgreSqlLogOptions)}.{nameof(PublicationName)}");
        SqlIdentifier.Validate(SchemaName, $"{nameof(PostgreSqlLogOptions)}.{nameof(SchemaName)}");
        SqlIdentifier.Validate(DeadLetterTableName, $"{nameof(PostgreSqlLogOptions)}.{nameof(DeadLetterTableName)}");
        return this;
    }
}
