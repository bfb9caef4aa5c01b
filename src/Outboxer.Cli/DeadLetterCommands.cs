using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Outboxer.Providers;

namespace Outboxer.Cli;

/// <summary><c>outboxer dead-letters list | requeue | purge</c>.</summary>
internal static class DeadLetterCommands
{
    /// <summary>Ids per statement (and per progress step) of a requeue or purge by id.</summary>
    internal const int ChunkSize = 500;

    private static readonly Option<int> Limit = new("--limit")
    {
        Description = "The most dead letters to show (default: 100).",
        DefaultValueFactory = _ => 100,
    };

    private static readonly Option<long> AfterId = new("--after-id") { Description = "Show only dead letters with a greater id (the next page)." };

    private static readonly Option<bool> Json = new("--json") { Description = "Print one JSON object per line instead of a table." };

    public static Command Create()
    {
        var list = new Command("list", "List dead letters, oldest first, with their last error.") { Limit, AfterId, Json };
        list.SetVerb(ListAsync);

        var command = new Command("dead-letters", "Inspect, requeue or purge the messages that gave up (the dead letters).")
        {
            list,
            CreateChange("requeue", "Make dead letters pending again (attempts reset), so that a running dispatcher publishes them.", "requeue", "requeued", (s, ids, ct) => s.RequeueDeadLettersAsync(ids, ct)),
            CreateChange("purge", "Delete dead letters for good.", "delete", "deleted", (s, ids, ct) => s.PurgeDeadLettersAsync(ids, ct)),
        };
        return command;
    }

    private static Command CreateChange(string name, string description, string verb, string done, Func<IOutboxAdministration, IReadOnlyCollection<long>?, CancellationToken, Task<int>> change)
    {
        var ids = new Option<long[]>("--id") { Description = "The id of a dead letter; repeat it for several (--id 4 --id 7).", AllowMultipleArgumentsPerToken = false };
        var all = new Option<bool>("--all") { Description = "Every dead letter." };
        var yes = new Option<bool>("--yes", "-y") { Description = "Do not ask for confirmation (required when standard input is not a terminal)." };
        var command = new Command(name, description) { ids, all, yes };
        command.Validators.Add(result =>
        {
            var hasIds = result.GetValue(ids) is { Length: > 0 };
            var hasAll = result.GetValue(all);
            if (hasIds == hasAll)
            {
                result.AddError(hasIds ? "Give either --id or --all, not both." : "Give the dead letters with --id (repeatable) or --all.");
            }
        });
        command.SetVerb(async (parse, secrets, cancellationToken) =>
        {
            var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
            var confirmed = parse.GetValue(yes);
            if (!confirmed && Console.IsInputRedirected)
            {
                // Decided before the database is touched, so a script gets the same answer whatever the table holds.
                await Console.Error.WriteLineAsync($"Refused: standard input is not a terminal, so nobody can confirm the {name}. Pass --yes to go ahead without asking.");
                return ExitCodes.Refused;
            }

            await using var open = settings.Open(createTable: false);
            var selected = parse.GetValue(all) ? null : parse.GetValue(ids)!.Distinct().ToArray();
            string what;
            if (selected is null)
            {
                var statistics = await open.Administration.GetStatisticsAsync(TimeProvider.System.GetUtcNow(), cancellationToken);
                if (statistics.DeadLettered == 0)
                {
                    Console.Out.WriteLine($"No dead letters in {settings.DisplayName}: nothing to {verb}.");
                    return ExitCodes.Success;
                }

                what = $"all {statistics.DeadLettered.ToString(CultureInfo.InvariantCulture)} dead letter(s)";
            }
            else
            {
                what = selected.Length == 1
                    ? $"dead letter {selected[0].ToString(CultureInfo.InvariantCulture)}"
                    : $"{selected.Length.ToString(CultureInfo.InvariantCulture)} dead letters";
            }

            if (!confirmed)
            {
                var refusal = await ConfirmAsync($"{char.ToUpperInvariant(verb[0])}{verb[1..]} {what} in {settings.DisplayName}?", cancellationToken);
                if (refusal is not null)
                {
                    await Console.Error.WriteLineAsync(refusal);
                    return ExitCodes.Refused;
                }
            }

            var count = 0;
            if (selected is null)
            {
                count = await change(open.Administration, null, cancellationToken);
            }
            else
            {
                using var progress = new Progress(name, selected.Length);
                foreach (var chunk in selected.Chunk(ChunkSize))
                {
                    count += await change(open.Administration, chunk, cancellationToken);
                    progress.Advance(chunk.Length);
                }
            }

            Console.Out.WriteLine($"{done} {count.ToString(CultureInfo.InvariantCulture)}");
            if (selected is not null && count < selected.Length)
            {
                await Console.Error.WriteLineAsync($"{(selected.Length - count).ToString(CultureInfo.InvariantCulture)} of the given ids were not dead letters (unknown, pending or dispatched); they were left alone.");
            }

            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>Asks on the terminal; returns null when confirmed, otherwise why not.</summary>
    private static async Task<string?> ConfirmAsync(string question, CancellationToken cancellationToken)
    {
        await Console.Error.WriteAsync($"{question} [y/N] ");
        var answer = await Console.In.ReadLineAsync(cancellationToken);
        return answer?.Trim().ToUpperInvariant() is "Y" or "YES" ? null : "Cancelled: nothing was changed.";
    }

    private static async Task<int> ListAsync(ParseResult parse, Secrets secrets, CancellationToken cancellationToken)
    {
        var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
        await using var open = settings.Open(createTable: false);
        var limit = parse.GetValue(Limit);
        if (limit <= 0)
        {
            throw new UsageException("--limit must be positive.");
        }

        var messages = await open.Administration.GetDeadLettersAsync(limit, parse.GetValue(AfterId), cancellationToken);
        if (parse.GetValue(Json))
        {
            foreach (var message in messages)
            {
                Console.Out.WriteLine(ToJson(message));
            }

            return ExitCodes.Success;
        }

        if (messages.Count == 0)
        {
            Console.Out.WriteLine($"No dead letters in {settings.DisplayName}.");
            return ExitCodes.Success;
        }

        Console.Out.WriteLine($"{"id",10}  {"message id",-36}  {"attempts",8}  {"dead-lettered at",-25}  last error");
        foreach (var message in messages)
        {
            var error = (message.LastError ?? string.Empty).ReplaceLineEndings(" ");
            if (message.UncertainAttempts > 0)
            {
                // An earlier attempt was sent but never answered: the broker may have the message, and a requeue may publish it twice.
                error = $"(may have been published: {message.UncertainAttempts.ToString(CultureInfo.InvariantCulture)} attempt(s) with unknown outcome) " + error;
            }

            if (error.Length > 120)
            {
                error = string.Concat(error.AsSpan(0, 117), "...");
            }

            Console.Out.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"{message.Id,10}  {message.MessageId,-36}  {message.Attempts,8}  {message.DeadLetteredAt?.ToString("yyyy-MM-dd HH:mm:ss zzz", CultureInfo.InvariantCulture),-25}  {error}"));
        }

        if (messages.Count == limit)
        {
            Console.Out.WriteLine($"(more may follow: --after-id {messages[^1].Id.ToString(CultureInfo.InvariantCulture)})");
        }

        return ExitCodes.Success;
    }

    private static string ToJson(OutboxMessage message)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteNumber("id", message.Id);
            json.WriteString("message_id", message.MessageId);
            json.WriteString("created_at", message.CreatedAt);
            if (message.DeadLetteredAt is { } at)
            {
                json.WriteString("dead_lettered_at", at);
            }

            json.WriteNumber("attempts", message.Attempts);
            json.WriteNumber("uncertain_attempts", message.UncertainAttempts);
            json.WriteBoolean("may_have_been_published", message.UncertainAttempts > 0);
            json.WriteString("last_error", message.LastError);
            json.WriteString("ordering_key", message.OrderingKey);
            json.WriteNumber("payload_bytes", message.Payload.Length);
            WriteValues(json, "options", message.Options);
            WriteValues(json, "headers", message.Headers);
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteValues(Utf8JsonWriter json, string name, OutboxValues values)
    {
        json.WritePropertyName(name);
        if (values.ToJson() is { } text)
        {
            json.WriteRawValue(text, skipInputValidation: true);
        }
        else
        {
            json.WriteStartObject();
            json.WriteEndObject();
        }
    }
}

/// <summary>A one-line progress counter on standard error, drawn only when standard error is a terminal.</summary>
internal sealed class Progress(string label, int total) : IDisposable
{
    private readonly bool _visible = !Console.IsErrorRedirected && total > DeadLetterCommands.ChunkSize;
    private int _done;

    public void Advance(int count)
    {
        _done += count;
        if (_visible)
        {
            var percent = total == 0 ? 100 : _done * 100 / total;
            Console.Error.Write(string.Create(CultureInfo.InvariantCulture, $"\r{label}: {_done}/{total} ids ({percent}%)   "));
        }
    }

    public void Dispose()
    {
        if (_visible)
        {
            Console.Error.WriteLine();
        }
    }
}
