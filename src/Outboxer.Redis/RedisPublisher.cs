using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Outboxer.Providers;
using StackExchange.Redis;

namespace Outboxer.Redis;

/// <summary>
/// Appends outbox messages to Redis Streams with <c>XADD</c>: <see cref="PublishAsync"/> completes only when Redis replied with the
/// entry's id. With <see cref="RedisPublisherOptions.DeduplicationWindow"/> on (the default), a message published again within the
/// window (a retry after a lost reply, or after the relay crashed before it marked the message sent) is not appended again: one Lua
/// script checks the message's deduplication key, appends, and records the entry's id under that key, atomically.
/// </summary>
/// <remarks>
/// <para>
/// The stream is the message's <see cref="RedisOptionKeys.Stream"/> option, or <see cref="RedisPublisherOptions.DefaultStream"/>. Each
/// entry has the fields <c>message-id</c>, <c>payload</c> (the bytes), <c>created-at</c>, <c>ordering-key</c> (when set) and
/// <c>h:&lt;name&gt;</c> per header. The message's <see cref="RedisOptionKeys.MaxLength"/> or <see cref="RedisOptionKeys.MinId"/>
/// option trims the stream as the entry is appended.
/// </para>
/// <para>
/// A batch (<see cref="PublishBatchAsync"/>) is grouped by stream; each stream's messages go in script calls of up to 100 entries
/// (1 MiB), which Redis runs one at a time, so a stream's entries keep the batch's order. Different streams are appended concurrently
/// over the multiplexer's pipelined connection. After a transient failure, the later messages of the batch with the same
/// <see cref="OutboxMessage.OrderingKey"/> are held back (they fail transiently too), so that the retry keeps their order.
/// </para>
/// <para>Safe for concurrent use.</para>
/// </remarks>
public sealed class RedisPublisher : IOutboxBatchPublisher, IAsyncDisposable
{
    private const int MaxEntriesPerCall = 100;
    private const long MaxBytesPerCall = 1024 * 1024;

    /// <summary>
    /// Appends the entries of one call to KEYS[1]. ARGV[1] is the deduplication window in milliseconds ('0': off; KEYS[1 + i] is then
    /// entry i's deduplication key), ARGV[2] the number of entries, then per entry: trim kind ('', 'MAXLEN' or 'MINID'), trim operator
    /// ('~' or '='), threshold, number of field names and values, and those. Returns per entry '+id' (appended), '=id' (appended
    /// before, within the window), '!error' (XADD refused) or '?error' (the deduplication key could not be read).
    /// </summary>
    private const string AppendScript = """
        local window = tonumber(ARGV[1])
        local n = tonumber(ARGV[2])
        local results = {}
        local a = 3
        for i = 1, n do
          local kind, op, threshold, count = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
          a = a + 4
          local existing = false
          if window > 0 then
            existing = redis.pcall('GET', KEYS[i + 1])
          end
          if type(existing) == 'table' and existing.err then
            results[i] = '?' .. existing.err
          elseif existing then
            results[i] = '=' .. existing
          else
            local args = {'XADD', KEYS[1]}
            if kind ~= '' then
              args[#args + 1] = kind
              args[#args + 1] = op
              args[#args + 1] = threshold
            end
            args[#args + 1] = '*'
            for j = 0, count - 1 do
              args[#args + 1] = ARGV[a + j]
            end
            local id = redis.pcall(unpack(args))
            if type(id) == 'table' and id.err then
              results[i] = '!' .. id.err
            else
              if window > 0 then
                redis.call('SET', KEYS[i + 1], id, 'PX', window)
              end
              results[i] = '+' .. id
            end
          end
          a = a + count
        end
        return results
        """;

    private readonly RedisPublisherOptions _options;
    private readonly ILogger _logger;
    private readonly ConfigurationOptions? _configuration;
    private readonly bool _ownsConnection;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private IConnectionMultiplexer? _connection;
    private int _disposed;

    /// <summary>Initializes a publisher over a connection, which the caller keeps owning and disposes after the publisher.</summary>
    /// <param name="connection">The connection, for example the <see cref="IConnectionMultiplexer"/> the application shares.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="logger">The logger; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public RedisPublisher(IConnectionMultiplexer connection, RedisPublisherOptions? options = null, ILogger<RedisPublisher>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        _options = ValidatedCopy(options);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _connection = connection;
    }

    /// <summary>
    /// Initializes a publisher that connects with <paramref name="configuration"/> on its first publish, owns the connection and closes it
    /// when disposed. Until Redis answers, publishes fail with a transient <see cref="OutboxException"/> and the outbox retries them, so
    /// an application can start while Redis is down.
    /// </summary>
    /// <param name="configuration">
    /// A StackExchange.Redis configuration string, for example <c>localhost:6379</c> or <c>redis0:6380,password=...,ssl=true</c>
    /// (<c>defaultDatabase=n</c> picks the database).
    /// </param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults. They are copied and validated here.</param>
    /// <param name="loggerFactory">The logger factory; <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="configuration"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option or the configuration string is invalid.</exception>
    /// <remarks>Internal: <c>UseRedis(configuration)</c> uses it; applications call <see cref="ConnectAsync"/>, which connects at once.</remarks>
    internal RedisPublisher(string configuration, RedisPublisherOptions? options, ILoggerFactory? loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        _options = ValidatedCopy(options);
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<RedisPublisher>();
        _configuration = ParseConfiguration(configuration);
        _ownsConnection = true;
    }

    /// <summary>Connects to Redis and returns a publisher that owns the connection and closes it when disposed.</summary>
    /// <param name="configuration">A StackExchange.Redis configuration string, for example <c>localhost:6379</c>.</param>
    /// <param name="options">The settings; <see langword="null"/> for the defaults.</param>
    /// <param name="loggerFactory">The logger factory; <see langword="null"/> for no logging.</param>
    /// <param name="cancellationToken">A token to stop waiting for the connection.</param>
    /// <returns>The connected publisher.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="configuration"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option or the configuration string is invalid.</exception>
    /// <exception cref="OutboxException">Redis could not be reached (<see cref="OutboxException.IsTransient"/> is <see langword="true"/>).</exception>
    public static async Task<RedisPublisher> ConnectAsync(string configuration, RedisPublisherOptions? options = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        var publisher = new RedisPublisher(configuration, options, loggerFactory);
        try
        {
            await publisher.GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await publisher.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return publisher;
    }

    /// <summary>
    /// Appends <paramref name="message"/> to the stream its <see cref="OutboxMessage.Options"/> name, and completes when Redis replied
    /// with the entry's id (or, within the deduplication window, with the id it was appended as before).
    /// </summary>
    /// <param name="message">The message to publish.</param>
    /// <param name="cancellationToken">A token to stop waiting; Redis may still append the message.</param>
    /// <returns>A task that completes when Redis replied.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OutboxException">
    /// The message was not appended. <see cref="OutboxException.IsTransient"/> is <see langword="false"/> when retrying cannot help: an
    /// option of a wrong type or out of range (the message names the key and value), no stream, a key that is not a stream
    /// (<c>WRONGTYPE</c>, naming the key), a message larger than <see cref="RedisPublisherOptions.MaxMessageSize"/>; and
    /// <see langword="true"/> when Redis could not be reached, timed out, or is out of memory, loading or failing over.
    /// <see cref="OutboxException.IsOutcomeUnknown"/> is <see langword="true"/> when the connection failed or timed out after the command
    /// was sent: Redis may have appended the message.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

        RedisEntry entry;
        try
        {
            entry = RedisEntry.Create(message, 0, _options);
        }
        catch (OutboxException ex)
        {
            Log.PublishFailed(_logger, ex, message.MessageId, null);
            throw;
        }

        var results = new Exception?[1];
        await AppendAsync(entry.Stream, [entry], results, cancellationToken).ConfigureAwait(false);
        if (results[0] is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>
    /// Appends <paramref name="messages"/>: grouped by stream, each stream's in script calls of up to 100 entries run one after another
    /// in the batch's order, the streams concurrently. After a transient failure, the later messages with the same ordering key are not
    /// sent (they fail transiently too), so that the retry keeps their order.
    /// </summary>
    /// <param name="messages">The batch, oldest first.</param>
    /// <param name="cancellationToken">A token to stop waiting; Redis may still append some messages.</param>
    /// <returns>
    /// One entry per message, at the same index: <see langword="null"/> when Redis appended it (now or, within the deduplication window,
    /// before), otherwise an <see cref="OutboxException"/> as <see cref="PublishAsync"/> describes.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> is <see langword="null"/>.</exception>
    /// <exception cref="ObjectDisposedException">The publisher was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<IReadOnlyList<Exception?>> PublishBatchAsync(IReadOnlyList<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

        var results = new Exception?[messages.Count];
        var prepared = new List<RedisEntry>(messages.Count);
        for (var i = 0; i < messages.Count; i++)
        {
            try
            {
                prepared.Add(RedisEntry.Create(messages[i], i, _options));
            }
            catch (OutboxException ex)
            {
                Log.PublishFailed(_logger, ex, messages[i].MessageId, null);
                results[i] = ex;
            }
        }

        var calls = 0;
        await OrderedBatchSplitter.ForEachDestinationAsync(prepared, e => e.Stream, async (stream, entries) =>
        {
            var splitter = new OrderedBatchSplitter(MaxEntriesPerCall, MaxBytesPerCall);
            foreach (var request in splitter.Split(entries, e => e.Size))
            {
                var toSend = splitter.FilterHeldBack(request, e => e.OrderingKey, e => results[e.Index] = HeldBack(e));
                if (toSend.Count == 0)
                {
                    continue;
                }

                Interlocked.Increment(ref calls);
                await AppendAsync(stream, toSend, results, cancellationToken).ConfigureAwait(false);
                foreach (var entry in toSend)
                {
                    if (results[entry.Index] is OutboxException { IsTransient: true })
                    {
                        splitter.MarkFailed(entry.OrderingKey);
                    }
                }
            }
        }).ConfigureAwait(false);

        Log.BatchPublished(_logger, results.Count(r => r is null), results.Length, calls);
        return results;
    }

    /// <summary>Gets the <c>messaging.system</c> value of this publisher's telemetry: <c>redis</c> (OpenTelemetry registers no value for Redis Streams).</summary>
    public string MessagingSystem => "redis";

    /// <summary>
    /// Gets the host and port of the one Redis server the configuration names, for the <c>server.address</c> and <c>server.port</c>
    /// attributes of the outbox's telemetry; <see langword="null"/> for several servers or a connection this publisher did not configure.
    /// </summary>
    public DnsEndPoint? ServerEndPoint => _configuration?.EndPoints is [var endPoint] ? endPoint switch
    {
        DnsEndPoint dns => new DnsEndPoint(dns.Host, dns.Port > 0 ? dns.Port : 6379),
        IPEndPoint ip => new DnsEndPoint(ip.Address.ToString(), ip.Port > 0 ? ip.Port : 6379),
        _ => null,
    } : null;

    /// <summary>
    /// Gets the stream <paramref name="message"/> goes to: its <see cref="RedisOptionKeys.Stream"/> option, or
    /// <see cref="RedisPublisherOptions.DefaultStream"/> when it has none. Sends nothing.
    /// </summary>
    /// <param name="message">The message.</param>
    /// <returns>The stream key; <see langword="null"/> when there is none, or when the option is of a wrong type or empty.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is <see langword="null"/>.</exception>
    public string? GetDestinationName(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        try
        {
            return RedisEntry.FindStream(message, _options);
        }
        catch (OutboxException)
        {
            return null;
        }
    }

    /// <summary>Closes the connection when the publisher opened it; a connection passed in stays open. Calling it again does nothing.</summary>
    /// <returns>A task that completes when the owned connection is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (_ownsConnection && _connection is { } connection)
        {
            await connection.CloseAsync(allowCommandsToComplete: true).ConfigureAwait(false);
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The key under which the id of <paramref name="entry"/>'s first append is kept, in the stream's hash slot.</summary>
    internal static string DeduplicationKey(string prefix, RedisEntry entry) => $"{prefix}{{{HashTag(entry.Stream)}}}:{entry.Message.MessageId}";

    /// <summary>The part of <paramref name="key"/> Redis Cluster hashes: the text between its first <c>{</c> and the next <c>}</c> when not empty, else the whole key.</summary>
    internal static string HashTag(string key)
    {
        var open = key.IndexOf('{', StringComparison.Ordinal);
        if (open >= 0)
        {
            var close = key.IndexOf('}', open + 1);
            if (close > open + 1)
            {
                return key[(open + 1)..close];
            }
        }

        return key;
    }

    private static RedisPublisherOptions ValidatedCopy(RedisPublisherOptions? options)
    {
        var copy = (options ?? new RedisPublisherOptions()).Clone();
        copy.Validate();
        return copy;
    }

    private static ConfigurationOptions ParseConfiguration(string configuration)
    {
        ConfigurationOptions parsed;
        try
        {
            parsed = ConfigurationOptions.Parse(configuration);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or NotSupportedException)
        {
            throw new ArgumentException($"The Redis configuration string is invalid: {ex.Message}", nameof(configuration), ex);
        }

        if (parsed.EndPoints.Count == 0)
        {
            throw new ArgumentException("The Redis configuration string names no server, for example 'localhost:6379'.", nameof(configuration));
        }

        // Start even while Redis is down, and keep reconnecting in the background: publishes fail transiently meanwhile.
        parsed.AbortOnConnectFail = false;
        parsed.ClientName ??= "Outboxer";
        return parsed;
    }

    private async ValueTask<IDatabase> GetDatabaseAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _connection) is { } existing)
        {
            return existing.GetDatabase();
        }

        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            if (_connection is null)
            {
                var configuration = _configuration!;
                var endpoints = string.Join(",", configuration.EndPoints.Select(e => e.ToString()));
                IConnectionMultiplexer connection;
                try
                {
                    connection = await ConnectionMultiplexer.ConnectAsync(configuration).WaitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is RedisException or TimeoutException or IOException)
                {
                    throw new OutboxException($"Could not connect to Redis at {endpoints}: {ex.Message}", isTransient: true, ex);
                }

                Log.Connected(_logger, endpoints);
                Volatile.Write(ref _connection, connection);
            }

            return _connection.GetDatabase();
        }
        finally
        {
            _connectLock.Release();
        }
    }

    /// <summary>Appends <paramref name="entries"/> (all to <paramref name="stream"/>) in one script call and records each one's result.</summary>
    private async Task AppendAsync(string stream, IReadOnlyList<RedisEntry> entries, Exception?[] results, CancellationToken cancellationToken)
    {
        var window = _options.DeduplicationMilliseconds;
        var keys = new RedisKey[window > 0 ? entries.Count + 1 : 1];
        keys[0] = stream;
        var values = new List<RedisValue>(2 + entries.Sum(e => 4 + e.Fields.Length)) { window, entries.Count };
        for (var i = 0; i < entries.Count; i++)
        {
            var entry = entries[i];
            if (window > 0)
            {
                keys[i + 1] = DeduplicationKey(_options.DeduplicationKeyPrefix, entry);
            }

            values.Add(entry.TrimKind);
            values.Add(entry.TrimOperator);
            values.Add(entry.TrimThreshold);
            values.Add(entry.Fields.Length);
            values.AddRange(entry.Fields);
        }

        RedisResult[] replies;
        try
        {
            var database = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
            var result = await database.ScriptEvaluateAsync(AppendScript, keys, [.. values]).WaitAsync(cancellationToken).ConfigureAwait(false);
            replies = (RedisResult[])result!;
            if (replies.Length != entries.Count)
            {
                throw new OutboxException($"Redis answered {replies.Length} results for {entries.Count} entries appended to stream '{stream}'; they will be retried.", isTransient: true);
            }
        }
        catch (Exception ex) when (!(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            var failure = ex as OutboxException ?? RedisErrors.Translate(ex, stream, entries.Count);
            if (failure is null)
            {
                throw;
            }

            foreach (var entry in entries)
            {
                Log.PublishFailed(_logger, failure, entry.Message.MessageId, stream);
                results[entry.Index] = failure;
            }

            return;
        }

        for (var i = 0; i < entries.Count; i++)
        {
            var entry = entries[i];
            var reply = replies[i].ToString();
            switch (reply.Length > 0 ? reply[0] : '\0')
            {
                case '+':
                    results[entry.Index] = null;
                    break;
                case '=':
                    results[entry.Index] = null;
                    Log.Duplicate(_logger, entry.Message.MessageId, stream, reply[1..]);
                    break;
                case '!':
                case '?':
                    var failure = RedisErrors.Refused(entry, reply[1..], reply[0] == '?' ? DeduplicationKey(_options.DeduplicationKeyPrefix, entry) : null);
                    Log.PublishFailed(_logger, failure, entry.Message.MessageId, stream);
                    results[entry.Index] = failure;
                    break;
                default:
                    results[entry.Index] = new OutboxException($"Redis answered '{reply}' for message {entry.Message.MessageId} appended to stream '{stream}'; it will be retried.", isTransient: true);
                    break;
            }
        }
    }

    private static OutboxException HeldBack(RedisEntry entry) => new(
        $"Message {entry.Message.MessageId} was not appended to Redis stream '{entry.Stream}': an earlier message with its ordering key '{entry.OrderingKey}' " +
        "failed and will be retried first, to keep their order.",
        isTransient: true);
}
