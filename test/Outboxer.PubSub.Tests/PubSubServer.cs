using Google.Cloud.PubSub.V1;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit;

namespace Outboxer.PubSub.Tests;

/// <summary>
/// The Pub/Sub emulator the tests run against: <c>OUTBOXER_PUBSUB_HOST</c> (<c>host:port</c>), or the one <c>eng/servers.sh</c> starts
/// on 127.0.0.1:8085. When it is not reachable every test fails, loudly: a Pub/Sub test that cannot run is never counted as passed.
/// </summary>
internal static class PubSubServer
{
    /// <summary>Where the machine image installs the emulator; no package registry serves it.</summary>
    public const string EmulatorBinary = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";

    /// <summary>The project of the test topics and subscriptions; the emulator accepts any.</summary>
    public const string ProjectId = "outboxer-test";

    private static readonly Lazy<GrpcChannel> s_channel = new(() => GrpcChannel.ForAddress(
        $"http://{Host}",
        new GrpcChannelOptions { ThrowOperationCanceledOnCancellation = true, MaxReceiveMessageSize = 64 * 1024 * 1024 }));

    private static readonly Lazy<Task<string?>> s_unreachable = new(CheckAsync);

    public static string Host { get; } = Environment.GetEnvironmentVariable("OUTBOXER_PUBSUB_HOST") is { Length: > 0 } host ? host : "127.0.0.1:8085";

    /// <summary>Gets an admin client for topics (create, delete) on a channel shared by the tests.</summary>
    public static Publisher.PublisherClient Publisher => new(s_channel.Value);

    /// <summary>Gets a subscriber client (subscriptions, pull, acknowledge) on a channel shared by the tests.</summary>
    public static Subscriber.SubscriberClient Subscriber => new(s_channel.Value);

    /// <summary>Fails the test, with how to start the emulator, unless it answers.</summary>
    public static async Task EnsureReachableAsync()
    {
        if (await s_unreachable.Value is { } problem)
        {
            Assert.Fail(problem);
        }
    }

    private static async Task<string?> CheckAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            await Publisher.ListTopicsAsync(new ListTopicsRequest { Project = $"projects/{ProjectId}", PageSize = 1 }, cancellationToken: timeout.Token);
            return null;
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or HttpRequestException)
        {
            var how = File.Exists(EmulatorBinary)
                ? "Start it with `bash eng/servers.sh start pubsub` from the repository root, or set OUTBOXER_PUBSUB_HOST to host:port of a running emulator."
                : $"PUB/SUB EMULATOR NOT AVAILABLE: {EmulatorBinary} does not exist on this machine (it comes only with the Google Cloud SDK in the machine image; no registry serves it), so these tests cannot run. Set OUTBOXER_PUBSUB_HOST to host:port of a running emulator.";
            return $"*** The Pub/Sub emulator is not reachable at {Host}: {ex.Message} *** {how}";
        }
    }
}
