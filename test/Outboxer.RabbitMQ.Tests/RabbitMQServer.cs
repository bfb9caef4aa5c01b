using System.Diagnostics;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using Xunit;

namespace Outboxer.RabbitMQ.Tests;

/// <summary>The RabbitMQ the tests run against: <c>OUTBOXER_RABBITMQ_URL</c>, or the node <c>eng/servers.sh</c> starts.</summary>
internal static class RabbitMQServer
{
    public static Uri Url { get; } = new(Environment.GetEnvironmentVariable("OUTBOXER_RABBITMQ_URL") is { Length: > 0 } url ? url : "amqp://outboxer:outboxer@127.0.0.1:5673/");

    /// <summary>Opens a connection, failing the test with how to start the server when it is not reachable.</summary>
    public static async Task<IConnection> ConnectAsync(string clientName)
    {
        var factory = new ConnectionFactory { Uri = Url, ClientProvidedName = clientName, AutomaticRecoveryEnabled = false };

        try
        {
            return await factory.CreateConnectionAsync(TestContext.Current.CancellationToken);
        }
        catch (BrokerUnreachableException ex)
        {
            Assert.Fail($"RabbitMQ is not reachable at {Redacted}: {ex.InnerException?.Message ?? ex.Message}. Start it with `bash eng/servers.sh start rabbitmq` from the repository root, or set OUTBOXER_RABBITMQ_URL.");
            throw;
        }
    }

    /// <summary>Gets the URL without the password, for messages.</summary>
    public static string Redacted => Url.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);

    /// <summary>Runs <c>bash eng/servers.sh &lt;action&gt; rabbitmq</c> from the repository root and fails the test when it fails.</summary>
    public static async Task RunServersScriptAsync(string action)
    {
        var root = FindRepositoryRoot();
        var log = Path.Combine(Path.GetTempPath(), $"outboxer-servers-{action}-{Guid.NewGuid():N}.log");
        var start = new ProcessStartInfo("bash") { WorkingDirectory = root, UseShellExecute = false };
        // The server is launched detached; sending the script's output to a file keeps no pipe open to this process.
        foreach (var argument in new[] { "-c", "exec bash eng/servers.sh \"$1\" rabbitmq >\"$2\" 2>&1", "servers", action, log })
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start bash.");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(timeout.Token);
        var output = File.Exists(log) ? await File.ReadAllTextAsync(log, TestContext.Current.CancellationToken) : string.Empty;
        File.Delete(log);
        Assert.True(process.ExitCode == 0, $"`bash eng/servers.sh {action} rabbitmq` exited with {process.ExitCode}:\n{output}");
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
