using StackExchange.Redis;
using Xunit;

namespace Outboxer.Testing.Servers;

/// <summary>
/// The Redis the tests run against: <c>OUTBOXER_REDIS_URL</c> (a StackExchange.Redis configuration string), or the server
/// <c>bash eng/servers.sh start redis</c> starts. A server that cannot be reached fails the test with that hint; it never skips it.
/// </summary>
/// <remarks>One source file, linked into every test project that talks to Redis (see test/Servers/README.md).</remarks>
internal static class RedisServer
{
    public static string Url { get; } = Environment.GetEnvironmentVariable("OUTBOXER_REDIS_URL") is { Length: > 0 } url ? url : "127.0.0.1:6380";

    /// <summary>Connects, failing the test with how to start the server when it is not reachable.</summary>
    public static async Task<ConnectionMultiplexer> ConnectAsync()
    {
        var options = ConfigurationOptions.Parse(Url);
        options.AbortOnConnectFail = true;
        options.ConnectTimeout = 5_000;
        options.AllowAdmin = true; // CONFIG SET, for the tests that change the server (out of memory)
        options.ClientName = "Outboxer.Tests";
        try
        {
            return await ConnectionMultiplexer.ConnectAsync(options);
        }
        catch (RedisConnectionException ex)
        {
            Assert.Fail($"Redis is not reachable at {Url}: {ex.Message.TrimEnd('.')}. Start it with `bash eng/servers.sh start redis` from the repository root, or set OUTBOXER_REDIS_URL.");
            throw;
        }
    }
}
