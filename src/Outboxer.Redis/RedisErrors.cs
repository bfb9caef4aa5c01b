using System.Net.Sockets;
using StackExchange.Redis;

namespace Outboxer.Redis;

/// <summary>Turns Redis errors into <see cref="OutboxException"/>s whose <see cref="OutboxException.IsTransient"/> says whether a retry may help.</summary>
internal static class RedisErrors
{
    /// <summary>
    /// The error prefixes a retry may get past: out of memory (until keys expire or are trimmed), a server loading its data set or busy
    /// with a script, a replica made read-only by a failover, a cluster being reconfigured.
    /// </summary>
    private static readonly string[] s_transientPrefixes = ["OOM", "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "NOREPLICAS", "MOVED", "ASK"];

    /// <summary>Tells whether a Redis error reply (its text) may go away on a retry.</summary>
    public static bool IsTransient(string errorReply)
    {
        foreach (var prefix in s_transientPrefixes)
        {
            if (errorReply.StartsWith(prefix, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The failure of one entry that Redis refused inside the script (<c>XADD</c> or the deduplication key's <c>GET</c>).</summary>
    public static OutboxException Refused(RedisEntry entry, string errorReply, string? dedupKey)
    {
        if (errorReply.StartsWith("WRONGTYPE", StringComparison.Ordinal))
        {
            return dedupKey is null
                ? new OutboxException(
                    $"Redis refused message {entry.Message.MessageId}: the key '{entry.Stream}' holds a value that is not a stream ({errorReply}). Name another stream in the '{RedisOptionKeys.Stream}' option, or remove the key.",
                    isTransient: false)
                : new OutboxException(
                    $"Redis refused message {entry.Message.MessageId}: its deduplication key '{dedupKey}' holds a value that is not a string ({errorReply}). Change {nameof(RedisPublisherOptions)}.{nameof(RedisPublisherOptions.DeduplicationKeyPrefix)}.",
                    isTransient: false);
        }

        var transient = IsTransient(errorReply);
        return new OutboxException(
            $"Redis refused to append message {entry.Message.MessageId} to stream '{entry.Stream}': {errorReply}{(transient ? "; it will be retried." : string.Empty)}",
            transient);
    }

    /// <summary>
    /// The failure of a whole script call; <see langword="null"/> when the exception is not Redis's or the network's. A connection
    /// failure or timeout after the command was sent (StackExchange.Redis reports its <see cref="CommandStatus"/>) has an unknown
    /// outcome: the script may have run.
    /// </summary>
    public static OutboxException? Translate(Exception ex, string stream, int count)
    {
        var what = count == 1 ? "1 message" : $"{count} messages";
        return ex switch
        {
            RedisServerException server when server.Message.StartsWith("WRONGTYPE", StringComparison.Ordinal) => new OutboxException(
                $"Redis refused to append {what}: the key '{stream}' holds a value that is not a stream ({server.Message}).", isTransient: false, ex),
            RedisServerException server => new OutboxException(
                $"Redis refused to append {what} to stream '{stream}': {server.Message}", IsTransient(server.Message), ex),
            RedisConnectionException { CommandStatus: CommandStatus.WaitingToBeSent or CommandStatus.WaitingInBacklog }
                or RedisTimeoutException { Commandstatus: CommandStatus.WaitingToBeSent or CommandStatus.WaitingInBacklog }
                or ObjectDisposedException => new OutboxException(
                $"Appending {what} to Redis stream '{stream}' failed before the command was sent: {ex.Message}; it will be retried.",
                isTransient: true,
                ex),
            RedisConnectionException or RedisTimeoutException or TimeoutException or IOException or SocketException => new OutboxException(
                $"The outcome of appending {what} to Redis stream '{stream}' is unknown: the command was (or may have been) sent and Redis did not reply ({ex.Message}). " +
                "Redis may have appended them; the retry is deduplicated within the window.",
                isTransient: true,
                ex)
            {
                IsOutcomeUnknown = true,
            },
            RedisCommandException => new OutboxException($"Appending {what} to Redis stream '{stream}' failed: {ex.Message}", isTransient: false, ex),
            RedisException => new OutboxException($"Appending {what} to Redis stream '{stream}' failed: {ex.Message}", isTransient: true, ex),
            _ => null,
        };
    }
}
