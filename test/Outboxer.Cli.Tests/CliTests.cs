using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;
using RabbitMQ.Client;
using Outboxer.Sqlite;
using Outboxer.Testing;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Cli.Tests;

/// <summary>Every verb of the CLI, run as a process against a fresh PostgreSQL schema per test.</summary>
public sealed class CliTests : IAsyncLifetime
{
    private readonly string _schema = "cli_" + Guid.NewGuid().ToString("N")[..12];
    private readonly NpgsqlDataSource _dataSource = NpgsqlDataSource.Create(PostgreSqlServer.ConnectionString);
    private readonly List<string> _files = [];

    private CancellationToken Token => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        // Fails (never skips) with a hint when the server is down.
        await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync();
            await using var drop = new NpgsqlCommand($"DROP SCHEMA IF EXISTS \"{_schema}\" CASCADE", connection);
            await drop.ExecuteNonQueryAsync();
        }
        finally
        {
            await _dataSource.DisposeAsync();
            foreach (var file in _files)
            {
                File.Delete(file);
            }
        }
    }

    [Fact]
    public async Task Schema_script_prints_the_ddl_naming_the_schema_and_table_without_a_database()
    {
        var result = await Cli.RunAsync("schema", "script", "--schema", _schema, "--table", "events_outbox");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains($"CREATE SCHEMA \"{_schema}\"", result.Stdout, StringComparison.Ordinal);
        Assert.Contains($"CREATE TABLE IF NOT EXISTS \"{_schema}\".\"events_outbox\"", result.Stdout, StringComparison.Ordinal);
        Assert.Equal(PostgreSqlOutboxStore.GetCreateScript(new() { SchemaName = _schema, TableName = "events_outbox" }).Trim(), result.Stdout.Trim());

        var sqlite = await Cli.RunAsync("schema", "script", "--store", "sqlite", "--table", "events_outbox");
        Assert.True(sqlite.ExitCode == 0, sqlite.ToString());
        Assert.Equal(SqliteOutboxStore.GetCreateScript(new() { TableName = "events_outbox" }).Trim(), sqlite.Stdout.Trim());
    }

    [Fact]
    public async Task Schema_apply_creates_the_table_and_is_safe_to_run_again()
    {
        Assert.False(await TableExistsAsync());

        var first = await Cli.RunAsync(Store("schema", "apply"));
        var again = await Cli.RunAsync(Store("schema", "apply"));

        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.True(await TableExistsAsync());
        Assert.Equal(0, (await CreateOutbox(new RecordingPublisher()).GetStatisticsAsync(Token)).Pending);
    }

    [Fact]
    public async Task Schema_status_and_migrate_take_a_version_1_table_to_the_latest_layout_and_script_from_prints_only_the_later_steps()
    {
        var missing = await Cli.RunAsync(Store("schema", "status", "--json"));
        Assert.True(missing.ExitCode == 0, missing.ToString());
        Assert.Equal("missing", JsonDocument.Parse(missing.Stdout).RootElement.GetProperty("state").GetString());

        // A table as 0.1.0-preview.1 left it: the latest script's first step, and no version comment.
        var options = new PostgreSqlOutboxStoreOptions { SchemaName = _schema, CreateTableIfMissing = false, NotifyOnCommit = false };
        var version1 = PostgreSqlOutboxStore.GetCreateScript(options);
        version1 = version1[..version1.IndexOf("-- version 2:", StringComparison.Ordinal)];
        await using (var connection = await _dataSource.OpenConnectionAsync(Token))
        await using (var create = new NpgsqlCommand(version1.Replace("COMMENT ON TABLE", "-- ", StringComparison.Ordinal), connection))
        {
            await create.ExecuteNonQueryAsync(Token);
        }

        var latest = new PostgreSqlOutboxStore(_dataSource, options).LatestVersion;
        var older = await Cli.RunAsync(Store("schema", "status"));
        Assert.True(older.ExitCode == 0, older.ToString());
        Assert.Contains($"layout version 1, older than version {latest}", older.Stdout, StringComparison.Ordinal);
        Assert.Contains("outboxer schema migrate", older.Stdout, StringComparison.Ordinal);

        var refused = await Cli.RunAsync(Store("status"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("layout version 1", refused.Stderr, StringComparison.Ordinal);

        var migrated = await Cli.RunAsync(Store("schema", "migrate"));
        Assert.True(migrated.ExitCode == 0, migrated.ToString());
        Assert.Contains($"migrated from layout version 1 to version {latest}", migrated.Stdout, StringComparison.Ordinal);
        var current = await Cli.RunAsync(Store("schema", "status", "--json"));
        var json = JsonDocument.Parse(current.Stdout).RootElement;
        Assert.Equal("current", json.GetProperty("state").GetString());
        Assert.Equal(latest, json.GetProperty("version").GetInt32());
        Assert.Equal(0, (await CreateOutbox(new RecordingPublisher()).GetStatisticsAsync(Token)).Pending);

        var script = await Cli.RunAsync("schema", "script", "--schema", _schema, "--from", "1");
        Assert.True(script.ExitCode == 0, script.ToString());
        Assert.Equal(PostgreSqlOutboxStore.GetMigrationScript(new() { SchemaName = _schema }, 1).Trim(), script.Stdout.Trim());
        Assert.DoesNotContain("CREATE TABLE", script.Stdout, StringComparison.Ordinal);

        var wrong = await Cli.RunAsync("schema", "script", "--from", "7");
        Assert.Equal(2, wrong.ExitCode);
        Assert.Contains("--from 7 is not a layout version", wrong.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_reports_pending_in_flight_dead_lettered_and_the_oldest_pending_age_as_json_and_text()
    {
        await DeadLetterAsync(2);
        await EnqueueAsync(3);

        var json = await Cli.RunAsync(Store("status", "--json"));
        var text = await Cli.RunAsync(Store("status"));

        Assert.True(json.ExitCode == 0, json.ToString());
        using var document = JsonDocument.Parse(json.Stdout);
        var root = document.RootElement;
        Assert.Equal(3, root.GetProperty("pending").GetInt64());
        Assert.Equal(0, root.GetProperty("in_flight").GetInt64());
        Assert.Equal(2, root.GetProperty("dead_lettered").GetInt64());
        Assert.Equal(JsonValueKind.String, root.GetProperty("oldest_pending_created_at").ValueKind);
        Assert.True(root.GetProperty("oldest_pending_age_seconds").GetDouble() >= 0);
        var destination = Assert.Single(root.GetProperty("destinations").EnumerateArray().ToList());
        Assert.Equal(3, destination.GetProperty("pending").GetInt64());
        Assert.Equal(2, destination.GetProperty("dead_lettered").GetInt64());

        Assert.True(text.ExitCode == 0, text.ToString());
        Assert.Contains("pending:        3 (in flight: 0)", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("dead-lettered:  2", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("per destination", text.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_reads_its_settings_from_a_config_file()
    {
        await EnqueueAsync(1);
        var config = TempFile(".json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new { store = "postgres", connection = PostgreSqlServer.ConnectionString, schema = _schema }), Token);

        var result = await Cli.RunAsync("status", "--json", "--config", config);

        Assert.True(result.ExitCode == 0, result.ToString());
        using var document = JsonDocument.Parse(result.Stdout);
        Assert.Equal(1, document.RootElement.GetProperty("pending").GetInt64());
    }

    [Fact]
    public async Task Dead_letters_list_shows_them_with_their_error_page_by_page()
    {
        var ids = await DeadLetterAsync(3);

        var table = await Cli.RunAsync(Store("dead-letters", "list"));
        var json = await Cli.RunAsync(Store("dead-letters", "list", "--json"));
        var firstPage = await Cli.RunAsync(Store("dead-letters", "list", "--json", "--limit", "2"));
        var secondPage = await Cli.RunAsync(Store("dead-letters", "list", "--json", "--limit", "2", "--after-id", ids[1].ToString(System.Globalization.CultureInfo.InvariantCulture)));

        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("broken on purpose", table.Stdout, StringComparison.Ordinal);
        foreach (var id in ids)
        {
            Assert.Contains($" {id} ", table.Stdout, StringComparison.Ordinal);
        }

        Assert.True(json.ExitCode == 0, json.ToString());
        Assert.Equal(ids, IdsOf(json.Stdout));
        Assert.Equal(ids[..2], IdsOf(firstPage.Stdout));
        Assert.Equal(ids[2..], IdsOf(secondPage.Stdout));
    }

    [Fact]
    public async Task Requeue_by_id_with_yes_makes_that_dead_letter_pending_again()
    {
        var ids = await DeadLetterAsync(2);

        var result = await Cli.RunAsync(Store("dead-letters", "requeue", "--id", ids[0].ToString(System.Globalization.CultureInfo.InvariantCulture), "--yes"));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("requeued 1", result.Stdout, StringComparison.Ordinal);
        var outbox = CreateOutbox(new RecordingPublisher());
        Assert.Equal([ids[1]], (await outbox.GetDeadLettersAsync(cancellationToken: Token)).Select(m => m.Id));
        var statistics = await outbox.GetStatisticsAsync(Token);
        Assert.Equal(1, statistics.Pending);
        Assert.Equal(1, statistics.DeadLettered);
    }

    [Fact]
    public async Task Requeue_of_many_ids_goes_chunk_by_chunk()
    {
        var ids = await DeadLetterAsync(1203);
        var arguments = new List<string> { "dead-letters", "requeue", "--yes" };
        foreach (var id in ids)
        {
            arguments.Add("--id");
            arguments.Add(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var result = await Cli.RunAsync(Store([.. arguments]));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("requeued 1203", result.Stdout, StringComparison.Ordinal);
        var statistics = await CreateOutbox(new RecordingPublisher()).GetStatisticsAsync(Token);
        Assert.Equal(1203, statistics.Pending);
        Assert.Equal(0, statistics.DeadLettered);
    }

    [Fact]
    public async Task Purge_all_with_yes_deletes_every_dead_letter_and_nothing_else()
    {
        await DeadLetterAsync(3);
        await EnqueueAsync(2);

        var result = await Cli.RunAsync(Store("dead-letters", "purge", "--all", "--yes"));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("deleted 3", result.Stdout, StringComparison.Ordinal);
        var statistics = await CreateOutbox(new RecordingPublisher()).GetStatisticsAsync(Token);
        Assert.Equal(0, statistics.DeadLettered);
        Assert.Equal(2, statistics.Pending);
    }

    [Theory]
    [InlineData("purge")]
    [InlineData("requeue")]
    public async Task Without_yes_and_with_standard_input_redirected_it_refuses_with_exit_code_3_and_changes_nothing(string verb)
    {
        await DeadLetterAsync(2);

        var result = await Cli.RunAsync(Store("dead-letters", verb, "--all"));

        Assert.True(result.ExitCode == 3, result.ToString());
        Assert.Contains("--yes", result.Stderr, StringComparison.Ordinal);
        var statistics = await CreateOutbox(new RecordingPublisher()).GetStatisticsAsync(Token);
        Assert.Equal(2, statistics.DeadLettered);
        Assert.Equal(0, statistics.Pending);
    }

    [Theory]
    [InlineData("status", "--bogus")]
    [InlineData("dead-letters", "purge", "--yes")]
    [InlineData("dead-letters", "purge", "--all", "--id", "1", "--yes")]
    [InlineData("dead-letters", "list", "--limit", "0")]
    [InlineData("dead-letters", "list", "--limit", "many")]
    [InlineData("dead-letters")]
    [InlineData("status", "--store", "oracle")]
    [InlineData("relay", "--broker", "kafka")]
    [InlineData("relay", "--broker", "rabbitmq")]
    [InlineData("relay", "--broker", "jsonlines", "--batch-size", "0")]
    [InlineData("relay", "--broker", "jsonlines", "--batches-in-flight", "0")]
    [InlineData("schema", "script", "--table", "bad name")]
    public async Task A_bad_or_missing_option_gives_exit_code_2(params string[] arguments)
    {
        // Nothing from the environment fills a missing option in (eng/servers.sh env exports a RabbitMQ address).
        var start = Cli.StartInfo(Store(arguments));
        start.Environment.Remove("OUTBOXER_RABBITMQ_URI");
        start.Environment.Remove("OUTBOXER_RABBITMQ_URL");
        var (exitCode, stdout, stderr) = await Repository.RunToExitAsync(start, Cli.Bound);
        var result = new CliResult(exitCode, stdout, stderr);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("error", result.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task A_missing_connection_string_gives_exit_code_2()
    {
        var start = Cli.StartInfo("status");
        start.Environment.Remove("OUTBOXER_CONNECTION");
        start.Environment.Remove("OUTBOXER_POSTGRES_URL");
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stderr = process.StandardError.ReadToEndAsync(Token);
        await process.WaitForExitAsync(Token).WaitAsync(Cli.Bound, Token);

        Assert.Equal(2, process.ExitCode);
        Assert.Contains("connection string is required", await stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_variables_that_eng_servers_sh_env_exports_are_enough_for_the_cli()
    {
        async Task<CliResult> RunAsync(params string[] arguments)
        {
            var start = Cli.StartInfo(arguments);
            start.Environment.Remove("OUTBOXER_CONNECTION");
            start.Environment.Remove("OUTBOXER_RABBITMQ_URI");
            start.Environment["OUTBOXER_POSTGRES_URL"] = PostgreSqlServer.ConnectionString;
            start.Environment["OUTBOXER_RABBITMQ_URL"] = RabbitMQServer.Url.ToString();
            var (exitCode, stdout, stderr) = await Repository.RunToExitAsync(start, Cli.Bound);
            return new CliResult(exitCode, stdout, stderr);
        }

        var apply = await RunAsync("schema", "apply", "--schema", _schema);
        var status = await RunAsync("status", "--schema", _schema, "--json");
        var relay = await RunAsync("relay", "--once", "--broker", "rabbitmq", "--schema", _schema);

        Assert.True(apply.ExitCode == 0, apply.ToString());
        Assert.True(status.ExitCode == 0, status.ToString());
        Assert.True(relay.ExitCode == 0, relay.ToString());
    }

    [Fact]
    public async Task Status_of_a_missing_table_says_how_to_create_it_instead_of_a_raw_sql_state()
    {
        var result = await Cli.RunAsync(Store("status"));

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("outboxer schema", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("42P01", result.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--table")]
    [InlineData("--schema")]
    public async Task A_bad_name_is_reported_with_its_flag_and_its_value_once(string flag)
    {
        var value = "bad;name_" + Guid.NewGuid().ToString("N")[..6];

        var result = await Cli.RunAsync("status", "--connection", PostgreSqlServer.ConnectionString, flag, value);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains($"{flag} '{value}'", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("OutboxStoreOptions", result.Output, StringComparison.Ordinal);
        Assert.Single(result.Output.Split(value).Skip(1));
    }

    [Theory]
    [InlineData("status")]
    [InlineData("dead-letters", "list")]
    [InlineData("dead-letters", "purge", "--all", "--yes")]
    [InlineData("schema", "apply")]
    [InlineData("relay", "--once", "--broker", "jsonlines")]
    public async Task An_unreachable_database_gives_exit_code_1_and_never_shows_the_password(params string[] arguments)
    {
        var password = "pw-" + Guid.NewGuid().ToString("N");
        var connection = $"Host=127.0.0.1;Port=1;Username=postgres;Password={password};Database=outboxer;Timeout=5";

        var result = await Cli.RunAsync([.. arguments, "--connection", connection, "--schema", _schema]);

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("error:", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(password, result.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("status", "{0}")]
    [InlineData("status", "--conection", "{0}")]
    [InlineData("dead-letters", "list", "--rabbitmq-uri", "amqp://user:{1}@127.0.0.1:1/")]
    public async Task A_parse_error_never_shows_a_password_that_an_argument_carries(params string[] arguments)
    {
        var password = "pw-" + Guid.NewGuid().ToString("N");
        var connection = $"Host=127.0.0.1;Username=postgres;Password={password}";

        var result = await Cli.RunAsync([.. arguments.Select(a => string.Format(System.Globalization.CultureInfo.InvariantCulture, a, connection, password))]);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("error:", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(password, result.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("postgres", "Host=127.0.0.1;Colour=blue;Password={0}", "PostgreSQL")]
    [InlineData("sqlite", "Data Source=x.db;Colour=blue;Password={0}", "SQLite")]
    public async Task A_connection_string_the_provider_cannot_read_is_a_usage_error_naming_the_flag(string store, string connection, string provider)
    {
        var password = "pw-" + Guid.NewGuid().ToString("N");

        var result = await Cli.RunAsync("status", "--store", store, "--connection", string.Format(System.Globalization.CultureInfo.InvariantCulture, connection, password));

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains($"--connection is not a valid {provider} connection string", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("colour", result.Stderr, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(password, result.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_table_gives_exit_code_1_and_is_not_created_by_status()
    {
        var result = await Cli.RunAsync(Store("status"));

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.False(await TableExistsAsync());
    }

    [Fact]
    public async Task Relay_once_relays_the_pending_messages_to_a_json_lines_file_and_exits_0()
    {
        var ids = await EnqueueAsync(5);
        var output = TempFile(".jsonl");

        var result = await Cli.RunAsync(Store("relay", "--once", "--broker", "jsonlines", "--output", output));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("dispatched 5, failed 0", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(ids, IdsOf(await File.ReadAllTextAsync(output, Token)));
        Assert.Equal((byte)'{', (await File.ReadAllBytesAsync(output, Token))[0]); // JSON Lines: no byte order mark
        Assert.Equal(0, (await CreateOutbox(new RecordingPublisher()).GetStatisticsAsync(Token)).Pending);
    }

    [Fact]
    public async Task Relay_from_a_config_file_runs_until_SIGTERM_relaying_rows_committed_meanwhile_then_stops_gracefully()
    {
        var before = await EnqueueAsync(3);
        var output = TempFile(".jsonl");
        var config = TempFile(".json");
        await File.WriteAllTextAsync(
            config,
            JsonSerializer.Serialize(new
            {
                connection = PostgreSqlServer.ConnectionString,
                schema = _schema,
                broker = "jsonlines",
                output,
                outbox = new { CheckInterval = "00:00:00.200" },
            }),
            Token);

        using var process = Process.Start(Cli.StartInfo("relay", "--config", config))!;
        var stdout = process.StandardOutput.ReadToEndAsync(Token);
        var stderr = process.StandardError.ReadToEndAsync(Token);
        try
        {
            await WaitForLinesAsync(output, before.Length);
            var after = await EnqueueAsync(2);
            await WaitForLinesAsync(output, before.Length + after.Length);

            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync(Token).WaitAsync(Cli.Bound, Token);
            }

            await process.WaitForExitAsync(Token).WaitAsync(Cli.Bound, Token);
            var result = new CliResult(process.ExitCode, await stdout, await stderr);
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Contains("dispatched 5, failed 0", result.Stderr, StringComparison.Ordinal);
            var relayed = IdsOf(await ReadSharedAsync(output));
            Assert.Equal(before.Concat(after), relayed);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    [Fact]
    public async Task Dashboard_serves_the_pages_on_loopback_says_it_has_no_sign_in_and_stops_on_sigterm()
    {
        var dead = await DeadLetterAsync(2);
        await EnqueueAsync(3);

        using var process = Process.Start(Cli.StartInfo(Store("dashboard", "--port", "0", "--read-only")))!;
        var stderr = process.StandardError.ReadToEndAsync(Token);
        try
        {
            var first = await process.StandardOutput.ReadLineAsync(Token).AsTask().WaitAsync(Cli.Bound, Token);
            var second = await process.StandardOutput.ReadLineAsync(Token).AsTask().WaitAsync(Cli.Bound, Token);
            Assert.NotNull(first); // (standard error is read to its end only after the process exits)
            var url = System.Text.RegularExpressions.Regex.Match(first, "http://127\\.0\\.0\\.1:[0-9]+/").Value;
            Assert.NotEmpty(url);
            Assert.Contains($"\"{_schema}\".\"outbox_messages\"", first, StringComparison.Ordinal);
            Assert.Contains("read-only", first, StringComparison.Ordinal);
            Assert.Contains("No sign-in", second, StringComparison.Ordinal);

            using var http = new HttpClient { BaseAddress = new Uri(url) };
            var overview = await http.GetStringAsync("/", Token);
            Assert.Contains("data-figure=\"pending\" data-value=\"3\"", overview, StringComparison.Ordinal);
            Assert.Contains("data-figure=\"dead-letters\" data-value=\"2\"", overview, StringComparison.Ordinal);
            Assert.DoesNotContain("Host=", overview, StringComparison.OrdinalIgnoreCase);
            var deadLetters = await http.GetStringAsync("/dead-letters?outbox=outbox_messages", Token);
            Assert.Contains($"data-id=\"{dead[0]}\"", deadLetters, StringComparison.Ordinal);
            Assert.Contains("broken on purpose", deadLetters, StringComparison.Ordinal);
            using var post = await http.PostAsync("/dead-letters/purge", new FormUrlEncodedContent([new("outbox", "outbox_messages"), new("all", "true")]), Token);
            Assert.Equal(System.Net.HttpStatusCode.Forbidden, post.StatusCode);

            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync(Token).WaitAsync(Cli.Bound, Token);
            }

            await process.WaitForExitAsync(Token).WaitAsync(Cli.Bound, Token);
            Assert.True(process.ExitCode == 0, $"exit code {process.ExitCode}; stderr: {await stderr}");
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    [Fact]
    public async Task Relay_once_publishes_the_pending_messages_to_rabbitmq()
    {
        var queue = "outboxer_cli_" + Guid.NewGuid().ToString("N")[..12];
        await using var connection = await RabbitMQServer.ConnectAsync("Outboxer.Cli.Tests");
        await using var channel = await connection.CreateChannelAsync(cancellationToken: Token);
        await channel.QueueDeclareAsync(queue, durable: false, exclusive: false, autoDelete: false, cancellationToken: Token);
        try
        {
            await using (var outbox = CreateOutbox(new RecordingPublisher()))
            {
                for (var i = 0; i < 3; i++)
                {
                    var message = new OutboxMessage($"to rabbit {i}");
                    message.Options[RabbitMQOptionKeys.RoutingKey] = queue;
                    await outbox.SendAsync(message, Token);
                }
            }

            var result = await Cli.RunAsync(Store("relay", "--once", "--broker", "rabbitmq", "--rabbitmq-uri", RabbitMQServer.Url.OriginalString));

            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.Contains("dispatched 3, failed 0", result.Stderr, StringComparison.Ordinal);
            var received = new List<string>();
            while (await channel.BasicGetAsync(queue, autoAck: true, Token) is { } delivery)
            {
                received.Add(System.Text.Encoding.UTF8.GetString(delivery.Body.Span));
            }

            Assert.Equal(["to rabbit 0", "to rabbit 1", "to rabbit 2"], received.Order(StringComparer.Ordinal)); // no ordering key: any order
        }
        finally
        {
            await channel.QueueDeleteAsync(queue, cancellationToken: CancellationToken.None);
        }
    }

    [Fact]
    public async Task Sqlite_schema_apply_and_status_work_on_a_database_file()
    {
        var database = TempFile(".db");

        var apply = await Cli.RunAsync("schema", "apply", "--store", "sqlite", "--connection", database);
        var status = await Cli.RunAsync("status", "--json", "--store", "sqlite", "--connection", $"Data Source={database}");

        Assert.True(apply.ExitCode == 0, apply.ToString());
        Assert.True(status.ExitCode == 0, status.ToString());
        using var document = JsonDocument.Parse(status.Stdout);
        Assert.Equal(0, document.RootElement.GetProperty("pending").GetInt64());
    }

    private string[] Store(params string[] arguments) => [.. arguments, "--connection", PostgreSqlServer.ConnectionString, "--schema", _schema];

    private Outbox CreateOutbox(Providers.IOutboxPublisher publisher) =>
        new(new PostgreSqlOutboxStore(_dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = _schema }), publisher);

    private async Task<long[]> EnqueueAsync(int count)
    {
        await using var outbox = CreateOutbox(new RecordingPublisher());
        var ids = new long[count];
        for (var i = 0; i < count; i++)
        {
            ids[i] = await outbox.SendAsync(new OutboxMessage($"message {i}"), Token);
        }

        return ids;
    }

    /// <summary>Enqueues <paramref name="count"/> messages and dispatches them through a publisher that fails for good: they become dead letters.</summary>
    private async Task<long[]> DeadLetterAsync(int count)
    {
        var publisher = new RecordingPublisher { Fail = _ => new OutboxException("broken on purpose", isTransient: false) };
        await using var outbox = CreateOutbox(publisher);
        await using (var connection = await PostgreSqlServer.OpenAsync(_dataSource))
        await using (var transaction = await connection.BeginTransactionAsync(Token))
        {
            await outbox.EnqueueManyAsync(transaction, Enumerable.Range(0, count).Select(i => new OutboxMessage($"doomed {i}")), Token);
            await transaction.CommitAsync(Token);
        }

        await outbox.DispatchPendingAsync(Token);
        var ids = new List<long>();
        long after = 0;
        IReadOnlyList<OutboxMessage> page;
        while ((page = await outbox.GetDeadLettersAsync(1000, after, Token)).Count > 0)
        {
            ids.AddRange(page.Select(m => m.Id));
            after = page[^1].Id;
        }

        Assert.Equal(count, ids.Count);
        return [.. ids];
    }

    private async Task<bool> TableExistsAsync()
    {
        await using var connection = await PostgreSqlServer.OpenAsync(_dataSource);
        await using var command = new NpgsqlCommand("SELECT to_regclass(@name) IS NOT NULL", connection);
        command.Parameters.AddWithValue("name", $"\"{_schema}\".\"outbox_messages\"");
        return (bool)(await command.ExecuteScalarAsync(Token))!;
    }

    private static long[] IdsOf(string jsonLines) =>
        [.. jsonLines.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => JsonDocument.Parse(line).RootElement.GetProperty("id").GetInt64())];

    private async Task WaitForLinesAsync(string path, int lines)
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(Token);
        bound.CancelAfter(Cli.Bound);
        while (!File.Exists(path) || (await ReadSharedAsync(path)).Count(c => c == '\n') < lines)
        {
            await Task.Delay(50, bound.Token);
        }
    }

    /// <summary>Reads a file the relay still holds open for writing.</summary>
    private async Task<string> ReadSharedAsync(string path)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        return await reader.ReadToEndAsync(Token);
    }

    private string TempFile(string extension)
    {
        var path = Path.Combine(Path.GetTempPath(), $"outboxer-cli-{Guid.NewGuid():N}{extension}");
        _files.Add(path);
        return path;
    }
}
