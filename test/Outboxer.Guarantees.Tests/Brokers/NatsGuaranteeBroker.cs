using System.Diagnostics;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream.Models;
using NATS.Client.JetStream;
using Outboxer.Nats;
using Outboxer.Providers;
using Outboxer.Testing.Servers;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// NATS JetStream: a file-backed stream per run over the subjects <c>outboxer.guarantees.&lt;run&gt;.&gt;</c>, read from its first
/// message by an ordered consumer (restarted from the next sequence when it fails, as in a server restart). Every stored message is
/// read once, so a duplicate is a second message in the stream with the same <c>Nats-Msg-Id</c>.
/// </summary>
/// <param name="deduplicates">
/// Whether the stream drops a republished message: <see langword="true"/> gives it a duplicate window of 2 minutes (JetStream's default,
/// far longer than the scenarios' 3 s lease); <see langword="false"/> gives it 100 ms, shorter than any republish after a crash
/// (JetStream has no "off": a window of 0 means the default).
/// </param>
internal sealed class NatsGuaranteeBroker(bool deduplicates = true) : IGuaranteeBroker
{
    /// <summary>The duplicate window of a stream that is meant not to deduplicate: shorter than any republish after a crash (lease 3 s).</summary>
    public static readonly TimeSpan NoDeduplicationWindow = TimeSpan.FromMilliseconds(100);

    private readonly CancellationTokenSource _stopReading = new();
    private NatsConnection? _connection;
    private NatsJSContext? _jetStream;
    private Task _reading = Task.CompletedTask;
    private string _subjectPrefix = string.Empty;

    public string Name => "nats";

    public string DisplayName => "NATS";

    public bool Deduplicates => deduplicates;

    public bool CountsDroppedDuplicates => true;

    public int Port => new Uri(NatsServer.Url).Port;

    /// <summary>Gets this run's stream name.</summary>
    public string Stream { get; private set; } = string.Empty;

    /// <summary>Gets how many times the reader had to start again (it fails while the server restarts).</summary>
    public int ReaderRestarts { get; private set; }

    public IReadOnlyList<string> RelayArguments => [Name, NatsServer.Url];

    public async Task StartAsync(string name, Action<Arrival> arrived, CancellationToken cancellationToken)
    {
        Stream = "OUTBOXER_GUARANTEES_" + name.Replace('-', '_').Replace('.', '_').ToUpperInvariant();
        _subjectPrefix = $"outboxer.guarantees.{name.Replace('.', '_')}";
        _connection = await NatsServer.ConnectAsync($"Outboxer.Guarantees.Tests.{name}");
        _jetStream = new NatsJSContext(_connection);
        await _jetStream.CreateStreamAsync(
            new StreamConfig(Stream, [$"{_subjectPrefix}.>"])
            {
                Storage = StreamConfigStorage.File,      // survives a server restart, with the ids of its duplicate window
                DuplicateWindow = deduplicates ? TimeSpan.FromMinutes(2) : NoDeduplicationWindow,
            },
            cancellationToken);
        _reading = Task.Run(() => ReadAsync(arrived, _stopReading.Token), CancellationToken.None);
    }

    public void Route(OutboxMessage message, string? key) =>
        message.Options[NatsOptionKeys.Subject] = $"{_subjectPrefix}.{key ?? "unordered"}";

    public Task<IOutboxPublisher> CreatePublisherAsync(int? port = null, ILoggerFactory? loggerFactory = null)
    {
        var url = port is { } p ? new UriBuilder(NatsServer.Url) { Host = "127.0.0.1", Port = p }.Uri.ToString() : NatsServer.Url;
        return Task.FromResult<IOutboxPublisher>(NatsPublisher.Create(url, loggerFactory: loggerFactory));
    }

    public async Task<long?> CountStoredAsync(CancellationToken cancellationToken)
    {
        var stream = await _jetStream!.GetStreamAsync(Stream, cancellationToken: cancellationToken);
        return stream.Info.State.Messages;
    }

    public async ValueTask DisposeAsync()
    {
        await _stopReading.CancelAsync();
        await _reading.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_jetStream is not null)
        {
            try
            {
                await _jetStream.DeleteStreamAsync(Stream, CancellationToken.None);
            }
#pragma warning disable CA1031 // Best effort: the scenario's result does not depend on it.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }

        _stopReading.Dispose();
    }

    /// <summary>Reads the stream in sequence order from its first message; after a failure, starts again after the last sequence read.</summary>
    private async Task ReadAsync(Action<Arrival> arrived, CancellationToken cancellationToken)
    {
        ulong last = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var consumer = await _jetStream!.CreateOrderedConsumerAsync(
                    Stream,
                    last == 0
                        ? new NatsJSOrderedConsumerOpts { DeliverPolicy = ConsumerConfigDeliverPolicy.All }
                        : new NatsJSOrderedConsumerOpts { DeliverPolicy = ConsumerConfigDeliverPolicy.ByStartSequence, OptStartSeq = last + 1 },
                    cancellationToken);
                await foreach (var message in consumer.ConsumeAsync<byte[]>(cancellationToken: cancellationToken))
                {
                    var sequence = message.Metadata?.Sequence.Stream ?? 0;
                    if (sequence <= last)
                    {
                        continue;   // read again after a restart of the reader: already counted
                    }

                    last = sequence;
                    var id = message.Headers is { } headers && headers.TryGetValue("Nats-Msg-Id", out var values) ? values.ToString() : string.Empty;
                    arrived(new Arrival(id, Stopwatch.GetTimestamp(), Redelivered: false));
                }
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is NatsException or NatsJSException or TimeoutException or InvalidOperationException)
            {
                ReaderRestarts++;
                await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }
}
