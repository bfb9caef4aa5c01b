using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Amazon.Runtime;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Kinesis.Internal;
using Xunit;

namespace Outboxer.Kinesis.Tests;

/// <summary>
/// SigV4 signing (AWSSDK.Core's signer) against AWS's published test vectors, the signed request as it goes on the wire, the
/// credential chain, and the endpoint and region. No server: requests are answered by a stub.
/// </summary>
public sealed class KinesisSigningTests
{
    // The credentials, time, region and service of the AWS SigV4 test suite (aws-sig-v4-test-suite) and of the AWS documentation.
    private const string SuiteAccessKey = "AKIDEXAMPLE";
    private const string SuiteSecretKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    private static readonly DateTimeOffset SuiteTime = new(2015, 8, 30, 12, 36, 0, TimeSpan.Zero);
    private static readonly ImmutableCredentials SuiteCredentials = new(SuiteAccessKey, SuiteSecretKey, token: null);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void The_signer_reproduces_the_get_vanilla_signature_of_the_AWS_SigV4_test_suite()
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

        var authorization = SigV4.Sign("GET", new Uri("https://example.amazonaws.com/"), headers, [], SuiteCredentials, "us-east-1", "service", SuiteTime);

        Assert.Equal(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, " +
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            authorization);
        Assert.Equal("example.amazonaws.com", headers["host"]);
        Assert.Equal("20150830T123600Z", headers["X-Amz-Date"]);
    }

    [Fact]
    public void The_signer_reproduces_the_post_x_www_form_urlencoded_signature_of_the_AWS_SigV4_test_suite()
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase) { ["Content-Type"] = "application/x-www-form-urlencoded" };

        var authorization = SigV4.Sign("POST", new Uri("https://example.amazonaws.com/"), headers, "Param1=value1"u8, SuiteCredentials, "us-east-1", "service", SuiteTime);

        Assert.Equal(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, " +
            "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
            authorization);
    }

    [Fact]
    public void The_independent_signer_of_these_tests_reproduces_the_same_published_signature()
    {
        // Checks the checker: the independent implementation below, used on real requests, gets AWS's answer too.
        var signature = IndependentSignature(
            "POST",
            [("content-type", "application/x-www-form-urlencoded"), ("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")],
            "Param1=value1"u8.ToArray(),
            SuiteSecretKey,
            "us-east-1",
            "service");

        Assert.Equal("ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a", signature);
    }

    [Fact]
    public async Task A_request_on_the_wire_is_signed_over_exactly_the_headers_and_body_it_carries_dated_by_the_time_provider()
    {
        var handler = new StubHandler(_ => StubHandler.PutRecordResult());
        using var http = new HttpClient(handler);
        await using var publisher = new KinesisPublisher(
            new KinesisPublisherOptions
            {
                Region = "eu-west-1",
                Credentials = new BasicAWSCredentials(SuiteAccessKey, SuiteSecretKey),
                TimeProvider = new FakeTimeProvider(SuiteTime),
            },
            http);
        var message = new OutboxMessage("""{"orderId":42}""") { MessageId = Guid.CreateVersion7() };
        message.Options[KinesisOptionKeys.StreamName] = "orders";

        await publisher.PublishAsync(message, Ct);

        var request = Assert.Single(handler.Requests);
        Assert.Equal(HttpMethod.Post, request.Method);
        Assert.Equal(new Uri("https://kinesis.eu-west-1.amazonaws.com/"), request.Uri);
        Assert.Equal("kinesis.eu-west-1.amazonaws.com", request.Host);
        Assert.Equal("application/x-amz-json-1.1", request.ContentType);
        Assert.Equal("Kinesis_20131202.PutRecord", request.Headers["X-Amz-Target"]);
        Assert.Equal("20150830T123600Z", request.Headers["X-Amz-Date"]);
        const string prefix = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=";
        var authorization = request.Headers["Authorization"];
        Assert.StartsWith(prefix, authorization, StringComparison.Ordinal);
        var expected = IndependentSignature(
            "POST",
            [("content-type", request.ContentType!), ("host", request.Host!), ("x-amz-date", request.Headers["X-Amz-Date"]), ("x-amz-target", request.Headers["X-Amz-Target"])],
            request.Body,
            SuiteSecretKey,
            "eu-west-1",
            "kinesis");
        Assert.Equal(expected, authorization[prefix.Length..]);
    }

    [Fact]
    public async Task Temporary_credentials_send_and_sign_their_session_token()
    {
        var handler = new StubHandler(r => StubHandler.PutRecordsResult(r, _ => null));
        using var http = new HttpClient(handler);
        await using var publisher = new KinesisPublisher(
            new KinesisPublisherOptions { ServiceUrl = new Uri("http://kinesis.test:4567"), Credentials = new SessionAWSCredentials("ASIAEXAMPLE", "secret", "the-session-token") },
            http);
        var message = new OutboxMessage("x") { MessageId = Guid.CreateVersion7() };
        message.Options[KinesisOptionKeys.StreamName] = "orders";

        Assert.All(await publisher.PublishBatchAsync([message], Ct), Assert.Null);

        var request = Assert.Single(handler.Requests);
        Assert.Equal("kinesis.test:4567", request.Host);
        Assert.Equal("the-session-token", request.Headers["X-Amz-Security-Token"]);
        Assert.Contains("Credential=ASIAEXAMPLE/", request.Headers["Authorization"], StringComparison.Ordinal);
        Assert.Contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target,", request.Headers["Authorization"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_credentials_the_AWS_default_credential_chain_signs_the_requests()
    {
        // Both the environment variables and a profile hold the same key, so the test does not depend on the chain's order, and a
        // developer's own default profile or environment cannot win over them.
        var directory = Directory.CreateTempSubdirectory("outboxer-kinesis-");
        var credentialsFile = Path.Combine(directory.FullName, "credentials");
        await File.WriteAllTextAsync(credentialsFile, "[outboxer-chain-test]\naws_access_key_id = AKIDFROMTHECHAIN\naws_secret_access_key = chain-secret\n", Ct);
        var configFile = Path.Combine(directory.FullName, "config");
        await File.WriteAllTextAsync(configFile, string.Empty, Ct);
        var variables = new Dictionary<string, string?>
        {
            ["AWS_SHARED_CREDENTIALS_FILE"] = credentialsFile,
            ["AWS_CONFIG_FILE"] = configFile,
            ["AWS_PROFILE"] = "outboxer-chain-test",
            ["AWS_ACCESS_KEY_ID"] = "AKIDFROMTHECHAIN",
            ["AWS_SECRET_ACCESS_KEY"] = "chain-secret",
            ["AWS_SESSION_TOKEN"] = null,
        };
        var saved = variables.Keys.ToDictionary(k => k, Environment.GetEnvironmentVariable);
        try
        {
            foreach (var (name, value) in variables)
            {
                Environment.SetEnvironmentVariable(name, value);
            }

            var handler = new StubHandler(_ => StubHandler.PutRecordResult());
            using var http = new HttpClient(handler);
            await using var publisher = new KinesisPublisher(new KinesisPublisherOptions { Region = "us-west-2" }, http);
            var message = new OutboxMessage("x") { MessageId = Guid.CreateVersion7() };
            message.Options[KinesisOptionKeys.StreamName] = "orders";

            await publisher.PublishAsync(message, Ct);

            Assert.Contains("Credential=AKIDFROMTHECHAIN/", Assert.Single(handler.Requests).Headers["Authorization"], StringComparison.Ordinal);
        }
        finally
        {
            foreach (var (name, value) in saved)
            {
                Environment.SetEnvironmentVariable(name, value);
            }

            directory.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData("eu-west-1", "https://kinesis.eu-west-1.amazonaws.com/")]
    [InlineData("us-east-1", "https://kinesis.us-east-1.amazonaws.com/")]
    [InlineData("cn-north-1", "https://kinesis.cn-north-1.amazonaws.com.cn/")]
    public async Task The_default_endpoint_is_the_regional_Kinesis_endpoint(string region, string endpoint)
    {
        await using var publisher = new KinesisPublisher(new KinesisPublisherOptions { Region = region, Credentials = new BasicAWSCredentials("a", "b") });

        Assert.Equal(new Uri(endpoint), publisher.Endpoint);
        Assert.Equal(region, publisher.Region);
    }

    [Theory]
    [InlineData("https://kinesis.ap-southeast-2.amazonaws.com", "ap-southeast-2")]
    [InlineData("https://vpce-0123456789abcdef-abcdefgh.kinesis.eu-central-1.vpce.amazonaws.com", "eu-central-1")]
    [InlineData("https://kinesis-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1")]
    public async Task A_regional_AWS_service_url_gives_the_signing_region(string serviceUrl, string region)
    {
        await using var publisher = new KinesisPublisher(new KinesisPublisherOptions { ServiceUrl = new Uri(serviceUrl), Credentials = new BasicAWSCredentials("a", "b") });

        Assert.Equal(region, publisher.Region);
        Assert.Equal(new Uri(serviceUrl), publisher.Endpoint);
    }

    [Fact]
    public async Task An_explicit_region_wins_over_the_service_url()
    {
        await using var publisher = new KinesisPublisher(new KinesisPublisherOptions
        {
            ServiceUrl = new Uri("https://kinesis.ap-southeast-2.amazonaws.com"),
            Region = "eu-west-3",
            Credentials = new BasicAWSCredentials("a", "b"),
        });

        Assert.Equal("eu-west-3", publisher.Region);
    }

    /// <summary>
    /// SigV4 written out from the specification, independently of AWSSDK.Core, for a request to <c>/</c> without a query:
    /// canonical request, string to sign, the four-step key derivation, and the final HMAC. Returns the hex signature.
    /// </summary>
    private static string IndependentSignature(string method, (string Name, string Value)[] headers, byte[] body, string secretKey, string region, string service)
    {
        var sorted = headers.Select(h => (Name: h.Name.ToLowerInvariant(), Value: h.Value.Trim())).OrderBy(h => h.Name, StringComparer.Ordinal).ToList();
        var amzDate = sorted.Single(h => h.Name == "x-amz-date").Value;
        var date = amzDate[..8];
        var canonicalHeaders = string.Concat(sorted.Select(h => $"{h.Name}:{h.Value}\n"));
        var signedHeaders = string.Join(';', sorted.Select(h => h.Name));
        var canonicalRequest = $"{method}\n/\n\n{canonicalHeaders}\n{signedHeaders}\n{Hex(SHA256.HashData(body))}";
        var scope = $"{date}/{region}/{service}/aws4_request";
        var stringToSign = $"AWS4-HMAC-SHA256\n{amzDate}\n{scope}\n{Hex(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest)))}";

        var key = Encoding.UTF8.GetBytes("AWS4" + secretKey);
        foreach (var part in new[] { date, region, service, "aws4_request" })
        {
            key = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(part));
        }

        return Hex(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(stringToSign)));

        static string Hex(byte[] bytes) => Convert.ToHexString(bytes).ToLower(CultureInfo.InvariantCulture);
    }
}
