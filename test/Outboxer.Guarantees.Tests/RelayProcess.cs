using System.Diagnostics;
using System.Globalization;
using System.Text;
using Outboxer.Testing.Servers;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// How a scenario's relays dispatch: the outbox lease, the publish timeout and the attempts before a dead letter (the relay's
/// <c>--lease-ms</c>, <c>--publish-timeout-ms</c> and <c>--max-attempts</c>), and the dispatchers' connection string when not the store's.
/// </summary>
internal sealed record RelayOptions
{
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(3);

    public TimeSpan PublishTimeout { get; init; } = TimeSpan.FromSeconds(2);

    public int MaxAttempts { get; init; } = 1000;

    public string? ConnectionString { get; init; }

    /// <summary>Gets the relay's options after its four positional arguments, with <paramref name="store"/> as its <c>--store</c>.</summary>
    public IEnumerable<string> Arguments(string store) =>
    [
        "--store", store,
        "--lease-ms", ((int)Lease.TotalMilliseconds).ToString(CultureInfo.InvariantCulture),
        "--publish-timeout-ms", ((int)PublishTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture),
        "--max-attempts", MaxAttempts.ToString(CultureInfo.InvariantCulture),
    ];
}

/// <summary>One samples/Outboxer.Relay process: a dispatcher on the scenario's table publishing to the scenario's broker, started, stopped gracefully or killed with SIGKILL.</summary>
internal sealed class RelayProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _sendsDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _killedOnLine = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<string>? _onLine;
    private readonly StringBuilder _stdout = new();
    private int _duplicatesDropped;
    private int _uncertain;
    private string? _killOn;

    private RelayProcess(Process process, Action<string>? onLine)
    {
        _process = process;
        _onLine = onLine;
    }

    public int Id => _process.Id;

    /// <summary>Gets how many republished messages the broker dropped for this relay (its "duplicate ..." lines, NATS and Redis only).</summary>
    public int DuplicatesDropped => Volatile.Read(ref _duplicatesDropped);

    /// <summary>
    /// Gets how many possible duplicates this relay counted (the sum of its "uncertain &lt;n&gt;" lines: what it added to the counter
    /// <c>outboxer.messages.possible_duplicates</c>, for publishes without an answer, leases lost before the mark and marks that failed).
    /// </summary>
    public int Uncertain => Volatile.Read(ref _uncertain);

    public bool HasExited => _process.HasExited;

    /// <summary>Gets a task that completes when a relay started with <c>--send</c> printed <c>sends-done</c>: it has no transaction open any more.</summary>
    public Task SendsDone => _sendsDone.Task;

    public string Output
    {
        get
        {
            lock (_stdout)
            {
                return _stdout.ToString() + _stderr.ToString();
            }
        }
    }

    /// <summary>
    /// Starts a relay with <paramref name="arguments"/> (the store's <see cref="IGuaranteeStore.RelayArguments"/>, the broker's
    /// <see cref="IGuaranteeBroker.RelayArguments"/>, then <see cref="RelayOptions.Arguments"/>) and waits until it is ready.
    /// <paramref name="onLine"/>, when given, sees every line of its standard output, in order, before the line can trigger
    /// <see cref="KillOnNextLineAsync"/>.
    /// </summary>
    public static async Task<RelayProcess> StartAsync(IEnumerable<string> arguments, CancellationToken cancellationToken, Action<string>? onLine = null)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var program = Repository.BuildOutput("samples/Outboxer.Relay", "build test/Outboxer.Guarantees.Tests (it builds the relay) first");
        foreach (var argument in (string[])[program, .. arguments])
        {
            start.ArgumentList.Add(argument);
        }

        var relay = new RelayProcess(Process.Start(start) ?? throw new InvalidOperationException("Could not start the relay."), onLine);
        relay._process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                relay._ready.TrySetException(new InvalidOperationException($"The relay ended before it was ready:\n{relay.Output}"));
                return;
            }

            lock (relay._stdout)
            {
                relay._stdout.AppendLine(e.Data);
            }

            if (e.Data.StartsWith("duplicate ", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref relay._duplicatesDropped);
            }

            if (e.Data.StartsWith("uncertain ", StringComparison.Ordinal))
            {
                Interlocked.Add(ref relay._uncertain, int.Parse(e.Data.AsSpan("uncertain ".Length), CultureInfo.InvariantCulture));
            }

            if (e.Data == "ready")
            {
                relay._ready.TrySetResult();
            }

            if (e.Data.StartsWith("sends-done ", StringComparison.Ordinal))
            {
                relay._sendsDone.TrySetResult();
            }

            relay._onLine?.Invoke(e.Data);

            // Killed from the reader's own thread, so that the relay runs on for as little as possible after printing the line.
            if (Volatile.Read(ref relay._killOn) is { } prefix && e.Data.StartsWith(prefix, StringComparison.Ordinal) && Interlocked.Exchange(ref relay._killOn, null) is not null)
            {
                relay._process.Kill();
                relay._killedOnLine.TrySetResult();
            }
        };
        relay._process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (relay._stdout)
                {
                    relay._stderr.AppendLine(e.Data);
                }
            }
        };
        relay._process.BeginOutputReadLine();
        relay._process.BeginErrorReadLine();
        await relay._ready.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        return relay;
    }

    /// <summary>Kills the process with SIGKILL (what <see cref="Process.Kill()"/> sends on Unix): no graceful stop, no lease released.</summary>
    public async Task KillAsync()
    {
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    /// <summary>
    /// Kills the process with SIGKILL right after it prints a line that starts with <paramref name="prefix"/> (for example just after a
    /// commit returned, while the message is still on its way to the broker), or after <paramref name="timeout"/> if no such line comes.
    /// Returns once the process has exited and its output was read to the end; <see langword="true"/> when the line came.
    /// </summary>
    public async Task<bool> KillOnNextLineAsync(string prefix, TimeSpan timeout)
    {
        Volatile.Write(ref _killOn, prefix);
        var onLine = await Task.WhenAny(_killedOnLine.Task, Task.Delay(timeout)) == _killedOnLine.Task;
        if (!onLine && Interlocked.Exchange(ref _killOn, null) is null)
        {
            // The line came just as the wait ended.
            await _killedOnLine.Task;
            onLine = true;
        }

        if (!onLine)
        {
            _process.Kill();
        }

        await _process.WaitForExitAsync();
        return onLine;
    }

    /// <summary>Asks the relay to stop gracefully (a line on its standard input); kills it when it does not end within 30 seconds.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            try
            {
                await _process.StandardInput.WriteLineAsync();
                _process.StandardInput.Close();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await _process.WaitForExitAsync(timeout.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }

        _process.Dispose();
    }
}
