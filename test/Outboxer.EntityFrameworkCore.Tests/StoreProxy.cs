using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using Outboxer.Providers;

namespace Outboxer.EntityFrameworkCore.Tests;

/// <summary>
/// Forwards every <see cref="IOutboxStore"/> call to a real store, but is not an <see cref="IOutboxWakeUpSource"/> (so PostgreSQL's
/// NOTIFY cannot wake the dispatcher), and reports how many messages each claim returned.
/// </summary>
public class StoreProxy : DispatchProxy
{
    private IOutboxStore _inner = null!;

    /// <summary>Gets the number of messages each claim returned, in order.</summary>
    public Channel<int> Claims { get; } = Channel.CreateUnbounded<int>();

    /// <summary>A store that can also write rows already claimed, as the relational stores can (send after commit).</summary>
    public interface ILeasedStore : IOutboxStore, IOutboxLeasedWriter
    {
    }

    public static (IOutboxStore Store, StoreProxy Proxy) Wrap(IOutboxStore inner)
    {
        var store = Create<IOutboxStore, StoreProxy>();
        var proxy = (StoreProxy)(object)store;
        proxy._inner = inner;
        return (store, proxy);
    }

    /// <summary>Like <see cref="Wrap"/>, and the wrapper is an <see cref="IOutboxLeasedWriter"/> too when <paramref name="inner"/> is.</summary>
    public static (IOutboxStore Store, StoreProxy Proxy) WrapLeased(IOutboxStore inner)
    {
        var store = Create<ILeasedStore, StoreProxy>();
        var proxy = (StoreProxy)(object)store;
        proxy._inner = inner;
        return (store, proxy);
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        object? result;
        try
        {
            result = targetMethod!.Invoke(_inner, args);
        }
        catch (TargetInvocationException ex) when (ex.InnerException is not null)
        {
            ExceptionDispatchInfo.Throw(ex.InnerException);
            throw;
        }

        return targetMethod.Name == nameof(IOutboxStore.ClaimAsync) ? ReportAsync((Task<IReadOnlyList<OutboxMessage>>)result!) : result;
    }

    private async Task<IReadOnlyList<OutboxMessage>> ReportAsync(Task<IReadOnlyList<OutboxMessage>> claim)
    {
        var claimed = await claim;
        Claims.Writer.TryWrite(claimed.Count);
        return claimed;
    }
}
