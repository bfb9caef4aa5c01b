using System.Net;
using System.Net.Sockets;
using Amazon.Runtime;
using Amazon.SQS.Model;

namespace Outboxer.Sqs;

/// <summary>Maps what the AWS SDK throws or SQS answers to an <see cref="OutboxException"/> that says whether a retry may help.</summary>
internal static class SqsErrors
{
    // Error codes of requests that may succeed later although SQS names the sender (throttling, expired credentials, clock skew).
    private static readonly HashSet<string> s_transientCodes = new(StringComparer.Ordinal)
    {
        "RequestThrottled",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KmsThrottled",
        "KMS.ThrottlingException",
        "OverLimit",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
    };

    /// <summary>Whether <paramref name="ex"/> says that the queue does not exist.</summary>
    public static bool IsMissingQueue(Exception ex) =>
        ex is QueueDoesNotExistException
        || (ex is AmazonServiceException service && service.ErrorCode is "QueueDoesNotExist" or "AWS.SimpleQueueService.NonExistentQueue");

    /// <summary>
    /// Translates a failed request. <paramref name="operation"/> describes it and names the queue, such as
    /// <c>Sending message 1234 to SQS queue 'orders'</c>.
    /// </summary>
    /// <param name="ex">What the SDK threw.</param>
    /// <param name="operation">What failed, naming the queue.</param>
    /// <param name="sending">
    /// <see langword="null"/> for a request that sends no message (a lookup); otherwise the client that sent messages: a failure
    /// without an answer from SQS then has an unknown outcome, unless no attempt could have reached SQS (the connection could not be
    /// opened, and the client makes no retries, so no earlier attempt was sent either).
    /// </param>
    public static OutboxException Translate(Exception ex, string operation, IAmazonService? sending = null)
    {
        if (sending is not null && IsWithoutAnswer(ex) && !(NeverConnected(ex) && sending.Config.MaxErrorRetry == 0))
        {
            return new OutboxException(
                $"The outcome of {char.ToLowerInvariant(operation[0])}{operation[1..]} is unknown: the request was (or may have been) sent and no answer came ({ex.GetType().Name}: {ex.Message.TrimEnd('.')}). SQS may have the message; it will be retried.",
                isTransient: true,
                ex)
            {
                IsOutcomeUnknown = true,
            };
        }

        switch (ex)
        {
            case OutboxException outbox:
                return outbox;
            case var _ when IsMissingQueue(ex):
                return new OutboxException($"{operation} failed: the queue does not exist ({ex.Message}).", isTransient: false, ex);
            case AmazonServiceException service:
                var transient = IsTransient(service);
                var code = string.IsNullOrEmpty(service.ErrorCode) ? $"HTTP {(int)service.StatusCode}" : service.ErrorCode;
                var retry = transient ? "; it will be retried" : string.Empty;
                return new OutboxException($"{operation} failed with {code}: {service.Message?.TrimEnd('.')}{retry}.", transient, ex);
            case AmazonClientException or HttpRequestException or IOException or SocketException or WebException or TimeoutException or OperationCanceledException:
                return new OutboxException($"{operation} failed: {ex.Message.TrimEnd('.')}; it will be retried.", isTransient: true, ex);
            default:
                return new OutboxException($"{operation} failed unexpectedly ({ex.GetType().Name}: {ex.Message}); it will be retried.", isTransient: true, ex);
        }
    }

    /// <summary>Whether <paramref name="ex"/> is a failure without an answer from SQS (a network error or timeout), not an error response.</summary>
    private static bool IsWithoutAnswer(Exception ex) => ex switch
    {
        OutboxException => false,
        AmazonServiceException service when (int)service.StatusCode > 0 => false,
        AmazonServiceException { InnerException: { } inner } => IsWithoutAnswer(inner),
        AmazonClientException or HttpRequestException or IOException or SocketException or WebException or TimeoutException or OperationCanceledException => true,
        _ => false,
    };

    /// <summary>Whether <paramref name="ex"/> (or an exception inside it) says the connection could not be opened, so this attempt sent nothing.</summary>
    private static bool NeverConnected(Exception ex)
    {
        for (Exception? current = ex; current is not null; current = current.InnerException)
        {
            if (current is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError })
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Translates an entry that a <c>SendMessageBatch</c> response lists as failed.</summary>
    public static OutboxException Translate(BatchResultErrorEntry failure, OutboxMessage message, string queue)
    {
        var transient = failure.SenderFault != true || (failure.Code is { } code && s_transientCodes.Contains(code));
        var retry = transient ? "; it will be retried" : string.Empty;
        return new OutboxException($"SQS refused message {message.MessageId} for queue '{queue}' with {failure.Code}: {failure.Message?.TrimEnd('.')}{retry}.", transient);
    }

    private static bool IsTransient(AmazonServiceException ex)
    {
        if (ex is RequestThrottledException or KmsThrottledException or OverLimitException || ex.Retryable is not null)
        {
            return true;
        }

        if (ex.ErrorCode is { } code && (s_transientCodes.Contains(code) || code.Contains("Throttl", StringComparison.OrdinalIgnoreCase)))
        {
            return true;
        }

        // A client error (4xx) repeats, whatever the error type says; no status, a server error (5xx) or throttling (429) may pass.
        var status = (int)ex.StatusCode;
        return status is < 400 or 429 or >= 500 || ex.ErrorType == ErrorType.Receiver;
    }
}
