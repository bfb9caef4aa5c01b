using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Kinesis.Tests;

/// <summary>
/// The publisher conformance suite against kinesalite: each test instance gets a one-shard stream of its own, created in
/// <see cref="InitializeAsync"/> and deleted in <see cref="DisposeAsync"/>, and reads it back from <c>TRIM_HORIZON</c>.
/// </summary>
public abstract class KinesisConformanceTestsBase : OutboxPublisherConformanceTests
{
    private readonly List<string> _streams = [];
    private readonly List<IAsyncDisposable> _disposables = [];
    private KinesisAdmin.RecordReader? _reader;

    /// <summary>Gets the client that creates, reads and deletes the test's streams.</summary>
    internal KinesisAdmin Admin { get; } = new();

    /// <summary>Gets this test's stream, where <see cref="Route"/> sends messages.</summary>
    protected string Stream { get; } = KinesisServer.UniqueStreamName("conformance");

    /// <summary>Gets a value indicating whether the publishers of this test class wrap records in the JSON envelope.</summary>
    protected abstract bool UseEnvelope { get; }

    public override async ValueTask InitializeAsync()
    {
        await base.InitializeAsync();
        await KinesisServer.EnsureReachableAsync(Admin);
        await CreateStreamAsync(Stream, shardCount: 1);
        _reader = Admin.Read(Stream);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var disposable in _disposables)
        {
            await disposable.DisposeAsync();
        }

        foreach (var stream in _streams)
        {
            await Admin.DeleteStreamAsync(stream);
        }

        Admin.Dispose();
    }

    protected override Task<IOutboxPublisher> CreatePublisherAsync() =>
        Task.FromResult<IOutboxPublisher>(new KinesisPublisher(KinesisServer.Options(UseEnvelope)));

    protected override int? BrokerPort => KinesisServer.Url.Port;

    protected override Task<IOutboxPublisher> CreatePublisherAsync(int port)
    {
        var options = KinesisServer.Options(UseEnvelope);
        options.ServiceUrl = new UriBuilder(KinesisServer.Url) { Port = port }.Uri;
        return Task.FromResult<IOutboxPublisher>(new KinesisPublisher(options));
    }

    protected override void Route(OutboxMessage message) => message.Options[KinesisOptionKeys.StreamName] = Stream;

    protected override string? ExpectedDestinationName => Stream;

    protected override async Task<IReadOnlyList<ReceivedMessage>> ReceiveAsync(int count, CancellationToken cancellationToken) =>
        (await _reader!.ReadAsync(count, cancellationToken)).Select(ToReceivedMessage).ToList();

    /// <summary>How a consumer of this class's records finds the payload, message id and headers in a record.</summary>
    internal abstract ReceivedMessage ToReceivedMessage(KinesisAdmin.ReceivedRecord record);

    /// <summary>Creates a stream that is deleted at the end of the test, and waits until it is active.</summary>
    protected async Task CreateStreamAsync(string stream, int shardCount)
    {
        _streams.Add(stream);
        await Admin.CreateStreamAsync(stream, shardCount);
    }

    /// <summary>Creates a publisher with <paramref name="configure"/>d options and optionally its own HTTP client; disposed at the end of the test.</summary>
    protected KinesisPublisher NewKinesisPublisher(Action<KinesisPublisherOptions>? configure = null, HttpClient? httpClient = null)
    {
        var options = KinesisServer.Options(UseEnvelope);
        configure?.Invoke(options);
        var publisher = new KinesisPublisher(options, httpClient);
        _disposables.Add(publisher);
        return publisher;
    }

    /// <summary>Waits (bounded by <see cref="OutboxPublisherConformanceTests.ReceiveTimeout"/>) until <paramref name="count"/> records arrived in <paramref name="reader"/>'s stream, and fails unless exactly that many did.</summary>
    internal async Task<IReadOnlyList<KinesisAdmin.ReceivedRecord>> ReadExactlyAsync(KinesisAdmin.RecordReader reader, int count)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(ReceiveTimeout);
        var received = await reader.ReadAsync(count, timeout.Token);
        Ct.ThrowIfCancellationRequested();
        Assert.True(received.Count == count, $"Expected {count} record(s) to arrive within {ReceiveTimeout}, but {received.Count} did.");
        return received;
    }

    /// <summary>Reads this test's stream (<see cref="Stream"/>) like <see cref="ReadExactlyAsync(KinesisAdmin.RecordReader, int)"/>.</summary>
    internal Task<IReadOnlyList<KinesisAdmin.ReceivedRecord>> ReadExactlyAsync(int count) => ReadExactlyAsync(_reader!, count);
}
