using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Outboxer.Guarantees.Tests;

/// <summary>
/// A TCP forwarder on 127.0.0.1:&lt;ephemeral&gt; to 127.0.0.1:<c>targetPort</c> that can cut every connection (reset) and refuse new
/// ones (accept, then reset) for a while, as a network partition between the dispatcher and a server would.
/// </summary>
internal sealed class TcpProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _targetPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<int, (Socket Client, Socket Server)> _pairs = new();
    private readonly Task _accepting;
    private int _nextPair;
    private volatile bool _refusing;

    public TcpProxy(int targetPort)
    {
        _targetPort = targetPort;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = Task.Run(AcceptLoopAsync);
    }

    public int Port { get; }

    public int Cuts { get; private set; }

    public int ConnectionsCut { get; private set; }

    /// <summary>Resets every open connection, refuses new ones for <paramref name="refuseFor"/>, then accepts again.</summary>
    public async Task CutAsync(TimeSpan refuseFor, CancellationToken cancellationToken)
    {
        _refusing = true;
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
        await Task.WhenAll(PumpAsync(id, client, server), PumpAsync(id, server, client));
    }

    private async Task PumpAsync(int id, Socket from, Socket to)
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
