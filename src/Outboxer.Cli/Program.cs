using System.CommandLine;
using System.Runtime.InteropServices;
using Outboxer.Cli;

// Ctrl+C and SIGTERM cancel this token; every verb stops gracefully on it (the relay through Outbox.StopAsync).
using var stopping = new CancellationTokenSource();
void Stop(PosixSignalContext context)
{
    // The first signal stops gracefully; a second one ends the process at once (the default behaviour).
    if (!stopping.IsCancellationRequested)
    {
        context.Cancel = true;
        stopping.Cancel();
    }
}

using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

var root = Commands.CreateRoot();
var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    // A mistyped flag or a connection string given without --connection comes back quoted in the error: redact every password that
    // any argument carries (as a connection string or in the user information of a URI).
    var secrets = new Secrets();
    foreach (var arg in args)
    {
        secrets.Add(StoreSettings.PasswordsIn(arg));
    }

    foreach (var error in parse.Errors)
    {
        await Console.Error.WriteLineAsync($"error: {secrets.Redact(error.Message)}");
    }

    await Console.Error.WriteLineAsync("Run 'outboxer --help' (or 'outboxer <verb> --help') for usage.");
    return ExitCodes.Usage;
}

// Signals are handled above, so System.CommandLine must not install its own handler (it would end the process after 2 s).
return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }, stopping.Token);
