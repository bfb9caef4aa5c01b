using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;

namespace Outboxer.Kinesis.Tests;

/// <summary>A request as it left the publisher: what a server (and a signature check) sees.</summary>
internal sealed record CapturedRequest(HttpMethod Method, Uri Uri, string? Host, string? ContentType, IReadOnlyDictionary<string, string> Headers, byte[] Body)
{
    public string Operation => Headers.TryGetValue("X-Amz-Target", out var target) ? target.Split('.')[1] : string.Empty;

    public JsonElement Json => JsonDocument.Parse(Body).RootElement.Clone();

    public static async Task<CapturedRequest> CaptureAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var body = request.Content is null ? [] : await request.Content.ReadAsByteArrayAsync(cancellationToken);
        var headers = request.Headers.ToDictionary(h => h.Key, h => string.Join(",", h.Value), StringComparer.OrdinalIgnoreCase);
        return new CapturedRequest(request.Method, request.RequestUri!, request.Headers.Host, request.Content?.Headers.ContentType?.ToString(), headers, body);
    }
}

/// <summary>Passes requests on to the real server and records each one.</summary>
internal sealed class RecordingHandler() : DelegatingHandler(new SocketsHttpHandler())
{
    public ConcurrentQueue<CapturedRequest> Requests { get; } = new();

    public int Count(string operation) => Requests.Count(r => r.Operation == operation);

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Requests.Enqueue(await CapturedRequest.CaptureAsync(request, cancellationToken));
        return await base.SendAsync(request, cancellationToken);
    }
}

/// <summary>Answers every request itself, as Kinesis would in situations kinesalite cannot produce (throttling, partial failures).</summary>
internal sealed class StubHandler(Func<CapturedRequest, HttpResponseMessage> respond) : HttpMessageHandler
{
    public ConcurrentQueue<CapturedRequest> Requests { get; } = new();

    public static HttpResponseMessage Json(HttpStatusCode status, string json) =>
        new(status) { Content = new StringContent(json, Encoding.UTF8, "application/x-amz-json-1.1") };

    public static HttpResponseMessage Error(HttpStatusCode status, string type, string message) =>
        Json(status, JsonSerializer.Serialize(new Dictionary<string, string> { ["__type"] = type, ["message"] = message }));

    /// <summary>A <c>PutRecords</c> answer with <paramref name="errorCodeOf"/>(index) for each record (null: stored).</summary>
    public static HttpResponseMessage PutRecordsResult(CapturedRequest request, Func<int, string?> errorCodeOf)
    {
        var count = request.Json.GetProperty("Records").GetArrayLength();
        var records = new List<Dictionary<string, string>>();
        var failed = 0;
        for (var i = 0; i < count; i++)
        {
            if (errorCodeOf(i) is { } code)
            {
                failed++;
                records.Add(new() { ["ErrorCode"] = code, ["ErrorMessage"] = $"{code} for record {i}" });
            }
            else
            {
                records.Add(new() { ["ShardId"] = "shardId-000000000000", ["SequenceNumber"] = $"4959{i:D10}" });
            }
        }

        return Json(HttpStatusCode.OK, JsonSerializer.Serialize(new Dictionary<string, object> { ["FailedRecordCount"] = failed, ["Records"] = records }));
    }

    public static HttpResponseMessage PutRecordResult() =>
        Json(HttpStatusCode.OK, """{"ShardId":"shardId-000000000000","SequenceNumber":"49590338271490256608559692538361571095921575989136588898"}""");

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var captured = await CapturedRequest.CaptureAsync(request, cancellationToken);
        Requests.Enqueue(captured);
        return respond(captured);
    }
}
