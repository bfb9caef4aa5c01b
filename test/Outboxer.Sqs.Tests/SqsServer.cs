using Amazon.Runtime;
using Amazon.SQS;
using Amazon.SQS.Model;
using Xunit;

namespace Outboxer.Sqs.Tests;

/// <summary>The SQS the tests run against: <c>OUTBOXER_SQS_URL</c>, or the fauxqs emulator <c>eng/servers.sh</c> starts.</summary>
internal static class SqsServer
{
    public static string Url { get; } = Environment.GetEnvironmentVariable("OUTBOXER_SQS_URL") is { Length: > 0 } url ? url : "http://127.0.0.1:4566";

    /// <summary>Creates a client for <paramref name="serviceUrl"/> (the emulator by default) with test credentials.</summary>
    public static AmazonSQSClient CreateClient(string? serviceUrl = null, int? maxErrorRetry = null)
    {
        var config = new AmazonSQSConfig
        {
            ServiceURL = serviceUrl ?? Url,
            AuthenticationRegion = "us-east-1",
            Timeout = TimeSpan.FromSeconds(30),
        };
        if (maxErrorRetry is { } retries)
        {
            config.MaxErrorRetry = retries;
        }

        return new AmazonSQSClient(new BasicAWSCredentials("test", "test"), config);
    }

    /// <summary>Creates a client and checks that the emulator answers, failing the test with how to start it when it does not.</summary>
    public static async Task<AmazonSQSClient> ConnectAsync()
    {
        using (var probe = CreateClient(maxErrorRetry: 0))
        {
            try
            {
                await probe.ListQueuesAsync(new ListQueuesRequest(), TestContext.Current.CancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !TestContext.Current.CancellationToken.IsCancellationRequested)
            {
                Assert.Fail($"SQS is not reachable at {Url}: {ex.GetType().Name}: {ex.Message}. Start the emulator with `bash eng/servers.sh start fauxqs` from the repository root, or set OUTBOXER_SQS_URL.");
            }
        }

        return CreateClient();
    }
}
