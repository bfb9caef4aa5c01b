using System.Text.Json.Serialization;

namespace Outboxer.Kinesis.Internal;

// The shapes of the Kinesis JSON API (Kinesis_20131202) that the publisher uses. Property names are the API's; byte[] is written and
// read as base64, as the API's blobs are.

/// <summary>The <c>PutRecord</c> request.</summary>
internal sealed class PutRecordRequest
{
    public required string StreamName { get; init; }

    public required byte[] Data { get; init; }

    public required string PartitionKey { get; init; }

    public string? ExplicitHashKey { get; init; }

    public string? SequenceNumberForOrdering { get; init; }
}

/// <summary>The <c>PutRecord</c> response.</summary>
internal sealed class PutRecordResponse
{
    public string? ShardId { get; init; }

    public string? SequenceNumber { get; init; }
}

/// <summary>The <c>PutRecords</c> request.</summary>
internal sealed class PutRecordsRequest
{
    public required string StreamName { get; init; }

    public required IReadOnlyList<PutRecordsRequestEntry> Records { get; init; }
}

/// <summary>One record of a <c>PutRecords</c> request.</summary>
internal sealed class PutRecordsRequestEntry
{
    public required byte[] Data { get; init; }

    public required string PartitionKey { get; init; }

    public string? ExplicitHashKey { get; init; }
}

/// <summary>The <c>PutRecords</c> response: one entry per request record, in the same order.</summary>
internal sealed class PutRecordsResponse
{
    public int FailedRecordCount { get; init; }

    public List<PutRecordsResultEntry>? Records { get; init; }
}

/// <summary>The result of one record of a <c>PutRecords</c> request: a sequence number, or an error code.</summary>
internal sealed class PutRecordsResultEntry
{
    public string? ShardId { get; init; }

    public string? SequenceNumber { get; init; }

    public string? ErrorCode { get; init; }

    public string? ErrorMessage { get; init; }
}

/// <summary>Source-generated serialization of the API shapes (no reflection, so the package is trimming- and AOT-safe).</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(PutRecordRequest))]
[JsonSerializable(typeof(PutRecordResponse))]
[JsonSerializable(typeof(PutRecordsRequest))]
[JsonSerializable(typeof(PutRecordsResponse))]
internal sealed partial class KinesisJsonContext : JsonSerializerContext;
