using System.Security.Cryptography;
using Amazon.Runtime;
using Amazon.Runtime.Internal.Auth;

namespace Outboxer.Kinesis.Internal;

/// <summary>
/// Signs an HTTP request with AWS Signature Version 4 using AWSSDK.Core's <see cref="AWS4Signer"/>: its canonicalization of the
/// headers and the request, its string to sign, signing-key derivation and HMAC. Derived from <see cref="AWS4Signer"/> only to reach
/// its <see langword="protected"/> canonicalization helpers; it is never used as a signer instance.
/// </summary>
internal sealed class SigV4 : AWS4Signer
{
    private SigV4()
    {
    }

    /// <summary>
    /// Adds <c>host</c>, <c>X-Amz-Date</c> and, for temporary credentials, <c>X-Amz-Security-Token</c> to <paramref name="headers"/>,
    /// and returns the value of the <c>Authorization</c> header for a request to <paramref name="endpoint"/> (path <c>/</c>, no query)
    /// with <paramref name="headers"/> and <paramref name="body"/>.
    /// </summary>
    /// <param name="method">The HTTP method, for example <c>POST</c>.</param>
    /// <param name="endpoint">The request's address; its path must be <c>/</c>.</param>
    /// <param name="headers">The headers to sign (name to value, case-insensitive); receives the headers signing adds.</param>
    /// <param name="body">The request body.</param>
    /// <param name="credentials">The credentials to sign with.</param>
    /// <param name="region">The region of the signature's scope.</param>
    /// <param name="service">The service of the signature's scope, for example <c>kinesis</c>.</param>
    /// <param name="signedAt">When the request is signed (UTC).</param>
    /// <returns>The <c>Authorization</c> header value.</returns>
    public static string Sign(
        string method,
        Uri endpoint,
        IDictionary<string, string> headers,
        ReadOnlySpan<byte> body,
        ImmutableCredentials credentials,
        string region,
        string service,
        DateTimeOffset signedAt)
    {
        if (credentials.UseToken)
        {
            headers["X-Amz-Security-Token"] = credentials.Token;
        }

        var requestTime = InitializeHeaders(headers, endpoint, signedAt.UtcDateTime);
        var sortedHeaders = SortAndPruneHeaders(headers);
        var bodyHash = Convert.ToHexStringLower(SHA256.HashData(body));
        var canonicalRequest = CanonicalizeRequest(endpoint, "/", method, sortedHeaders, canonicalQueryString: string.Empty, bodyHash);
        var signedHeaders = CanonicalizeHeaderNames(sortedHeaders);
        return ComputeSignature(credentials, region, requestTime, service, signedHeaders, canonicalRequest).ForAuthorizationHeader;
    }
}
