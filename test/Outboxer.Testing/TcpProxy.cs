using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Outboxer.Testing;

/// <summary>
/// A TCP forwarder on 127.0.0.1:&lt;ephemeral&gt; to 127.0.0.1:<c>targetPort</c> that can cut every connection (reset) and refuse new
/// ones (accept, then reset) for a while, as a network partition between the dispatcher and a server would; and that can drop what
/// the server answers while still forwarding what the client sends, so that a request reaches the server and its answer is lost.
/// </summary>
/// <remarks>
/// Used by the guarantee scenarios (partitions) and by <see cref="OutboxPublisherConformanceTests"/> (a publish whose answer never
/// arrives). Plain sockets, no server driver: it fits this driver-free project.
/// </remarks>
public sealed class TcpProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _targetPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<int, (Socket Client, Socket Server)> _pairs = new();
    private readonly Task _accepting;
    private int _nextPair;
    private volatile bool _refusing;
    private volatile bool _droppingReplies;
    private long _droppedReplyBytes;

    /// <summary>Starts listening on an ephemeral port of 127.0.0.1 and forwarding each connection to 127.0.0.1:<paramref name="targetPort"/>.</summary>
    /// <param name="targetPort">The server's port.</param>
    public TcpProxy(int targetPort)
    {
        _targetPort = targetPort;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = Task.Run(AcceptLoopAsync);
    }

    /// <summary>Gets the port clients connect to instead of the server's.</summary>
    public int Port { get; }

    /// <summary>Gets how many times <see cref="CutAsync"/> ran.</summary>
    public int Cuts { get; private set; }

    /// <summary>Gets how many connections the cuts reset.</summary>
    public int ConnectionsCut { get; private set; }

    /// <summary>Gets how many bytes from the server were dropped since <see cref="DropReplies"/>.</summary>
    public long DroppedReplyBytes => Interlocked.Read(ref _droppedReplyBytes);

    /// <summary>
    /// From now until the next <see cref="CutAsync"/>, forwards what clients send but drops what the server sends back, on the open
    /// connections and on new ones: requests reach the server, and their answers (confirms, acknowledgements, responses) never arrive.
    /// </summary>
    public void DropReplies()
    {
        Interlocked.Exchange(ref _droppedReplyBytes, 0);
        _droppingReplies = true;
    }

    /// <summary>Resets every open connection, refuses new ones for <paramref name="refuseFor"/>, then accepts again.</summary>
    /// <remarks>Ends <see cref="DropReplies"/>: connections made after the cut forward both ways again.</remarks>
    /// <param name="refuseFor">How long new connections are refused after the cut.</param>
    /// <param name="cancellationToken">A token to stop waiting (connections are accepted again then).</param>
    /// <returns>A task that completes when the proxy accepts connections again.</returns>
    public async Task CutAsync(TimeSpan refuseFor, CancellationToken cancellationToken)
    {
        _refusing = true;
        _droppingReplies = false;
        Cuts++;
        foreach (var (id, pair) in _pairs)
        {
            if (_pairs.TryRemove(id, out _))
            {
                ConnectionsCut++;
                Reset(pair.Client);
                Reset(pair.Server);
            }
        }

        try
        {
            await Task.Delay(refuseFor, cancellationToken);
        }
        finally
        {
            _refusing = false;
        }
    }

    /// <summary>Stops listening and resets every open connection.</summary>
    /// <returns>A task that completes when the proxy stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        foreach (var (_, pair) in _pairs)
        {
            Reset(pair.Client);
            Reset(pair.Server);
        }

        _pairs.Clear();
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            if (_refusing)
            {
                Reset(client);
                continue;
            }

            _ = Task.Run(() => ConnectAsync(client));
        }
    }

    private async Task ConnectAsync(Socket client)
    {
        var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        try
        {
            await server.ConnectAsync(new IPEndPoint(IPAddress.Loopback, _targetPort), _stop.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            Reset(client);
            Reset(server);
            return;
        }

        if (_refusing)
        {
            Reset(client);
            Reset(server);
            return;
        }

        var id = Interlocked.Increment(ref _nextPair);
        _pairs[id] = (client, server);
        await Task.WhenAll(PumpAsync(id, client, server, fromServer: false), PumpAsync(id, server, client, fromServer: true));
    }

    private async Task PumpAsync(int id, Socket from, Socket to, bool fromServer)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (read == 0)
                {
                    break;
                }

                if (fromServer && _droppingReplies)
                {
                    Interlocked.Add(ref _droppedReplyBytes, read);
                    continue;
                }

                var sent = 0;
                while (sent < read)
                {
                    sent += await to.SendAsync(buffer.AsMemory(sent, read - sent), SocketFlags.None, _stop.Token);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        // Either side ending ends both: the protocols here never half-close.
        if (_pairs.TryRemove(id, out var pair))
        {
            Reset(pair.Client);
            Reset(pair.Server);
        }
    }

    /// <summary>Closes with a reset (linger 0), as a cut cable or a dropped route looks to both ends once they notice.</summary>
    private static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }

        socket.Dispose();
    }
}
