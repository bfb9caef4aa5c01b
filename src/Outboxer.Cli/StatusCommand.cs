using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Outboxer.Cli;

/// <summary><c>outboxer status</c>: pending, in flight, dead-lettered, and the age of the oldest pending message, in all and per destination.</summary>
internal static class StatusCommand
{
    private static readonly Option<bool> Json = new("--json") { Description = "Print one JSON object instead of text." };

    public static Command Create()
    {
        var command = new Command("status", "Show how many messages are pending, in flight and dead-lettered, and the age of the oldest pending one.") { Json };
        command.SetVerb(RunAsync);
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, Secrets secrets, CancellationToken cancellationToken)
    {
        var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
        await using var open = settings.Open(createTable: false);
        var statistics = await open.Administration.GetStatisticsAsync(TimeProvider.System.GetUtcNow(), cancellationToken);
        var destinations = await open.Administration.GetDestinationStatisticsAsync(cancellationToken);
        if (parse.GetValue(Json))
        {
            Console.Out.WriteLine(ToJson(statistics, destinations));
        }
        else
        {
            Console.Out.WriteLine(settings.DisplayName);
            Console.Out.WriteLine($"  pending:        {statistics.Pending.ToString(CultureInfo.InvariantCulture)} (in flight: {statistics.InFlight.ToString(CultureInfo.InvariantCulture)})");
            Console.Out.WriteLine($"  dead-lettered:  {statistics.DeadLettered.ToString(CultureInfo.InvariantCulture)}");
            Console.Out.WriteLine(statistics.OldestPendingCreatedAt is { } oldest
                ? $"  oldest pending: {oldest.ToString("O", CultureInfo.InvariantCulture)} ({Format(statistics.Lag)} ago)"
                : "  oldest pending: none");
            if (destinations.Count > 0)
            {
                Console.Out.WriteLine("  per destination (pending / dead-lettered / oldest pending age):");
                foreach (var destination in destinations)
                {
                    var age = destination.OldestPendingCreatedAt is { } created ? Format(statistics.TakenAt - created) : "-";
                    Console.Out.WriteLine($"    {destination.Destination ?? "(none)",-32} {destination.Pending.ToString(CultureInfo.InvariantCulture),8} {destination.DeadLettered.ToString(CultureInfo.InvariantCulture),8}  {age}");
                }
            }
        }

        return ExitCodes.Success;
    }

    /// <summary>A duration for people: 3d 4h, 2h 5m, 5m 12s, 1.2s.</summary>
    internal static string Format(TimeSpan span) => span switch
    {
        { TotalDays: >= 1 } => $"{(int)span.TotalDays}d {span.Hours}h",
        { TotalHours: >= 1 } => $"{span.Hours}h {span.Minutes}m",
        { TotalMinutes: >= 1 } => $"{span.Minutes}m {span.Seconds}s",
        _ => $"{span.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)}s",
    };

    private static string ToJson(OutboxStatistics statistics, IReadOnlyList<OutboxDestinationStatistics> destinations)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteNumber("pending", statistics.Pending);
            json.WriteNumber("in_flight", statistics.InFlight);
            json.WriteNumber("dead_lettered", statistics.DeadLettered);
            if (statistics.OldestPendingCreatedAt is { } oldest)
            {
                json.WriteString("oldest_pending_created_at", oldest);
            }
            else
            {
                json.WriteNull("oldest_pending_created_at");
            }

            json.WriteNumber("oldest_pending_age_seconds", Math.Round(statistics.Lag.TotalSeconds, 3));
            json.WriteString("taken_at", statistics.TakenAt);
            json.WriteStartArray("destinations");
            foreach (var destination in destinations)
            {
                json.WriteStartObject();
                json.WriteString("destination", destination.Destination);
                json.WriteNumber("pending", destination.Pending);
                json.WriteNumber("dead_lettered", destination.DeadLettered);
                if (destination.OldestPendingCreatedAt is { } created)
                {
                    json.WriteNumber("oldest_pending_age_seconds", Math.Round((statistics.TakenAt - created).TotalSeconds, 3));
                }
                else
                {
                    json.WriteNull("oldest_pending_age_seconds");
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
