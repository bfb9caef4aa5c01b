using System.Net;

namespace Outboxer.Kinesis.Internal;

/// <summary>A Kinesis request that failed as a whole: an error response, no response (network, timeout), or no credentials.</summary>
internal sealed class KinesisServiceException : Exception
{
    public KinesisServiceException(string operation, string message, bool isTransient, string? errorType = null, HttpStatusCode? statusCode = null, Exception? innerException = null, bool isOutcomeUnknown = false)
        : base(message, innerException)
    {
        Operation = operation;
        IsTransient = isTransient;
        ErrorType = errorType;
        StatusCode = statusCode;
        IsOutcomeUnknown = isOutcomeUnknown;
    }

    /// <summary>Gets the API operation, for example <c>PutRecords</c>.</summary>
    public string Operation { get; }

    /// <summary>Gets a value indicating whether sending the same request later may succeed.</summary>
    public bool IsTransient { get; }

    /// <summary>Gets the error type Kinesis answered with (for example <c>ResourceNotFoundException</c>), or <see langword="null"/>.</summary>
    public string? ErrorType { get; }

    /// <summary>
    /// Gets a value indicating whether Kinesis may have taken the request although it failed: it was sent (or may have been) and no
    /// answer came (a timeout, a connection reset), or the answer could not be read.
    /// </summary>
    public bool IsOutcomeUnknown { get; }

    /// <summary>Gets the HTTP status of the error response, or <see langword="null"/> when there was none.</summary>
    public HttpStatusCode? StatusCode { get; }
}
