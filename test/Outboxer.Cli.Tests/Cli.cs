using System.Diagnostics;
using System.Net.Sockets;
using Npgsql;
using Xunit;

namespace Outboxer.Cli.Tests;

/// <summary>The result of one run of the CLI.</summary>
internal sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public string Output => Stdout + Stderr;

    public override string ToString() => $"exit code {ExitCode}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>Runs the built <c>Outboxer.Cli.dll</c> with <c>dotnet</c>, standard input redirected (so never a terminal), with a bounded wait.</summary>
internal static class Cli
{
    public static readonly TimeSpan Bound = TimeSpan.FromMinutes(2);

    public static ProcessStartInfo StartInfo(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(DllPath);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return start;
    }

    public static async Task<CliResult> RunAsync(params string[] arguments)
    {
        using var process = Process.Start(StartInfo(arguments))!;
        process.StandardInput.Close();
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        bound.CancelAfter(Bound);
        var stdout = process.StandardOutput.ReadToEndAsync(bound.Token);
        var stderr = process.StandardError.ReadToEndAsync(bound.Token);
        try
        {
            await process.WaitForExitAsync(bound.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        return new CliResult(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>The CLI's build output beside this test's: src/Outboxer.Cli/bin/&lt;configuration&gt;/&lt;tfm&gt;/Outboxer.Cli.dll.</summary>
    public static string DllPath { get; } = FindDll();

    private static string FindDll()
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var tfm = output.Name;
        var configuration = output.Parent!.Name;
        var root = output;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Outboxer.slnx")))
        {
            root = root.Parent;
        }

        Assert.NotNull(root);
        var path = Path.Combine(root.FullName, "src", "Outboxer.Cli", "bin", configuration, tfm, "Outboxer.Cli.dll");
        Assert.True(File.Exists(path), $"{path} is missing: build src/Outboxer.Cli first.");
        return path;
    }
}

/// <summary>
/// The PostgreSQL server the tests run against: <c>OUTBOXER_POSTGRES_URL</c>, or the one <c>bash eng/servers.sh start postgres</c> starts.
/// A server that cannot be reached fails the test with that hint; it never skips it.
/// </summary>
internal static class PostgreSqlServer
{
    private const string DefaultConnectionString = "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer";

    public static string ConnectionString =>
        Environment.GetEnvironmentVariable("OUTBOXER_POSTGRES_URL") is { Length: > 0 } configured ? configured : DefaultConnectionString;

    public static async Task<NpgsqlConnection> OpenAsync(NpgsqlDataSource dataSource)
    {
        try
        {
            return await dataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        }
        catch (Exception ex) when (ex is NpgsqlException { InnerException: SocketException or IOException or TimeoutException } or SocketException)
        {
            throw new InvalidOperationException(
                $"PostgreSQL is not reachable at '{new NpgsqlConnectionStringBuilder(ConnectionString) { Password = null }}' ({ex.Message}). " +
                "Start it with `bash eng/servers.sh start postgres`, or point OUTBOXER_POSTGRES_URL at another server.",
                ex);
        }
    }
}
