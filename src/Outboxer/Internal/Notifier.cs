using System.Threading.Channels;

namespace Outboxer.Internal;

/// <summary>
/// A bounded, drop-oldest notification channel that exists only once someone asked for its reader, so that nobody
/// listening costs nothing and a slow reader never blocks or slows the writer.
/// </summary>
internal sealed class Notifier<T>
{
    private readonly int _capacity;
    private Channel<T>? _channel;

    public Notifier(int capacity) => _capacity = capacity;

    public ChannelReader<T> Reader
    {
        get
        {
            var channel = Volatile.Read(ref _channel);
            if (channel is null)
            {
                channel = Channel.CreateBounded<T>(new BoundedChannelOptions(_capacity)
                {
                    FullMode = BoundedChannelFullMode.DropOldest,
                    SingleWriter = false,
                    SingleReader = false,
                });
                channel = Interlocked.CompareExchange(ref _channel, channel, null) ?? channel;
            }

            return channel.Reader;
        }
    }

    public bool IsObserved => Volatile.Read(ref _channel) is not null;

    public void Publish(T item) => Volatile.Read(ref _channel)?.Writer.TryWrite(item);

    public void Complete() => Volatile.Read(ref _channel)?.Writer.TryComplete();
}
