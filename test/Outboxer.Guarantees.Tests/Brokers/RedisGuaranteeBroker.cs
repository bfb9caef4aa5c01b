using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Outboxer.Providers;
using Outboxer.Redis;
using Outboxer.Testing.Servers;
using StackExchange.Redis;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// Redis Streams: one stream key per run, read from its first entry with <c>XRANGE</c> after the last id read (polled every 50 ms,
/// carrying on after a connection failure, as in a server restart). Every entry is read once, so a duplicate is a second entry with
/// the same <c>message-id</c> field.
/// </summary>
/// <param name="deduplicates">
/// Whether the publishers run the deduplication check (<see cref="RedisPublisherOptions.DeduplicationWindow"/> at its 10-minute default)
/// or append every publish (<see langword="null"/>; the relay's <c>--no-dedup</c>).
/// </param>
internal sealed class RedisGuaranteeBroker(bool deduplicates = true) : IGuaranteeBroker
{
    private readonly CancellationTokenSource _stopReading = new();
    private ConnectionMultiplexer? _connection;
    private Task _reading = Task.CompletedTask;

    public string Name => "redis";

    public string DisplayName => "Redis";

    public bool Deduplicates => deduplicates;

    public bool CountsDroppedDuplicates => true;

    public int Port => ConfigurationOptions.Parse(RedisServer.Url).EndPoints[0] switch
    {
        System.Net.IPEndPoint ip => ip.Port,
        System.Net.DnsEndPoint dns => dns.Port,
        var other => throw new InvalidOperationException($"Unexpected Redis end point {other}."),
    };

    /// <summary>Gets this run's stream key.</summary>
    public string Stream { get; private set; } = string.Empty;

    /// <summary>Gets how many reads failed (while the server restarts) and were tried again.</summary>
    public int ReadFailures { get; private set; }

    public IReadOnlyList<string> RelayArguments => deduplicates ? [Name, RedisServer.Url] : [Name, RedisServer.Url, "--no-dedup"];

    private RedisPublisherOptions PublisherOptions => new() { DeduplicationWindow = deduplicates ? TimeSpan.FromMinutes(10) : null };

    public async Task StartAsync(string name, Action<Arrival> arrived, CancellationToken cancellationToken)
    {
        Stream = $"outboxer:guarantees:{name}";
        _connection = await RedisServer.ConnectAsync();
        _reading = Task.Run(() => ReadAsync(arrived, _stopReading.Token), CancellationToken.None);
    }

    public void Route(OutboxMessage message, string? key) => message.Options[RedisOptionKeys.Stream] = Stream;

    public async Task<IOutboxPublisher> CreatePublisherAsync(int? port = null, ILoggerFactory? loggerFactory = null)
    {
        var configuration = ConfigurationOptions.Parse(RedisServer.Url);
        if (port is { } p)
        {
            configuration.EndPoints.Clear();
            configuration.EndPoints.Add("127.0.0.1", p);
        }

        return await RedisPublisher.ConnectAsync(configuration.ToString(includePassword: true), PublisherOptions, loggerFactory);
    }

    public async Task<long?> CountStoredAsync(CancellationToken cancellationToken) => await _connection!.GetDatabase().StreamLengthAsync(Stream);

    public async ValueTask DisposeAsync()
    {
        await _stopReading.CancelAsync();
        await _reading.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_connection is not null)
        {
            try
            {
                await _connection.GetDatabase().KeyDeleteAsync(Stream);
            }
#pragma warning disable CA1031 // Best effort: the scenario's result does not depend on it.
            catch (Exception)
#pragma warning restore CA1031
            {
            }

            await _connection.DisposeAsync();
        }

        _stopReading.Dispose();
    }

    /// <summary>Reads the stream in id order from its first entry: <c>XRANGE key (last + COUNT 500</c>, again and again.</summary>
    private async Task ReadAsync(Action<Arrival> arrived, CancellationToken cancellationToken)
    {
        var database = _connection!.GetDatabase();
        string? last = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            StreamEntry[] entries;
            try
            {
                entries = await database.StreamRangeAsync(Stream, minId: last is null ? "-" : "(" + last, maxId: "+", count: 500);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                ReadFailures++;
                entries = [];
            }

            foreach (var entry in entries)
            {
                last = entry.Id.ToString();
                arrived(new Arrival(entry["message-id"].ToString(), Stopwatch.GetTimestamp(), Redelivered: false));
            }

            if (entries.Length < 500)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }
}
