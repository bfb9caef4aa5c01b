using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using Xunit;

namespace Outboxer.Testing.Servers;

/// <summary>
/// The RabbitMQ the tests run against: <c>OUTBOXER_RABBITMQ_URL</c>, or the node <c>bash eng/servers.sh start rabbitmq</c> starts.
/// A node that cannot be reached fails the test with that hint; it never skips it.
/// </summary>
/// <remarks>One source file, linked into every test project that talks to RabbitMQ (see test/Servers/README.md).</remarks>
internal static class RabbitMQServer
{
    public static Uri Url { get; } = new(Environment.GetEnvironmentVariable("OUTBOXER_RABBITMQ_URL") is { Length: > 0 } url ? url : "amqp://outboxer:outboxer@127.0.0.1:5673/");

    /// <summary>Gets the URL without the password, for messages.</summary>
    public static string Redacted => Url.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);

    /// <summary>Opens a connection, failing the test with how to start the server when it is not reachable.</summary>
    /// <param name="clientName">The name the connection shows in the management UI.</param>
    /// <param name="configure">Changes to the factory (for example automatic recovery, which is off by default here), or <see langword="null"/>.</param>
    public static async Task<IConnection> ConnectAsync(string clientName, Action<ConnectionFactory>? configure = null)
    {
        var factory = new ConnectionFactory { Uri = Url, ClientProvidedName = clientName, AutomaticRecoveryEnabled = false };
        configure?.Invoke(factory);

        try
        {
            return await factory.CreateConnectionAsync(TestContext.Current.CancellationToken);
        }
        catch (BrokerUnreachableException ex)
        {
            Assert.Fail($"RabbitMQ is not reachable at {Redacted}: {ex.InnerException?.Message ?? ex.Message}. Start it with `bash eng/servers.sh start rabbitmq` from the repository root, or set OUTBOXER_RABBITMQ_URL.");
            throw;
        }
    }
}
