using System.Text;
using NATS.Client.Core;
using Xunit;

namespace Outboxer.Testing.Servers;

/// <summary>
/// The NATS server (with JetStream) the tests run against: <c>OUTBOXER_NATS_URL</c>, or the server <c>bash eng/servers.sh start nats</c>
/// starts. A server that cannot be reached fails the test with that hint; it never skips it.
/// </summary>
/// <remarks>One source file, linked into every test project that talks to NATS (see test/Servers/README.md).</remarks>
internal static class NatsServer
{
    public static string Url { get; } = Environment.GetEnvironmentVariable("OUTBOXER_NATS_URL") is { Length: > 0 } url ? url : "nats://127.0.0.1:4223";

    /// <summary>Opens a connection (UTF-8 headers), failing the test with how to start the server when it is not reachable.</summary>
    /// <param name="name">The connection's name, as the server's monitoring shows it.</param>
    public static async Task<NatsConnection> ConnectAsync(string name)
    {
        var connection = new NatsConnection(new NatsOpts { Url = Url, Name = name, HeaderEncoding = Encoding.UTF8, ConnectTimeout = TimeSpan.FromSeconds(5) });
        try
        {
            await connection.ConnectAsync();
            return connection;
        }
        catch (NatsException ex)
        {
            await connection.DisposeAsync();
            Assert.Fail($"NATS is not reachable at {Url}: {ex.Message}. Start it with `bash eng/servers.sh start nats` from the repository root, or set OUTBOXER_NATS_URL.");
            throw;
        }
    }
}
