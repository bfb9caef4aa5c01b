using System.Diagnostics;

namespace Outboxer.Benchmarks;

/// <summary>
/// The loaded-machine variants (<c>--loaded</c>): one busy-looping shell process per core (<c>sh -c 'while :; do :; done'</c>) for the
/// workload's duration, stopped (by their own pids) when disposed. They are separate processes, so cpu_share counts them as "other".
/// </summary>
internal sealed class Burners : IAsyncDisposable
{
    private readonly List<Process> _processes = [];

    private Burners()
    {
    }

    public int Count => _processes.Count;

    public static Burners Start()
    {
        var burners = new Burners();
        for (var i = 0; i < Environment.ProcessorCount; i++)
        {
            var start = new ProcessStartInfo("sh") { UseShellExecute = false };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add("while :; do :; done");
            burners._processes.Add(Process.Start(start) ?? throw new InvalidOperationException("Could not start a CPU burner (sh)."));
        }

        return burners;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            try
            {
                process.Kill();
                await process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // Already exited.
            }

            process.Dispose();
        }

        _processes.Clear();
    }
}
