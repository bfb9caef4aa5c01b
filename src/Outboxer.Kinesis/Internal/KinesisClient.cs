using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Amazon.Runtime;
using Amazon.Runtime.Credentials;

namespace Outboxer.Kinesis.Internal;

/// <summary>
/// Calls the Kinesis JSON API (<c>POST /</c>, <c>application/x-amz-json-1.1</c>, <c>X-Amz-Target: Kinesis_20131202.&lt;Operation&gt;</c>)
/// over an <see cref="HttpClient"/>, signing each request with SigV4. Safe for concurrent use.
/// </summary>
internal sealed class KinesisClient : IDisposable
{
    public const string ContentType = "application/x-amz-json-1.1";
    public const string ServiceName = "kinesis";
    private const string TargetPrefix = "Kinesis_20131202.";

    private readonly HttpClient _http;
    private readonly bool _ownsHttpClient;
    private readonly AWSCredentials? _credentials;
    private readonly DefaultAWSCredentialsIdentityResolver? _credentialChain;
    private readonly TimeProvider _time;

    public KinesisClient(HttpClient http, bool ownsHttpClient, Uri endpoint, string region, AWSCredentials? credentials, TimeProvider time)
    {
        _http = http;
        _ownsHttpClient = ownsHttpClient;
        Endpoint = endpoint;
        Region = region;
        _credentials = credentials;
        _credentialChain = credentials is null ? new DefaultAWSCredentialsIdentityResolver() : null;
        _time = time;
    }

    /// <summary>Gets the address requests are posted to.</summary>
    public Uri Endpoint { get; }

    /// <summary>Gets the region of the signatures' scope.</summary>
    public string Region { get; }

    /// <summary>
    /// Sends <paramref name="request"/> as <paramref name="operation"/> and returns the response, or <see langword="null"/> when its
    /// body is empty.
    /// </summary>
    /// <exception cref="KinesisServiceException">Kinesis answered with an error, could not be reached, or no credentials were found.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<TResponse?> InvokeAsync<TRequest, TResponse>(
        string operation,
        TRequest request,
        JsonTypeInfo<TRequest> requestType,
        JsonTypeInfo<TResponse> responseType,
        CancellationToken cancellationToken)
        where TResponse : class
    {
        cancellationToken.ThrowIfCancellationRequested();
        var body = JsonSerializer.SerializeToUtf8Bytes(request, requestType);
        var credentials = await GetCredentialsAsync(operation, cancellationToken).ConfigureAwait(false);

        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            ["Content-Type"] = ContentType,
            ["X-Amz-Target"] = TargetPrefix + operation,
        };
        var authorization = SigV4.Sign("POST", Endpoint, headers, body, credentials, Region, ServiceName, _time.GetUtcNow());

        using var message = new HttpRequestMessage(HttpMethod.Post, Endpoint) { Content = new ByteArrayContent(body) };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue(ContentType);
        foreach (var (name, value) in headers)
        {
            if (name.Equals("Content-Type", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            if (name.Equals("Host", StringComparison.OrdinalIgnoreCase))
            {
                // The value that was signed; HttpClient would send the same, this makes sure of it.
                message.Headers.Host = value;
                continue;
            }

            message.Headers.TryAddWithoutValidation(name, value);
        }

        message.Headers.TryAddWithoutValidation("Authorization", authorization);

        HttpStatusCode status;
        byte[] responseBody;
        string? errorTypeHeader;
        try
        {
            using var response = await _http.SendAsync(message, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
            status = response.StatusCode;
            responseBody = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
            errorTypeHeader = response.Headers.TryGetValues("x-amzn-ErrorType", out var values) ? values.FirstOrDefault() : null;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
        {
            // A timeout of the HttpClient (not the caller's token), a refused or broken connection, a failed TLS handshake. Only a
            // connection that could not be opened says the request was not sent; otherwise Kinesis may have taken it.
            var notSent = ex is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError };
            throw new KinesisServiceException(
                operation,
                notSent
                    ? $"Kinesis {operation} to {Endpoint} could not be sent: {ex.Message}"
                    : $"The outcome of Kinesis {operation} to {Endpoint} is unknown: the request was (or may have been) sent and no response came ({ex.Message}); Kinesis may have taken it.",
                isTransient: true,
                innerException: ex,
                isOutcomeUnknown: !notSent);
        }

        if ((int)status is >= 200 and < 300)
        {
            if (responseBody.Length == 0)
            {
                return null;
            }

            try
            {
                return JsonSerializer.Deserialize(responseBody, responseType);
            }
            catch (JsonException ex)
            {
                throw new KinesisServiceException(
                    operation,
                    $"The outcome of Kinesis {operation} is unknown: it answered HTTP {(int)status} with a body that is not the expected JSON: {ex.Message}",
                    isTransient: true,
                    statusCode: status,
                    innerException: ex,
                    isOutcomeUnknown: true);
            }
        }

        throw Error(operation, status, errorTypeHeader, responseBody);
    }

    public void Dispose()
    {
        _credentialChain?.Dispose();
        if (_ownsHttpClient)
        {
            _http.Dispose();
        }
    }

    private async ValueTask<ImmutableCredentials> GetCredentialsAsync(string operation, CancellationToken cancellationToken)
    {
        try
        {
            var credentials = _credentials ?? await _credentialChain!.ResolveIdentityAsync(clientConfig: null, cancellationToken).ConfigureAwait(false);
            return await credentials.GetCredentialsAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // Every way the credential chain can fail becomes one failure the outbox retries.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            // Transient: credentials that appear later (a mounted profile, a role that becomes assumable) let the retry succeed.
            throw new KinesisServiceException(operation, $"Could not get AWS credentials to sign the Kinesis {operation} request: {ex.Message}", isTransient: true, innerException: ex);
        }
    }

    private static KinesisServiceException Error(string operation, HttpStatusCode status, string? errorTypeHeader, byte[] body)
    {
        string? type = errorTypeHeader;
        string? text = null;
        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in document.RootElement.EnumerateObject())
                {
                    if (property.Value.ValueKind != JsonValueKind.String)
                    {
                        continue;
                    }

                    if (property.NameEquals("__type"))
                    {
                        type ??= property.Value.GetString();
                    }
                    else if (property.Name.Equals("message", StringComparison.OrdinalIgnoreCase))
                    {
                        text = property.Value.GetString();
                    }
                }
            }
        }
        catch (JsonException)
        {
            // Not JSON (a proxy's page, kinesalite's XML for a bad content type): the status alone tells what happened.
            text = body.Length == 0 ? null : System.Text.Encoding.UTF8.GetString(body, 0, Math.Min(body.Length, 500)).Trim();
        }

        type = Normalize(type);
        var description = $"Kinesis {operation} failed with HTTP {(int)status}{(type is null ? string.Empty : $" {type}")}{(string.IsNullOrEmpty(text) ? "." : $": {text}")}";
        return new KinesisServiceException(operation, description, KinesisErrors.IsTransient(type, (int)status), type, status);
    }

    /// <summary>Reduces <c>com.amazonaws.kinesis.v20131202#ResourceNotFoundException:http://...</c> to <c>ResourceNotFoundException</c>.</summary>
    private static string? Normalize(string? type)
    {
        if (string.IsNullOrWhiteSpace(type))
        {
            return null;
        }

        var colon = type.IndexOf(':', StringComparison.Ordinal);
        if (colon >= 0)
        {
            type = type[..colon];
        }

        var hash = type.LastIndexOf('#');
        return hash >= 0 ? type[(hash + 1)..] : type;
    }
}
