using System.CommandLine;
using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Outboxer.Dashboard;

namespace Outboxer.Cli;

/// <summary>
/// <c>outboxer dashboard</c>: serves the Outboxer dashboard (the Outboxer.Dashboard package's pages) for one outbox table, on 127.0.0.1
/// only, until Ctrl+C or SIGTERM. An operator's tool on the loopback interface: it has no authorization, and says so when it starts.
/// </summary>
internal static class DashboardCommand
{
    private static readonly Option<int> Port = new("--port")
    {
        Description = "The port on 127.0.0.1 (default 5080; 0 picks a free one).",
        DefaultValueFactory = _ => 5080,
    };

    private static readonly Option<bool> ReadOnly = new("--read-only") { Description = "Only show: no requeue or purge." };

    public static Command Create()
    {
        var command = new Command(
            "dashboard",
            "Serve the dashboard (backlog, lag, throughput, destinations, dead letters with requeue and purge, a message by id) for the table on http://127.0.0.1:<port>/ until Ctrl+C. Anyone who can connect to 127.0.0.1 on this machine can use it: there is no sign-in.")
        {
            Port,
            ReadOnly,
        };
        command.SetVerb(RunAsync);
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, Secrets secrets, CancellationToken cancellationToken)
    {
        var port = parse.GetValue(Port);
        if (port is < 0 or > 65535)
        {
            throw new UsageException($"--port must be between 0 and 65535, not {port.ToString(CultureInfo.InvariantCulture)}.");
        }

        var readOnly = parse.GetValue(ReadOnly);
        var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
        await using var open = settings.Open(createTable: false);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "outboxer", EnvironmentName = "Production" });
        builder.WebHost.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port));
        // The verb prints what an operator needs; the framework's own logs (and any connection detail in them) stay out.
        builder.Logging.ClearProviders();
        builder.Services.AddOutboxerDashboard(o =>
        {
            // Loopback only, started by the operator on their own machine: no policy, and the start message says so.
            o.AllowAnonymous = true;
            o.ReadOnly = readOnly;
            o.AddStore(settings.Table, open.Administration);
        });

        await using var app = builder.Build();
        app.MapOutboxerDashboard("/");
        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? $"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
        Console.Out.WriteLine($"Outboxer dashboard for {settings.DisplayName} on {address.TrimEnd('/')}/ ({(readOnly ? "read-only" : "requeue and purge enabled")}).");
        Console.Out.WriteLine(readOnly
            ? "No sign-in: anyone who can connect to 127.0.0.1 on this machine can see the messages. Ctrl+C stops it."
            : "No sign-in: anyone who can connect to 127.0.0.1 on this machine can see the messages and requeue or purge dead letters (--read-only prevents that). Ctrl+C stops it.");
        await Console.Out.FlushAsync(cancellationToken);

        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Ctrl+C or SIGTERM: the normal way to stop a server.
        }

        await app.StopAsync(CancellationToken.None);
        Console.Out.WriteLine("Dashboard stopped.");
        return ExitCodes.Success;
    }
}
