namespace Outboxer.Sqs;

/// <summary>The queue a message goes to, as its options name it: a queue URL, or a queue name to resolve with <c>GetQueueUrl</c>.</summary>
/// <param name="Reference">The queue URL or name, as given.</param>
/// <param name="IsUrl">Whether <paramref name="Reference"/> is a URL.</param>
/// <param name="IsFifo">Whether the queue is a FIFO queue, which SQS requires to be named with a <c>.fifo</c> suffix.</param>
internal readonly record struct SqsQueue(string Reference, bool IsUrl, bool IsFifo)
{
    private const string FifoSuffix = ".fifo";
    private const int MaxNameLength = 80;

    /// <summary>Reads a queue reference, or returns <see langword="null"/> when it is neither a valid URL nor a valid queue name.</summary>
    public static SqsQueue? Parse(string reference)
    {
        if (IsUrlLike(reference))
        {
            if (!Uri.TryCreate(reference, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.AbsolutePath.Trim('/').Length == 0)
            {
                return null;
            }

            return new SqsQueue(reference, IsUrl: true, IsFifo: uri.AbsolutePath.TrimEnd('/').EndsWith(FifoSuffix, StringComparison.Ordinal));
        }

        return IsValidName(reference) ? new SqsQueue(reference, IsUrl: false, IsFifo: reference.EndsWith(FifoSuffix, StringComparison.Ordinal)) : null;
    }

    /// <summary>Whether <paramref name="reference"/> is a queue URL (http or https) or a valid queue name.</summary>
    public static bool IsValidQueueReference(string reference) => Parse(reference) is not null;

    private static bool IsUrlLike(string value) =>
        value.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || value.StartsWith("https://", StringComparison.OrdinalIgnoreCase);

    /// <summary>SQS queue names: 1 to 80 characters, letters, digits, hyphens and underscores; a FIFO queue's name ends with <c>.fifo</c>.</summary>
    private static bool IsValidName(string name)
    {
        if (name.Length is 0 or > MaxNameLength)
        {
            return false;
        }

        var stem = name.EndsWith(FifoSuffix, StringComparison.Ordinal) ? name.AsSpan(0, name.Length - FifoSuffix.Length) : name.AsSpan();
        if (stem.IsEmpty)
        {
            return false;
        }

        foreach (var c in stem)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_'))
            {
                return false;
            }
        }

        return true;
    }
}
