using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Npgsql;

namespace Outboxer.Benchmarks;

/// <summary>
/// <c>--pg-profile</c>: where PostgreSQL's time goes in a workload. Before it, pg_stat_statements, the database's statistics and the
/// WAL statistics are reset; after it (once its connections closed, so every backend flushed its counters) it reads, per statement,
/// calls, rows, execution time, shared blocks and WAL; for the workload's table the inserts, updates, HOT updates and deletes; for
/// each index its size and block accesses; the trigger functions' time (track_functions = pl); and the WAL the server wrote.
/// </summary>
/// <remarks>
/// Needs <c>shared_preload_libraries = pg_stat_statements</c>, which bench/run.sh sets on the private PostgreSQL it starts (with
/// <c>pg_stat_statements.track = all</c>, so the statements inside the notify trigger show up too, and <c>track_functions = pl</c>).
/// The shared test server is never restarted by the benchmark, so against it this fails with a clear message.
/// </remarks>
internal static class PgProfile
{
    private static bool s_ready;

    public static async Task ResetAsync(NpgsqlDataSource admin)
    {
        if (!s_ready)
        {
            await using (var check = admin.CreateCommand("SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'"))
            {
                if (!(bool)(await check.ExecuteScalarAsync())!)
                {
                    throw new InvalidOperationException(
                        "--pg-profile needs shared_preload_libraries = pg_stat_statements: run through bash bench/run.sh, which starts its private PostgreSQL with it "
                        + "(a private PostgreSQL left running by an older run.sh lacks it: stop it, or rm -rf /tmp/outboxer-bench).");
                }
            }

            await using var create = admin.CreateCommand("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
            await create.ExecuteNonQueryAsync();
            s_ready = true;
        }

        await using var reset = admin.CreateCommand("SELECT pg_stat_statements_reset(); SELECT pg_stat_reset(); SELECT pg_stat_reset_shared('wal')");
        await reset.ExecuteNonQueryAsync();
    }

    public static async Task<JsonObject> CollectAsync(NpgsqlDataSource admin, string schema, int messages)
    {
        // Backends flush their table statistics when they exit (the workload's pools are closed by now) or after being idle a while.
        await Task.Delay(1500);
        var per10k = 10_000.0 / Math.Max(1, messages);
        var json = new JsonObject { ["schema"] = schema, ["messages"] = messages };

        var statements = new JsonArray();
        double totalMs = 0;
        long totalCalls = 0;
        await using (var command = admin.CreateCommand("""
            SELECT regexp_replace(query, '\s+', ' ', 'g'), toplevel, calls, rows, total_exec_time, total_plan_time,
                   shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, wal_records, wal_fpi, wal_bytes::bigint
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND query NOT ILIKE '%pg_stat%' AND query NOT ILIKE '%pg_total_relation_size%'
            ORDER BY total_exec_time DESC
            """))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                var toplevel = reader.GetBoolean(1);
                var ms = reader.GetDouble(4);
                if (toplevel)
                {
                    totalMs += ms;
                    totalCalls += reader.GetInt64(2);
                }

                if (statements.Count < 12)
                {
                    var query = reader.GetString(0);
                    statements.Add(new JsonObject
                    {
                        ["query"] = query.Length > 200 ? query[..200] + "..." : query,
                        ["toplevel"] = toplevel,
                        ["calls"] = reader.GetInt64(2),
                        ["rows"] = reader.GetInt64(3),
                        ["total_ms"] = Math.Round(ms, 1),
                        ["ms_per_10k_messages"] = Math.Round(ms * per10k, 1),
                        ["plan_ms"] = Math.Round(reader.GetDouble(5), 1),
                        ["shared_blks_hit"] = reader.GetInt64(6),
                        ["shared_blks_read"] = reader.GetInt64(7),
                        ["shared_blks_dirtied"] = reader.GetInt64(8),
                        ["shared_blks_written"] = reader.GetInt64(9),
                        ["wal_records"] = reader.GetInt64(10),
                        ["wal_fpi"] = reader.GetInt64(11),
                        ["wal_bytes"] = reader.GetInt64(12),
                    });
                }
            }
        }

        json["statements_total_ms"] = Math.Round(totalMs, 1);
        json["statements_ms_per_10k_messages"] = Math.Round(totalMs * per10k, 1);
        json["statement_calls_per_message"] = Math.Round(totalCalls / (double)Math.Max(1, messages), 3);
        json["statements"] = statements;

        await using (var command = admin.CreateCommand("""
            SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_dead_tup, seq_scan, idx_scan,
                   pg_relation_size(relid), pg_total_relation_size(relid)
            FROM pg_stat_user_tables WHERE schemaname = $1
            """))
        {
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = schema });
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                var updates = reader.GetInt64(2);
                json["table"] = new JsonObject
                {
                    ["name"] = reader.GetString(0),
                    ["inserts"] = reader.GetInt64(1),
                    ["updates"] = updates,
                    ["hot_updates"] = reader.GetInt64(3),
                    ["hot_ratio"] = updates > 0 ? Math.Round(reader.GetInt64(3) / (double)updates, 3) : null,
                    ["updates_per_message"] = Math.Round(updates / (double)Math.Max(1, messages), 3),
                    ["deletes"] = reader.GetInt64(4),
                    ["dead_tuples"] = reader.GetInt64(5),
                    ["seq_scans"] = reader.GetInt64(6),
                    ["index_scans"] = reader.IsDBNull(7) ? null : reader.GetInt64(7),
                    ["heap_bytes"] = reader.GetInt64(8),
                    ["total_bytes"] = reader.GetInt64(9),
                };
            }
        }

        var indexes = new JsonArray();
        await using (var command = admin.CreateCommand("""
            SELECT s.indexrelname, s.idx_scan, s.idx_tup_read, io.idx_blks_hit, io.idx_blks_read, pg_relation_size(s.indexrelid)
            FROM pg_stat_user_indexes s JOIN pg_statio_user_indexes io USING (indexrelid)
            WHERE s.schemaname = $1 ORDER BY s.indexrelname
            """))
        {
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = schema });
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                indexes.Add(new JsonObject
                {
                    ["name"] = reader.GetString(0),
                    ["scans"] = reader.GetInt64(1),
                    ["tuples_read"] = reader.GetInt64(2),
                    ["blks_hit"] = reader.GetInt64(3),
                    ["blks_read"] = reader.GetInt64(4),
                    ["blks_per_message"] = Math.Round((reader.GetInt64(3) + reader.GetInt64(4)) / (double)Math.Max(1, messages), 2),
                    ["bytes"] = reader.GetInt64(5),
                });
            }
        }

        json["indexes"] = indexes;

        var functions = new JsonArray();
        await using (var command = admin.CreateCommand("SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions WHERE schemaname = $1"))
        {
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = schema });
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                functions.Add(new JsonObject
                {
                    ["name"] = reader.GetString(0),
                    ["calls"] = reader.GetInt64(1),
                    ["total_ms"] = Math.Round(reader.GetDouble(2), 1),
                    ["self_ms"] = Math.Round(reader.GetDouble(3), 1),
                });
            }
        }

        json["functions"] = functions;

        await using (var command = admin.CreateCommand("SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_write, wal_sync FROM pg_stat_wal"))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            if (await reader.ReadAsync())
            {
                json["wal"] = new JsonObject
                {
                    ["records"] = reader.GetInt64(0),
                    ["full_page_images"] = reader.GetInt64(1),
                    ["bytes"] = reader.GetInt64(2),
                    ["bytes_per_message"] = Math.Round(reader.GetInt64(2) / (double)Math.Max(1, messages), 0),
                    ["writes"] = reader.GetInt64(3),
                    ["syncs"] = reader.GetInt64(4),
                };
            }
        }

        return json;
    }

    /// <summary>The closing markdown report: per profiled workload, its statements and its table's HOT ratio and indexes.</summary>
    public static string Table(IEnumerable<Result> results)
    {
        var text = new StringBuilder();
        foreach (var r in results.Where(r => r.PgProfile is not null))
        {
            var p = r.PgProfile!;
            if (text.Length == 0)
            {
                text.AppendLine("Where PostgreSQL's time goes (--pg-profile: pg_stat_statements, pg_stat_user_tables/indexes/functions, pg_stat_wal; per workload):");
                text.AppendLine();
            }

            var table = p["table"];
            var wal = p["wal"];
            text.AppendLine(CultureInfo.InvariantCulture,
                $"**{r.Workload}** ({p["messages"]:N0} messages): statements {p["statements_total_ms"]} ms in all, {p["statements_ms_per_10k_messages"]} ms per 10k messages, "
                + $"{p["statement_calls_per_message"]} statements per message; table {table?["name"]}: {table?["inserts"]} inserts, {table?["updates"]} updates "
                + $"({table?["updates_per_message"]} per message, HOT ratio {table?["hot_ratio"]}), {table?["deletes"]} deletes; "
                + $"WAL {wal?["bytes_per_message"]} bytes per message ({wal?["full_page_images"]} full-page images, {wal?["syncs"]} syncs).");
            text.AppendLine();
            text.AppendLine("| statement | top | calls | rows | total ms | ms / 10k msgs | blks hit / read / dirtied / written | WAL bytes |");
            text.AppendLine("|---|---|--:|--:|--:|--:|--:|--:|");
            foreach (var s in p["statements"]!.AsArray())
            {
                var query = ((string)s!["query"]!).Replace("|", "\\|", StringComparison.Ordinal);
                if (query.Length > 110)
                {
                    query = query[..110] + "...";
                }

                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| `{query}` | {((bool)s["toplevel"]! ? "yes" : "nested")} | {s["calls"]} | {s["rows"]} | {s["total_ms"]} | {s["ms_per_10k_messages"]} | {s["shared_blks_hit"]} / {s["shared_blks_read"]} / {s["shared_blks_dirtied"]} / {s["shared_blks_written"]} | {s["wal_bytes"]} |");
            }

            text.AppendLine();
            var indexes = string.Join("; ", p["indexes"]!.AsArray().Select(i => $"{i!["name"]} {(long)i["bytes"]! / 1024} kB, {i["blks_per_message"]} blocks/msg"));
            var functions = string.Join("; ", p["functions"]!.AsArray().Select(f => $"{f!["name"]} {f["calls"]} calls {f["total_ms"]} ms"));
            text.AppendLine("Indexes: " + indexes + "." + (functions.Length > 0 ? " Trigger functions: " + functions + "." : string.Empty));
            text.AppendLine();
        }

        return text.ToString();
    }
}
