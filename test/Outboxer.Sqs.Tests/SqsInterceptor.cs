using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.ExceptionServices;
using Amazon.SQS;

namespace Outboxer.Sqs.Tests;

/// <summary>
/// An <see cref="IAmazonSQS"/> that forwards every call to a real client, counts the calls by method name, and lets a test answer a
/// call itself (to simulate a failure the emulator cannot produce).
/// </summary>
public class SqsInterceptor : DispatchProxy
{
    private IAmazonSQS? _target;

    /// <summary>Gets how many times each method was called.</summary>
    public ConcurrentDictionary<string, int> Calls { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Gets or sets a function that answers a call: it receives the method, the arguments and a function that forwards the call, and
    /// returns the result (for the async methods, the task).
    /// </summary>
    public Func<MethodInfo, object?[]?, Func<object?>, object?>? OnCall { get; set; }

    public int CallsTo(string method) => Calls.GetValueOrDefault(method);

    public static (IAmazonSQS Client, SqsInterceptor Interceptor) Wrap(IAmazonSQS target)
    {
        var client = Create<IAmazonSQS, SqsInterceptor>();
        var interceptor = (SqsInterceptor)(object)client;
        interceptor._target = target;
        return (client, interceptor);
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(targetMethod);
        Calls.AddOrUpdate(targetMethod.Name, 1, (_, n) => n + 1);

        object? Forward()
        {
            try
            {
                return targetMethod.Invoke(_target, args);
            }
            catch (TargetInvocationException ex) when (ex.InnerException is not null)
            {
                ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
                throw;
            }
        }

        return OnCall is { } onCall ? onCall(targetMethod, args, Forward) : Forward();
    }
}
