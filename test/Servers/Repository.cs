using System.Diagnostics;
using Xunit;

namespace Outboxer.Testing.Servers;

/// <summary>The repository the tests run in: its root, the programs the tests start (their build output, a bounded run), and eng/servers.sh.</summary>
/// <remarks>One source file, linked into every test project that needs it (see test/Servers/README.md).</remarks>
internal static class Repository
{
    /// <summary>Gets the repository root: the first folder above the test's output that contains Outboxer.slnx.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>
    /// Gets the path of a program's build output beside this test's: <c>&lt;root&gt;/&lt;project&gt;/bin/&lt;configuration&gt;/&lt;tfm&gt;/&lt;name&gt;.dll</c>,
    /// where the name is the project folder's. Fails the test, saying what to build, when it is missing.
    /// </summary>
    /// <param name="project">The project folder, relative to the root: <c>src/Outboxer.Cli</c>, <c>samples/Outboxer.Relay</c>.</param>
    /// <param name="howToBuild">What builds it, for the failure message: <c>build src/Outboxer.Cli first</c>.</param>
    public static string BuildOutput(string project, string howToBuild)
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var path = Path.Combine(Root, project, "bin", output.Parent!.Name, output.Name, Path.GetFileName(project) + ".dll");
        Assert.True(File.Exists(path), $"{path} is missing: {howToBuild}.");
        return path;
    }

    /// <summary>
    /// Starts <paramref name="start"/> (with its output redirected) and waits for it to exit, at most <paramref name="bound"/>: a program
    /// still running then, or when the test is aborted, is killed with its children and the wait fails. Standard input, when redirected,
    /// is closed first, so the program never waits for a terminal.
    /// </summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunToExitAsync(ProcessStartInfo start, TimeSpan bound)
    {
        ArgumentNullException.ThrowIfNull(start);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {start.FileName}.");
        if (start.RedirectStandardInput)
        {
            process.StandardInput.Close();
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(bound);
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Runs <c>bash eng/servers.sh &lt;action&gt; &lt;server&gt;</c> from the repository root; fails the test when it fails.</summary>
    /// <remarks>
    /// The wait is bounded (three minutes) but not tied to the test's cancellation: a server this stops must be started again even
    /// when the test is being aborted, or it stays down for every other test.
    /// </remarks>
    public static async Task RunServersScriptAsync(string action, string server)
    {
        var log = Path.Combine(Path.GetTempPath(), $"outboxer-servers-{action}-{server}-{Guid.NewGuid():N}.log");
        var start = new ProcessStartInfo("bash") { WorkingDirectory = Root, UseShellExecute = false };

        // The test script starts PostgreSQL with fsync off; a restart here must keep that setting (the other servers ignore it).
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

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Outboxer.slnx")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No folder above {AppContext.BaseDirectory} contains Outboxer.slnx.");
    }
}
