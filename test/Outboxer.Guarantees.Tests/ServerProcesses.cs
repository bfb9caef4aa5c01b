using System.Diagnostics;
using System.Globalization;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// The processes of the servers eng/servers.sh started, found the way it finds them (the pid files in its state folder,
/// <c>OUTBOXER_SERVERS_DIR</c> or /tmp/outboxer-servers), to stall them with SIGSTOP, resume them with SIGCONT or crash them with
/// SIGKILL; and <c>rabbitmqctl</c> run with the environment eng/servers.sh gives it (the node name, the cookie in the state folder).
/// </summary>
internal static class ServerProcesses
{
    private static string StateRoot =>
        Environment.GetEnvironmentVariable("OUTBOXER_SERVERS_DIR") is { Length: > 0 } root ? root : "/tmp/outboxer-servers";

    /// <summary>Gets the PostgreSQL postmaster's pid (the first line of data/postmaster.pid).</summary>
    public static int PostgresPostmaster() => ReadPid(Path.Combine(StateRoot, "postgres", "data", "postmaster.pid"), "postgres");

    /// <summary>Gets the RabbitMQ Erlang VM's pid (beam.smp, rabbitmq.pid).</summary>
    public static int RabbitMQ() => ReadPid(Path.Combine(StateRoot, "rabbitmq", "rabbitmq.pid"), "beam");

    /// <summary>Gets the MariaDB server's pid (mysqld.pid).</summary>
    public static int MariaDb() => ReadPid(Path.Combine(StateRoot, "mariadb", "mysqld.pid"), "mariadbd");

    /// <summary>Gets the pids of the live children of <paramref name="parent"/> (from /proc/&lt;pid&gt;/stat).</summary>
    public static IReadOnlyList<int> ChildrenOf(int parent)
    {
        var children = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                // "pid (comm) state ppid ...": the command may contain spaces and parentheses, so read after the last ')'.
                var stat = File.ReadAllText(Path.Combine(directory, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (fields[0] != "Z" && int.Parse(fields[1], CultureInfo.InvariantCulture) == parent)
                {
                    children.Add(pid);
                }
            }
            catch (IOException)
            {
                // The process ended meanwhile.
            }
        }

        return children;
    }

    /// <summary>
    /// Sends <paramref name="signal"/> (STOP, CONT, KILL) to <paramref name="pids"/> with kill(1); fails the test when it fails, unless
    /// <paramref name="someMayHaveEnded"/> (a list of children, of which some may have exited since it was taken).
    /// </summary>
    public static async Task SignalAsync(string signal, IReadOnlyCollection<int> pids, bool someMayHaveEnded = false)
    {
        if (pids.Count == 0)
        {
            return;
        }

        var start = new ProcessStartInfo("kill");
        start.ArgumentList.Add($"-{signal}");
        foreach (var pid in pids)
        {
            start.ArgumentList.Add(pid.ToString(CultureInfo.InvariantCulture));
        }

        var (exitCode, _, stderr) = await RunAsync(start, TimeSpan.FromSeconds(10));
        Assert.True(exitCode == 0 || someMayHaveEnded, $"kill -{signal} failed: {stderr}");
    }

    /// <summary>Runs <c>rabbitmqctl -n rabbit@localhost &lt;arguments&gt;</c> as eng/servers.sh does; fails the test when it fails.</summary>
    public static async Task<string> RabbitMQCtlAsync(params string[] arguments)
    {
        var home = Path.Combine(StateRoot, "rabbitmq");
        var start = new ProcessStartInfo("/usr/lib/rabbitmq/bin/rabbitmqctl") { WorkingDirectory = home };
        start.Environment["HOME"] = home;
        start.Environment["RABBITMQ_NODENAME"] = "rabbit@localhost";
        start.Environment["RABBITMQ_CTL_ERL_ARGS"] = "-kernel inet_dist_use_interface {127,0,0,1}";
        start.Environment["ERL_EPMD_ADDRESS"] = "127.0.0.1";
        foreach (var argument in (string[])["-q", "-n", "rabbit@localhost", .. arguments])
        {
            start.ArgumentList.Add(argument);
        }

        var (exitCode, stdout, stderr) = await RunAsync(start, TimeSpan.FromSeconds(60));
        Assert.True(exitCode == 0, $"rabbitmqctl {string.Join(' ', arguments)} exited with {exitCode}: {stderr}");
        return stdout;
    }

    /// <summary>
    /// Runs a program to its end, at most <paramref name="bound"/>. Not tied to the test's cancellation: restoring a server (SIGCONT,
    /// clearing an alarm) must run even when the test is being aborted, or the server stays stalled for every other test.
    /// </summary>
    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(ProcessStartInfo start, TimeSpan bound)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {start.FileName}.");
        using var timeout = new CancellationTokenSource(bound);
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

    private static int ReadPid(string file, string expect)
    {
        Assert.True(File.Exists(file), $"{file} is missing: is the server running (bash eng/servers.sh status)?");
        var pid = int.Parse(File.ReadLines(file).First().Trim(), CultureInfo.InvariantCulture);
        var command = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
        Assert.True(command.Contains(expect, StringComparison.Ordinal), $"pid {pid} from {file} is not {expect}: {command}");
        return pid;
    }
}
