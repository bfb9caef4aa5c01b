using System.Diagnostics;
using Outboxer.Testing.Servers;

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
        var (exitCode, stdout, stderr) = await Repository.RunToExitAsync(StartInfo(arguments), Bound);
        return new CliResult(exitCode, stdout, stderr);
    }

    /// <summary>Gets the CLI's build output beside this test's: src/Outboxer.Cli/bin/&lt;configuration&gt;/&lt;tfm&gt;/Outboxer.Cli.dll.</summary>
    public static string DllPath { get; } = Repository.BuildOutput("src/Outboxer.Cli", "build src/Outboxer.Cli first");
}
