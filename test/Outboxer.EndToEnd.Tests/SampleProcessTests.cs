using System.Diagnostics;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.EndToEnd.Tests;

/// <summary>The samples, run as separate processes against the servers that eng/servers.sh starts.</summary>
public sealed class SampleProcessTests
{
    private static readonly string Postgres = PostgreSqlServer.ConnectionString;
    private static readonly string RabbitMQ = RabbitMQServer.Url.OriginalString;

    [Fact]
    public async Task The_sample_relays_exactly_the_committed_messages_with_no_server_at_all()
    {
        var (exitCode, output) = await RunAsync("Outboxer.Sample");

        Assert.True(exitCode == 0, output);
        Assert.Contains("committed 18, rolled back 5, published 18 (missing 0, rolled-back published 0, duplicates 0)", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_sample_relays_exactly_the_committed_messages_from_postgresql_to_rabbitmq()
    {
        var (exitCode, output) = await RunAsync("Outboxer.Sample", "--postgres", Postgres, "--rabbitmq", RabbitMQ);

        Assert.True(exitCode == 0, output);
        Assert.Contains("store:     PostgreSQL", output, StringComparison.Ordinal);
        Assert.Contains("publisher: RabbitMQ", output, StringComparison.Ordinal);
        Assert.Contains("(missing 0, rolled-back published 0, duplicates 0)", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Two_sample_runs_at_once_use_their_own_schema_and_queue_and_leave_nothing_behind()
    {
        var runs = await Task.WhenAll(
            RunAsync("Outboxer.Sample", "--postgres", Postgres, "--rabbitmq", RabbitMQ),
            RunAsync("Outboxer.Sample", "--postgres", Postgres, "--rabbitmq", RabbitMQ));

        var schemas = new List<string>();
        foreach (var (exitCode, output) in runs)
        {
            Assert.True(exitCode == 0, output);
            Assert.Contains("(missing 0, rolled-back published 0, duplicates 0)", output, StringComparison.Ordinal);
            var runId = output.Split('\n').Single(line => line.StartsWith("run:", StringComparison.Ordinal))["run:".Length..].Trim();
            Assert.Contains($"schema outboxer_sample_{runId}, created for this run and dropped at the end", output, StringComparison.Ordinal);
            Assert.Contains($"queue 'outboxer.sample.{runId}' (created for this run and deleted at the end)", output, StringComparison.Ordinal);
            schemas.Add($"outboxer_sample_{runId}");
        }

        Assert.NotEqual(schemas[0], schemas[1]);
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(Postgres);
        await using var query = dataSource.CreateCommand("SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1)");
        query.Parameters.AddWithValue(schemas.ToArray());
        Assert.Equal(0L, await query.ExecuteScalarAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Two_dispatcher_processes_deliver_exactly_the_committed_messages_once()
    {
        var (exitCode, output) = await RunAsync("Outboxer.TwoDispatchers", Postgres, RabbitMQ, "1000");

        Assert.True(exitCode == 0, output);
        Assert.Contains("committed 750, rolled back 250, received 750: missing 0, duplicates 0, rolled-back received 0", output, StringComparison.Ordinal);
        var relays = output.Split('\n').Single(line => line.StartsWith("relays: ", StringComparison.Ordinal));
        Assert.Equal(2, relays.Split(';').Count(relay => relay.Contains(" dispatched ", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task The_same_committed_messages_go_from_mysql_to_each_of_the_six_brokers()
    {
        var (exitCode, output) = await RunAsync("Outboxer.AllBrokers");

        Assert.True(exitCode == 0, output);
        foreach (var broker in new[] { "RabbitMQ", "SQS", "Kinesis", "Pub/Sub", "NATS", "Redis" })
        {
            Assert.Contains($"{broker,-9} received 30 of 30 committed, 0 rolled back: exact", output, StringComparison.Ordinal);
        }
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string sample, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet");
        start.ArgumentList.Add(SamplePath(sample));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        var (exitCode, stdout, stderr) = await Repository.RunToExitAsync(start, TimeSpan.FromMinutes(4));
        return (exitCode, stdout + stderr);
    }

    /// <summary>Gets the sample's build output beside this test's: samples/&lt;name&gt;/bin/&lt;configuration&gt;/&lt;tfm&gt;/&lt;name&gt;.dll.</summary>
    internal static string SamplePath(string sample) => Repository.BuildOutput($"samples/{sample}", "build the solution first");
}
