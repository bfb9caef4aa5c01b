namespace Outboxer.Nats;

/// <summary>Checks a subject to publish to, so that NATS never sees one it would drop without an answer.</summary>
internal static class NatsSubjects
{
    /// <summary>Returns why <paramref name="subject"/> cannot be published to, or <see langword="null"/> when it can.</summary>
    /// <remarks>
    /// NATS ignores a publish to a subject with an empty token (<c>a..b</c>) and stores a wildcard subject (<c>a.*</c>) literally,
    /// which no consumer filter matches as intended; whitespace and control characters break the protocol line.
    /// </remarks>
    public static string? Check(string subject)
    {
        if (subject.Length == 0)
        {
            return "it is empty";
        }

        foreach (var c in subject)
        {
            if (char.IsWhiteSpace(c) || char.IsControl(c))
            {
                return "it contains whitespace or a control character";
            }
        }

        foreach (var token in subject.Split('.'))
        {
            if (token.Length == 0)
            {
                return "it has an empty token (a leading, trailing or doubled '.')";
            }

            if (token is "*" or ">")
            {
                return $"'{token}' is a wildcard, which subscriptions use but a publish cannot";
            }
        }

        return null;
    }
}
