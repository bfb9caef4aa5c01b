using System.Diagnostics;
using Npgsql;
using Outboxer.PostgreSql;

namespace Outboxer.Benchmarks;

/// <summary>PostgreSQL helpers: server settings, a fresh schema per workload, and the fast SQL backlog fill.</summary>
internal static class Database
{
    public const string Schema = "outboxer_bench";
    public const string Table = "outbox_messages";

    public static PostgreSqlOutboxStoreOptions StoreOptions => new() { SchemaName = Schema, TableName = Table, PrepareStatements = Prepare, ClaimByRowLock = ClaimByRowLock };

    /// <summary>Gets or sets PostgreSqlOutboxStoreOptions.ClaimByRowLock of every store (--lease-claims turns it off).</summary>
    public static bool ClaimByRowLock { get; set; } = true;

    /// <summary>Gets or sets PostgreSqlOutboxStoreOptions.PrepareStatements of every store (--no-prepare turns it off).</summary>
    public static bool Prepare { get; set; } = true;

    public static async Task<string> ShowAsync(NpgsqlDataSource dataSource, string setting)
    {
        await using var command = dataSource.CreateCommand($"SHOW {setting}");
        return (string)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Drops the benchmark schema with everything in it and creates the outbox table again, empty.</summary>
    public static async Task ResetAsync(NpgsqlDataSource dataSource)
    {
        await DropAsync(dataSource);
        await new PostgreSqlOutboxStore(dataSource, StoreOptions).MigrateAsync();
    }

    /// <summary>
    /// What-if: disables the table's NOTIFY trigger. PostgreSQL serializes the commits of every transaction that sent a NOTIFY (a
    /// global lock taken before the commit record is flushed and held until the commit is done), so with fsync on the trigger caps
    /// enqueuing transactions at about one per WAL flush. Without it a dispatcher is woken only by its own process's enqueues and polling.
    /// </summary>
    public static async Task DisableNotifyTriggerAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand($"ALTER TABLE \"{Schema}\".\"{Table}\" DISABLE TRIGGER \"{Table}_notify\"");
        await command.ExecuteNonQueryAsync();
    }

    public static async Task DropAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{Schema}\" CASCADE");
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// Inserts <paramref name="count"/> pending messages straight in SQL (no EnqueueAsync), with the columns and values the store
    /// writes: a random uuid, the 256-byte payload (<see cref="Payloads"/> layout), the options JSON the library produces, no headers.
    /// Then ANALYZE (a real backlog has statistics) and CHECKPOINT (so the drain does not pay for writing the fill's pages).
    /// </summary>
    public static async Task FillAsync(NpgsqlDataSource dataSource, int count, long tag, string routingKey)
    {
        const int chunk = 100_000;
        var started = Stopwatch.GetTimestamp();
        var options = Payloads.OptionsJson(routingKey);
        for (var from = 0; from < count; from += chunk)
        {
            var to = Math.Min(count, from + chunk) - 1;
            await using var command = dataSource.CreateCommand($"""
                INSERT INTO "{Schema}"."{Table}" (message_id, payload, options, headers, created_at)
                SELECT gen_random_uuid(),
                       int8send(g) || int8send($3::bigint) || decode(repeat('{Payloads.Filler:x2}', {Payloads.Size - Payloads.HeaderSize}), 'hex'),
                       $4::jsonb, NULL, now()
                FROM generate_series($1::bigint, $2::bigint) AS g
                ORDER BY g
                """);
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = from });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = to });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = tag });
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = options });
            command.CommandTimeout = 600;
            await command.ExecuteNonQueryAsync();
            if (count > chunk)
            {
                Console.Error.WriteLine($"  filled {to + 1:N0} / {count:N0} rows ({Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s)");
            }
        }

        foreach (var sql in new[] { $"ANALYZE \"{Schema}\".\"{Table}\"", "CHECKPOINT" })
        {
            await using var command = dataSource.CreateCommand(sql);
            command.CommandTimeout = 600;
            await command.ExecuteNonQueryAsync();
        }
    }

    public static async Task<long> CountAsync(NpgsqlDataSource dataSource, bool pendingOnly)
    {
        await using var command = dataSource.CreateCommand(
            $"SELECT count(*) FROM \"{Schema}\".\"{Table}\"" + (pendingOnly ? " WHERE NOT dispatched" : string.Empty));
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
