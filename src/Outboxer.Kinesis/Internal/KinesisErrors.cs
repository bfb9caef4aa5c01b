namespace Outboxer.Kinesis.Internal;

/// <summary>Which Kinesis errors a retry may cure.</summary>
internal static class KinesisErrors
{
    /// <summary>
    /// Whether an error of <paramref name="errorType"/> (a whole-request error type, or a <c>PutRecords</c> record's <c>ErrorCode</c>)
    /// may go away on a later attempt. Throttling, internal failures and expired temporary credentials may; a missing stream,
    /// refused access, an invalid request and a disabled, missing or inaccessible KMS key do not until someone changes the setup.
    /// An unknown type is transient when it came with a 5xx, 408 or 429 status or with none (a record's error code).
    /// </summary>
    public static bool IsTransient(string? errorType, int? httpStatus) => errorType switch
    {
        "ProvisionedThroughputExceededException" or "LimitExceededException" or "ThrottlingException" or "Throttling"
            or "TooManyRequestsException" or "KMSThrottlingException" or "InternalFailure" or "InternalFailureException"
            or "InternalServerError" or "ServiceUnavailable" or "ServiceUnavailableException" or "ResourceInUseException"
            or "ExpiredTokenException" or "RequestTimeout" or "RequestTimeoutException" => true,
        "ResourceNotFoundException" or "AccessDeniedException" or "UnrecognizedClientException" or "InvalidClientTokenId"
            or "InvalidSignatureException" or "IncompleteSignatureException" or "MissingAuthenticationTokenException"
            or "SignatureDoesNotMatch" or "ValidationException" or "InvalidArgumentException" or "SerializationException"
            or "UnknownOperationException" or "KMSDisabledException" or "KMSInvalidStateException" or "KMSAccessDeniedException"
            or "KMSNotFoundException" or "KMSOptInRequired" => false,
        _ => httpStatus is null or >= 500 or 408 or 429,
    };
}
