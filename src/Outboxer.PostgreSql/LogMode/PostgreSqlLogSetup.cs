using Npgsql;
using NpgsqlTypes;

namespace Outboxer.PostgreSql;

/// <summary>
/// Creates, checks and reports what an outbox in log mode needs in PostgreSQL: <c>wal_level = logical</c>, a role allowed to replicate,
/// the publication, the logical replication slot (plugin <c>pgoutput</c>) and the dead-letter table. <c>outboxer logmode setup|status</c>
/// runs it from the command line.
/// </summary>
/// <remarks>The setup does not own the <see cref="NpgsqlDataSource"/>: dispose it yourself.</remarks>
public sealed class PostgreSqlLogSetup
{
    private const string StatusSql = """
        SELECT current_setting('wal_level'),
            (SELECT r.rolreplication OR r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
                OR EXISTS (SELECT FROM pg_catalog.pg_roles g WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'member')),
            EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = $2),
            to_regclass($3) IS NOT NULL,
            (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'max_slot_wal_keep_size'),
            s.slot_name IS NOT NULL, s.plugin, s.slot_type, s.database, s.active, s.active_pid,
            CASE WHEN s.confirmed_flush_lsn IS NOT NULL AND NOT pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::bigint END,
            CASE WHEN s.restart_lsn IS NOT NULL AND NOT pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.restart_lsn)::bigint END,
            s.wal_status, s.safe_wal_size,
            (SELECT EXTRACT(EPOCH FROM r.flush_lag)::float8 FROM pg_catalog.pg_stat_replication r WHERE r.pid = s.active_pid),
            current_database()
        FROM (SELECT 1) AS one
        LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1
        """;

    private readonly NpgsqlDataSource _dataSource;
    private readonly PostgreSqlLogOptions _options;

    /// <summary>Initializes the setup of the log mode in the database that <paramref name="dataSource"/> connects to.</summary>
    /// <param name="dataSource">The database's data source.</param>
    /// <param name="options">The names of the slot, the publication and the dead-letter table; <see langword="null"/> for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; <see cref="ArgumentException.ParamName"/> names it.</exception>
    public PostgreSqlLogSetup(NpgsqlDataSource dataSource, PostgreSqlLogOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        _dataSource = dataSource;
        var given = options ?? new PostgreSqlLogOptions();
        _options = new PostgreSqlLogOptions
        {
            Prefix = given.Prefix,
            SlotName = given.SlotName,
            PublicationName = given.PublicationName,
            SchemaName = given.SchemaName,
            DeadLetterTableName = given.DeadLetterTableName,
        }.Validate();
    }

    /// <summary>Gets the SQL that creates the dead-letter table, for teams that manage their schema themselves (safe to run again).</summary>
    /// <param name="options">The names; <see langword="null"/> for the defaults.</param>
    /// <returns>The DDL script.</returns>
    /// <exception cref="ArgumentException">A name is invalid.</exception>
    public static string GetDeadLetterTableScript(PostgreSqlLogOptions? options = null)
    {
        var o = (options ?? new PostgreSqlLogOptions()).Validate();
        return $"""
            CREATE SCHEMA IF NOT EXISTS "{o.SchemaName}";
            CREATE TABLE IF NOT EXISTS {o.DeadLetterTable} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                slot_name text NOT NULL,
                lsn pg_lsn NOT NULL,
                message_id uuid,
                destination text,
                envelope bytea NOT NULL,
                error text NOT NULL,
                dead_lettered_at timestamptz NOT NULL
            );
            COMMENT ON TABLE {o.DeadLetterTable} IS 'Outboxer log mode dead letters: messages the broker refused for good (envelope version 1).';

            """;
    }

    /// <summary>
    /// Reads the state of the log mode: settings, privilege, slot, publication, lag, retained log and dead letters, with every problem found.
    /// </summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The state.</returns>
    /// <exception cref="OutboxException">The database could not be read.</exception>
    public async Task<PostgreSqlLogStatus> GetStatusAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                return await ReadStatusAsync(connection, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (NpgsqlException ex)
        {
            throw new OutboxException($"Could not read the state of the log mode (slot {_options.SlotName}): {ex.Message}", ex.IsTransient, ex);
        }
    }

    /// <summary>Checks that the relay can run: throws one exception listing every problem, each with what to do.</summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The state, when there is no problem.</returns>
    /// <exception cref="OutboxException">A problem stops the log mode (not transient), or the database could not be read.</exception>
    public async Task<PostgreSqlLogStatus> CheckAsync(CancellationToken cancellationToken = default)
    {
        var status = await GetStatusAsync(cancellationToken).ConfigureAwait(false);
        if (status.Problems.Count > 0)
        {
            throw new OutboxException($"The log mode cannot run: {string.Join(" ", status.Problems)}", isTransient: false);
        }

        return status;
    }

    /// <summary>
    /// Creates what is missing: the dead-letter table, the publication (with no table: the slot then decodes no row changes, only logical
    /// decoding messages) and the replication slot (plugin <c>pgoutput</c>). Safe to run again; refuses with a clear error when
    /// <c>wal_level</c> is not <c>logical</c> or the role may not replicate.
    /// </summary>
    /// <remarks>
    /// The slot retains the write-ahead log from the moment it is created: create it before the first message is written in log mode,
    /// and drop it (<see cref="DropAsync"/>) when the outbox leaves log mode, or it retains the log forever.
    /// </remarks>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>The state afterwards.</returns>
    /// <exception cref="OutboxException">The server's settings or the role's privileges do not allow it, or the database failed.</exception>
    public async Task<PostgreSqlLogStatus> SetupAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var status = await ReadStatusAsync(connection, cancellationToken).ConfigureAwait(false);
                // What setup cannot fix; a missing slot, publication or table it creates.
                var blocking = status.Problems.Where(p => !p.Contains("does not exist", StringComparison.Ordinal)).ToList();
                if (blocking.Count > 0)
                {
                    throw new OutboxException($"The log mode cannot be set up: {string.Join(" ", blocking)}", isTransient: false);
                }

                if (!status.DeadLetterTableExists)
                {
                    await ExecuteAsync(connection, GetDeadLetterTableScript(_options), cancellationToken).ConfigureAwait(false);
                }

                if (!status.PublicationExists)
                {
                    await ExecuteAsync(connection, $"CREATE PUBLICATION \"{_options.PublicationName}\"", cancellationToken).ConfigureAwait(false);
                }

                if (!status.SlotExists)
                {
                    var create = new NpgsqlCommand("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", connection);
                    await using (create.ConfigureAwait(false))
                    {
                        create.Parameters.Add(new NpgsqlParameter { Value = _options.SlotName, NpgsqlDbType = NpgsqlDbType.Text });
                        await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                    }
                }

                return await ReadStatusAsync(connection, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.DuplicateObject)
        {
            // Another process created it meanwhile.
            return await GetStatusAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (NpgsqlException ex)
        {
            throw new OutboxException($"Could not set up the log mode (slot {_options.SlotName}, publication {_options.PublicationName}): {ex.Message}", ex.IsTransient, ex);
        }
    }

    /// <summary>
    /// Drops the replication slot and the publication (when they exist), so that the slot retains no more write-ahead log. Messages
    /// written into the log and not yet relayed are lost with the slot: drain first. The dead-letter table stays.
    /// </summary>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>A task that completes when both are gone.</returns>
    /// <exception cref="OutboxException">A relay is consuming the slot (stop it first), or the database failed.</exception>
    public async Task DropAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var drop = new NpgsqlCommand("SELECT pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", connection);
                await using (drop.ConfigureAwait(false))
                {
                    drop.Parameters.Add(new NpgsqlParameter { Value = _options.SlotName, NpgsqlDbType = NpgsqlDbType.Text });
                    await drop.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                await ExecuteAsync(connection, $"DROP PUBLICATION IF EXISTS \"{_options.PublicationName}\"", cancellationToken).ConfigureAwait(false);
            }
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ObjectInUse)
        {
            throw new OutboxException($"The replication slot {_options.SlotName} is in use by a relay; stop it before dropping the slot. {ex.MessageText}", isTransient: true, ex);
        }
        catch (NpgsqlException ex)
        {
            throw new OutboxException($"Could not drop the log mode's slot {_options.SlotName} and publication {_options.PublicationName}: {ex.Message}", ex.IsTransient, ex);
        }
    }

    /// <summary>
    /// Writes dead letters back into the write-ahead log (each in its envelope, unchanged) and deletes them from the dead-letter table, in
    /// one transaction: the relay publishes them again, after everything committed before.
    /// </summary>
    /// <param name="ids">The dead letters' ids; <see langword="null"/> for all of them.</param>
    /// <param name="cancellationToken">A token to cancel the operation.</param>
    /// <returns>How many were requeued.</returns>
    /// <exception cref="OutboxException">The database failed.</exception>
    public async Task<int> RequeueDeadLettersAsync(IReadOnlyCollection<long>? ids = null, CancellationToken cancellationToken = default)
    {
        try
        {
            var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var command = new NpgsqlCommand(
                    $"""
                    WITH moved AS (DELETE FROM {_options.DeadLetterTable} WHERE slot_name = $3 AND ($2::bigint[] IS NULL OR id = ANY($2)) RETURNING id, envelope)
                    SELECT count(*) FROM (SELECT pg_logical_emit_message(true, $1, m.envelope) FROM (SELECT id, envelope FROM moved ORDER BY id) AS m) AS emitted
                    """,
                    connection);
                await using (command.ConfigureAwait(false))
                {
                    command.Parameters.Add(new NpgsqlParameter { Value = _options.Prefix, NpgsqlDbType = NpgsqlDbType.Text });
                    command.Parameters.Add(new NpgsqlParameter { Value = ids is null ? DBNull.Value : ids.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
                    command.Parameters.Add(new NpgsqlParameter { Value = _options.SlotName, NpgsqlDbType = NpgsqlDbType.Text });
                    return Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture);
                }
            }
        }
        catch (NpgsqlException ex)
        {
            throw new OutboxException($"Could not requeue the log mode's dead letters in {_options.DeadLetterTable}: {ex.Message}", ex.IsTransient, ex);
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(sql, connection);
        await using (command.ConfigureAwait(false))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<PostgreSqlLogStatus> ReadStatusAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(StatusSql, connection);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = _options.SlotName, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = _options.PublicationName, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = _options.DeadLetterTable, NpgsqlDbType = NpgsqlDbType.Text });
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            string walLevel, database;
            bool canReplicate, publication, table, slot, active;
            string? plugin, slotType, slotDatabase, walStatus;
            long maxKeep;
            int? activePid;
            long? lag, retained, safe;
            double? lagSeconds;
            await using (reader.ConfigureAwait(false))
            {
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                walLevel = reader.GetString(0);
                canReplicate = !reader.IsDBNull(1) && reader.GetBoolean(1);
                publication = reader.GetBoolean(2);
                table = reader.GetBoolean(3);
                maxKeep = reader.IsDBNull(4) ? -1 : reader.GetInt64(4);
                slot = reader.GetBoolean(5);
                plugin = reader.IsDBNull(6) ? null : reader.GetString(6);
                slotType = reader.IsDBNull(7) ? null : reader.GetString(7);
                slotDatabase = reader.IsDBNull(8) ? null : reader.GetString(8);
                active = !reader.IsDBNull(9) && reader.GetBoolean(9);
                activePid = reader.IsDBNull(10) ? null : reader.GetInt32(10);
                lag = reader.IsDBNull(11) ? null : reader.GetInt64(11);
                retained = reader.IsDBNull(12) ? null : reader.GetInt64(12);
                walStatus = reader.IsDBNull(13) ? null : reader.GetString(13);
                safe = reader.IsDBNull(14) ? null : reader.GetInt64(14);
                lagSeconds = reader.IsDBNull(15) ? null : reader.GetDouble(15);
                database = reader.GetString(16);
            }

            var problems = new List<string>();
            if (!string.Equals(walLevel, "logical", StringComparison.Ordinal))
            {
                problems.Add($"wal_level is '{walLevel}'; the log mode needs 'logical': run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL (on a managed service, see the README's list of parameters).");
            }

            if (!canReplicate)
            {
                problems.Add($"The role has no REPLICATION attribute; grant it (ALTER ROLE ... REPLICATION, or on Amazon RDS: GRANT rds_replication TO ...), or run the relay as a role that has it.");
            }

            var usable = slot && plugin == "pgoutput" && slotType == "logical" && slotDatabase == database;
            if (!slot)
            {
                problems.Add($"The replication slot {_options.SlotName} does not exist; create it with `outboxer logmode setup` (PostgreSqlLogSetup.SetupAsync).");
            }
            else if (!usable)
            {
                problems.Add($"The replication slot {_options.SlotName} belongs to another database or plugin (database {slotDatabase ?? "none"}, plugin {plugin ?? "none"}); choose another slot name.");
            }

            if (!publication)
            {
                problems.Add($"The publication {_options.PublicationName} does not exist; create it with `outboxer logmode setup` (PostgreSqlLogSetup.SetupAsync).");
            }

            if (!table)
            {
                problems.Add($"The dead-letter table {_options.DeadLetterTable} does not exist; create it with `outboxer logmode setup` (PostgreSqlLogSetup.SetupAsync).");
            }

            if (walStatus == "lost")
            {
                problems.Add($"The replication slot {_options.SlotName} is lost: it fell more than max_slot_wal_keep_size behind, and the log it needed is gone with the messages in it. Drop it and set up again (`outboxer logmode setup`), then recover the missing messages from their source.");
            }

            long deadLetters = 0;
            if (table)
            {
                var count = new NpgsqlCommand($"SELECT count(*) FROM {_options.DeadLetterTable} WHERE slot_name = $1", connection);
                await using (count.ConfigureAwait(false))
                {
                    count.Parameters.Add(new NpgsqlParameter { Value = _options.SlotName, NpgsqlDbType = NpgsqlDbType.Text });
                    deadLetters = (long)(await count.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
                }
            }

            return new PostgreSqlLogStatus
            {
                SlotName = _options.SlotName,
                WalLevel = walLevel,
                CanReplicate = canReplicate,
                SlotExists = usable,
                PublicationExists = publication,
                DeadLetterTableExists = table,
                Active = active,
                ActivePid = activePid,
                LagBytes = lag,
                LagSeconds = lagSeconds,
                RetainedWalBytes = retained,
                WalStatus = walStatus,
                SafeWalSizeBytes = safe,
                MaxSlotWalKeepSizeMegabytes = maxKeep,
                DeadLetters = deadLetters,
                Problems = problems,
            };
        }
    }
}
