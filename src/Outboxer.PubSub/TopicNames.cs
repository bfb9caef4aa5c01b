using System.Diagnostics.CodeAnalysis;
using System.Text.RegularExpressions;

namespace Outboxer.PubSub;

/// <summary>Turns a <see cref="PubSubOptionKeys.TopicName"/> value into a full topic name, <c>projects/{project}/topics/{topic}</c>.</summary>
internal static partial class TopicNames
{
    /// <summary>
    /// Resolves <paramref name="value"/>, a full topic name or a topic id, to a full name; returns <see langword="false"/> with the reason
    /// when it is not a valid topic name, or is a topic id and no <paramref name="projectId"/> is configured.
    /// </summary>
    public static bool TryResolve(string value, string? projectId, [NotNullWhen(true)] out string? fullName, [NotNullWhen(false)] out string? error)
    {
        fullName = null;
        string project;
        string topic;
        if (value.StartsWith("projects/", StringComparison.Ordinal))
        {
            var match = FullName().Match(value);
            if (!match.Success)
            {
                error = "a full topic name must have the form projects/{project}/topics/{topic}";
                return false;
            }

            project = match.Groups["project"].Value;
            topic = match.Groups["topic"].Value;
        }
        else if (value.Contains('/', StringComparison.Ordinal))
        {
            error = "it is neither a topic id nor a full topic name of the form projects/{project}/topics/{topic}";
            return false;
        }
        else if (string.IsNullOrEmpty(projectId))
        {
            error = $"it is a topic id without a project: set {nameof(PubSubPublisherOptions)}.{nameof(PubSubPublisherOptions.ProjectId)}, or use the full name projects/{{project}}/topics/{value}";
            return false;
        }
        else
        {
            project = projectId;
            topic = value;
        }

        if (!IsValidProjectId(project))
        {
            error = $"the project '{project}' is not a valid project id";
            return false;
        }

        if (!TopicId().IsMatch(topic))
        {
            error = $"the topic id '{topic}' must be 3 to 255 characters, start with a letter, and contain only letters, digits and - _ . ~ + %";
            return false;
        }

        if (topic.StartsWith("goog", StringComparison.OrdinalIgnoreCase))
        {
            error = $"the topic id '{topic}' starts with 'goog', which Pub/Sub reserves";
            return false;
        }

        fullName = $"projects/{project}/topics/{topic}";
        error = null;
        return true;
    }

    /// <summary>Whether <paramref name="projectId"/> can be part of a resource name: not empty, no slash, no white space or control character.</summary>
    public static bool IsValidProjectId(string projectId) =>
        projectId.Length > 0 && !projectId.Any(c => c == '/' || char.IsWhiteSpace(c) || char.IsControl(c));

    [GeneratedRegex("^projects/(?<project>[^/]+)/topics/(?<topic>[^/]+)$", RegexOptions.CultureInvariant)]
    private static partial Regex FullName();

    [GeneratedRegex("^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", RegexOptions.CultureInvariant)]
    private static partial Regex TopicId();
}
