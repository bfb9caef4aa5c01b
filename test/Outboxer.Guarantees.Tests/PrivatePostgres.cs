using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Xunit;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// A PostgreSQL 15 server of one test, for scenarios that restart or crash the database: the shared server of eng/servers.sh is never
/// touched (an earlier scenario restarted it and left it stopped for every other test). It runs from a temporary folder on a free port
/// of 127.0.0.1, as the <c>postgres</c> user when the tests run as root (initdb refuses root), with <c>wal_level=logical</c>, trust
/// authentication and <c>fsync=off</c> (a killed process loses nothing the page cache holds; only a power cut would).
/// </summary>
/// <remarks>
/// <see cref="DisposeAsync"/> stops it (<c>pg_ctl stop -m fast</c>, SIGKILL when that fails) and deletes the folder, whatever happened.
/// If the test process itself dies first, a detached watchdog (a shell that polls the test's pid every two seconds) stops the server
/// with <c>-m immediate</c> and deletes the folder, so nothing runs on for long.
/// </remarks>
internal sealed class PrivatePostgres : IAsyncDisposable
{
    private const string Bin = "/usr/lib/postgresql/15/bin";

    private readonly string _root;
    private Process? _watchdog;

    private PrivatePostgres(string root, int port)
    {
        _root = root;
        Port = port;
        ConnectionString = $"Host=127.0.0.1;Port={port.ToString(CultureInfo.InvariantCulture)};Username=postgres;Database=postgres";
    }

    /// <summary>Gets the server's port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>Gets a connection string of the superuser <c>postgres</c> (it may replicate) to the database <c>postgres</c>.</summary>
    public string ConnectionString { get; }

    private string Data => Path.Combine(_root, "data");

    private static bool AsRoot => Environment.UserName == "root";

    /// <summary>Creates a cluster in a new temporary folder and starts it; fails the test with the server's log when it does not start.</summary>
    public static async Task<PrivatePostgres> StartAsync()
    {
        Assert.True(File.Exists(Path.Combine(Bin, "postgres")), $"{Bin}/postgres is missing: the scenario needs the PostgreSQL 15 binaries (eng/servers.sh installs them).");
        // On Linux the folder is created with mode 700; it is handed to the postgres user below.
        var root = Directory.CreateTempSubdirectory("outboxer-private-pg-").FullName;
        var server = new PrivatePostgres(root, FreePort());
        try
        {
            if (AsRoot)
            {
                await RunAsync("chown", ["postgres:postgres", root], TimeSpan.FromSeconds(10));
            }

            server.StartWatchdog();
            await server.PostgresCommandAsync(
                "initdb", ["-D", server.Data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], TimeSpan.FromSeconds(120));
            await server.StartServerAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Restarts the server the graceful way: <c>pg_ctl restart -m fast</c> (sessions are terminated, a shutdown checkpoint is written).</summary>
    public async Task RestartFastAsync()
    {
        try
        {
            await PostgresCommandAsync("pg_ctl", ["-D", Data, "-m", "fast", "-w", "-t", "60", "stop"], TimeSpan.FromSeconds(90));
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new InvalidOperationException($"The private PostgreSQL on 127.0.0.1:{Port} did not stop: {ex.Message}\n{LogTail(20)}", ex);
        }

        await StartServerAsync();
    }

    /// <summary>
    /// Crashes the server (SIGKILL to the postmaster and every one of its processes at once, as the kernel's OOM killer or a lost VM does)
    /// and starts it again: it recovers from its write-ahead log, and replication slots come back as of the last checkpoint.
    /// </summary>
    /// <returns>The killed postmaster's pid.</returns>
    public async Task<int> CrashAndStartAsync()
    {
        var postmaster = Postmaster();
        Assert.NotNull(postmaster);
        var victims = new List<int> { postmaster.Value };
        victims.AddRange(ServerProcesses.ChildrenOf(postmaster.Value));
        await ServerProcesses.SignalAsync("KILL", victims, someMayHaveEnded: true);
        await WaitForExitAsync(victims);

        // A backend forked after the list was taken notices the postmaster's death and exits; until then the shared memory is in use
        // and the new postmaster refuses to start, so try a few times.
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await StartServerAsync();
                return postmaster.Value;
            }
            catch (Exception) when (attempt < 10)
            {
                await Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None);
            }
        }
    }

    /// <summary>Stops the server (fast, then SIGKILL if it does not stop), deletes its folder and ends the watchdog.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (Postmaster() is { } pid)
            {
                try
                {
                    await PostgresCommandAsync("pg_ctl", ["-D", Data, "-m", "fast", "-w", "-t", "30", "stop"], TimeSpan.FromSeconds(45));
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    var victims = new List<int> { pid };
                    victims.AddRange(ServerProcesses.ChildrenOf(pid));
                    await ServerProcesses.SignalAsync("KILL", victims, someMayHaveEnded: true);
                    await WaitForExitAsync(victims);
                }
            }
        }
        finally
        {
            // The server's own account of the run (shutdowns, crash recovery, refused starts), in the test's output.
            TestContext.Current.TestOutputHelper?.WriteLine($"private PostgreSQL server.log (last 40 lines):\n{LogTail(40)}");
            try
            {
                Directory.Delete(_root, recursive: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                TestContext.Current.TestOutputHelper?.WriteLine($"could not delete {_root}: {ex.Message}");
            }

            if (_watchdog is { HasExited: false })
            {
                _watchdog.Kill();
            }

            _watchdog?.Dispose();
        }
    }

    /// <summary>Gets the running postmaster's pid from data/postmaster.pid, or <see langword="null"/> when the server is down.</summary>
    private int? Postmaster()
    {
        var file = Path.Combine(Data, "postmaster.pid");
        if (!File.Exists(file))
        {
            return null;
        }

        var pid = int.Parse(File.ReadLines(file).First().Trim(), CultureInfo.InvariantCulture);
        return Directory.Exists($"/proc/{pid}") ? pid : null;
    }

    private async Task StartServerAsync()
    {
        var settings = string.Join(' ', [
            "-c listen_addresses=127.0.0.1", $"-p {Port.ToString(CultureInfo.InvariantCulture)}", $"-k {_root}",
            "-c wal_level=logical", "-c max_replication_slots=8", "-c max_wal_senders=8", "-c max_connections=60",
            "-c fsync=off", "-c shared_buffers=32MB"]);
        try
        {
            await PostgresCommandAsync("pg_ctl", ["-D", Data, "-l", Path.Combine(_root, "server.log"), "-w", "-t", "60", "-o", settings, "start"], TimeSpan.FromSeconds(90));
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new InvalidOperationException($"The private PostgreSQL on 127.0.0.1:{Port} did not start: {ex.Message}\n{LogTail(20)}", ex);
        }
    }

    private string LogTail(int lines)
    {
        var log = Path.Combine(_root, "server.log");
        return File.Exists(log) ? string.Join('\n', File.ReadLines(log).TakeLast(lines)) : "(no server.log)";
    }

    /// <summary>
    /// A detached shell, in a session of its own so that it outlives the test process: once the test's pid is gone it stops the server
    /// (immediate mode) and deletes the folder. Disposing the server kills it.
    /// </summary>
    private void StartWatchdog()
    {
        var asPostgres = AsRoot ? "runuser -u postgres -- " : string.Empty;
        var script = $"exec >/dev/null 2>&1 </dev/null; while kill -0 {Environment.ProcessId} 2>/dev/null; do sleep 2; done; "
            + $"if [ -f '{Data}/postmaster.pid' ]; then {asPostgres}'{Bin}/pg_ctl' -D '{Data}' -m immediate -w -t 30 stop; fi; rm -rf '{_root}'";
        var start = new ProcessStartInfo("setsid") { UseShellExecute = false, RedirectStandardInput = true };
        foreach (var argument in (string[])["bash", "-c", script])
        {
            start.ArgumentList.Add(argument);
        }

        _watchdog = Process.Start(start) ?? throw new InvalidOperationException("Could not start the private PostgreSQL's watchdog.");
    }

    private Task PostgresCommandAsync(string program, string[] arguments, TimeSpan bound) =>
        AsRoot
            ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(Bin, program), .. arguments], bound)
            : RunAsync(Path.Combine(Bin, program), arguments, bound);

    private static async Task WaitForExitAsync(IEnumerable<int> pids)
    {
        var deadline = Stopwatch.StartNew();
        while (pids.Any(pid => Directory.Exists($"/proc/{pid}") && !IsZombie(pid)) && deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(50, CancellationToken.None);
        }
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return true;
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Runs a program to its end (at most <paramref name="bound"/>, not tied to the test's cancellation); throws with its output when it fails.</summary>
    private static async Task RunAsync(string program, string[] arguments, TimeSpan bound)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}.");
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
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not end within {bound}.");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(program)} {string.Join(' ', arguments.Take(6))} exited with {process.ExitCode}: {await stderr}{await stdout}");
        }
    }
}
