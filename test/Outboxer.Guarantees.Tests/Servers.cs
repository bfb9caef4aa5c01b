using System.Diagnostics;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>The servers the scenarios run against, and eng/servers.sh to stop and start them.</summary>
internal static class Servers
{
    public const string PostgresHost = "127.0.0.1";
    public const int PostgresPort = 5433;
    public const int RabbitMQPort = 5673;

    public static string Postgres { get; } =
        Environment.GetEnvironmentVariable("OUTBOXER_POSTGRES_URL") is { Length: > 0 } url ? url : "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer";

    public static Uri RabbitMQ { get; } =
        new(Environment.GetEnvironmentVariable("OUTBOXER_RABBITMQ_URL") is { Length: > 0 } url ? url : "amqp://outboxer:outboxer@127.0.0.1:5673/");

    /// <summary>The repository root: the first folder above the test's output that contains eng/servers.sh.</summary>
    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>Runs <c>bash eng/servers.sh &lt;action&gt; &lt;server&gt;</c> from the repository root; fails the test when it fails.</summary>
    public static async Task RunServersScriptAsync(string action, string server)
    {
        var log = Path.Combine(Path.GetTempPath(), $"outboxer-guarantees-{action}-{server}-{Guid.NewGuid():N}.log");
        var start = new ProcessStartInfo("bash") { WorkingDirectory = RepositoryRoot, UseShellExecute = false };

        // The test script starts PostgreSQL with fsync off; a restart here must keep that setting.
        start.Environment["OUTBOXER_PG_FAST"] = "1";

        // The server is launched detached; its output goes to a file so that no pipe stays open to this process.
        foreach (var argument in new[] { "-c", "exec bash eng/servers.sh \"$1\" \"$2\" >\"$3\" 2>&1", "servers", action, server, log })
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start bash.");
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(timeout.Token);
        var output = File.Exists(log) ? await File.ReadAllTextAsync(log, CancellationToken.None) : string.Empty;
        File.Delete(log);
        Assert.True(process.ExitCode == 0, $"`bash eng/servers.sh {action} {server}` exited with {process.ExitCode}:\n{output}");
    }

    /// <summary>The relay sample's build output beside this test's: samples/Outboxer.Relay/bin/&lt;configuration&gt;/&lt;tfm&gt;/Outboxer.Relay.dll.</summary>
    public static string RelayPath()
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var path = Path.Combine(RepositoryRoot, "samples", "Outboxer.Relay", "bin", output.Parent!.Name, output.Name, "Outboxer.Relay.dll");
        Assert.True(File.Exists(path), $"{path} is missing: build test/Outboxer.Guarantees.Tests (it builds the relay) first.");
        return path;
    }

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "eng", "servers.sh")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No folder above {AppContext.BaseDirectory} contains eng/servers.sh.");
    }
}
