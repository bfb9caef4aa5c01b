using System.CommandLine;
using System.Globalization;
using Outboxer.Providers;
using Outboxer.RabbitMQ;

namespace Outboxer.Cli;

/// <summary><c>outboxer relay</c>: a standalone dispatcher (and cleanup) for an outbox table that other programs fill.</summary>
internal static class RelayCommand
{
    private const string RabbitMQ = "rabbitmq";
    private const string JsonLines = "jsonlines";

    private static readonly Option<string> Broker = new("--broker") { Description = "Where to publish: rabbitmq or jsonlines (one JSON object per line, to --output or standard output)." };
    private static readonly Option<string> RabbitMQUri = new("--rabbitmq-uri") { Description = "The RabbitMQ address, for example amqp://user:password@host:5672/ (default: $OUTBOXER_RABBITMQ_URI, then $OUTBOXER_RABBITMQ_URL)." };
    private static readonly Option<string> Output = new("--output", "-o") { Description = "The file the jsonlines broker appends to (default: standard output)." };
    private static readonly Option<bool> Once = new("--once") { Description = "Relay what is pending now, then exit (0 when every message was published, 1 otherwise)." };
    private static readonly Option<bool> NoCleanup = new("--no-cleanup") { Description = "Do not delete old dispatched messages (run the cleanup on one node only)." };
    private static readonly Option<bool> CreateTable = new("--create-table") { Description = "Create the outbox table when it is missing (default: it must exist; see 'schema apply')." };
    private static readonly Option<int?> BatchSize = new("--batch-size") { Description = "Messages claimed and published at a time (default: 100)." };
    private static readonly Option<int?> BatchesInFlight = new("--batches-in-flight") { Description = "Claimed batches published and marked at a time (default: 4)." };
    private static readonly Option<TimeSpan?> CheckInterval = new("--check-interval") { Description = "How long an idle dispatcher waits before it looks again, as hh:mm:ss[.fff] (default: 00:00:01)." };
    private static readonly Option<int?> MaxAttempts = new("--max-attempts") { Description = "Attempts before a message moves to the dead letters (default: 20)." };
    private static readonly Option<bool> Verbose = new("--verbose", "-v") { Description = "Print every dispatched message id on standard error." };

    public static Command Create()
    {
        var command = new Command(
            "relay",
            "Run a standalone dispatcher (and cleanup) that publishes the rows other programs insert into the outbox table, until Ctrl+C or SIGTERM.")
        {
            Broker, RabbitMQUri, Output, Once, NoCleanup, CreateTable, BatchSize, BatchesInFlight, CheckInterval, MaxAttempts, Verbose,
        };
        command.SetVerb(RunAsync);
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, Secrets secrets, CancellationToken cancellationToken)
    {
        var settings = StoreSettings.Resolve(parse, secrets, needsConnection: true);
        var config = settings.Config;
        var broker = (parse.GetValue(Broker) ?? config.Broker)?.ToLowerInvariant()
            ?? throw new UsageException("A broker is required: --broker rabbitmq or --broker jsonlines (or \"broker\" in the --config file).");
        Uri? rabbitUri = null;
        if (broker == RabbitMQ)
        {
            var text = parse.GetValue(RabbitMQUri) ?? config.RabbitMQUri
                ?? NullIfEmpty(Environment.GetEnvironmentVariable("OUTBOXER_RABBITMQ_URI"))
                ?? NullIfEmpty(Environment.GetEnvironmentVariable("OUTBOXER_RABBITMQ_URL"))
                ?? throw new UsageException("--broker rabbitmq needs --rabbitmq-uri (or \"rabbitMQUri\" in the --config file, or $OUTBOXER_RABBITMQ_URI, or $OUTBOXER_RABBITMQ_URL as eng/servers.sh env exports it).");
            secrets.Add(StoreSettings.PasswordsIn(text));
            if (!Uri.TryCreate(text, UriKind.Absolute, out rabbitUri) || rabbitUri.Scheme is not ("amqp" or "amqps"))
            {
                throw new UsageException("--rabbitmq-uri must be an amqp:// or amqps:// address.");
            }
        }
        else if (broker != JsonLines)
        {
            throw new UsageException($"Unknown broker '{broker}': use rabbitmq or jsonlines.");
        }

        var options = config.Outbox ?? new OutboxOptions();
        if (parse.GetValue(BatchSize) is { } batchSize)
        {
            options.MessageBatchSize = batchSize;
        }

        if (parse.GetValue(BatchesInFlight) is { } batchesInFlight)
        {
            options.MaxBatchesInFlight = batchesInFlight;
        }

        if (parse.GetValue(CheckInterval) is { } checkInterval)
        {
            options.CheckInterval = checkInterval;
        }

        if (parse.GetValue(MaxAttempts) is { } maxAttempts)
        {
            options.MaxAttempts = maxAttempts;
        }

        try
        {
            options.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message);
        }

        await using var open = settings.Open(createTable: parse.GetValue(CreateTable));

        // Fail now, with exit code 1, when the database or the table is not there, rather than retrying in the background forever.
        var statistics = await open.Administration.GetStatisticsAsync(TimeProvider.System.GetUtcNow(), cancellationToken);

        var output = parse.GetValue(Output) ?? config.Output;
        IOutboxPublisher publisher = broker == RabbitMQ
            ? await RabbitMQPublisher.ConnectAsync(rabbitUri!, cancellationToken: cancellationToken)
            : output is null ? new JsonLinesPublisher(Console.Out) : JsonLinesPublisher.ToFile(output);
        try
        {
            var target = broker == RabbitMQ
                ? $"RabbitMQ at {rabbitUri!.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped)}"
                : $"JSON lines to {output ?? "standard output"}";
            await using var outbox = new Outbox(open.Store, publisher, options);
            var counts = new Counts();
            var watching = WatchAsync(outbox, counts, secrets, parse.GetValue(Verbose));

            int exitCode;
            if (parse.GetValue(Once))
            {
                await Console.Error.WriteLineAsync($"relaying {Count(statistics.Pending)} pending message(s) from {settings.DisplayName} to {target}");
                await outbox.DispatchPendingAsync(cancellationToken);
                exitCode = ExitCodes.Success;
            }
            else
            {
                outbox.StartDispatcher();
                if (!parse.GetValue(NoCleanup))
                {
                    outbox.StartCleanup();
                }

                await Console.Error.WriteLineAsync(
                    $"relaying {settings.DisplayName} to {target} ({Count(statistics.Pending)} pending); Ctrl+C or SIGTERM stops");
                try
                {
                    await Task.Delay(Timeout.Infinite, cancellationToken);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    await Console.Error.WriteLineAsync("stopping: finishing the batches in flight");
                }

                // The batches in flight are published and marked; give up after twice the publish timeout (its messages then come back after their lease).
                using var deadline = new CancellationTokenSource(options.PublishTimeout * 2);
                try
                {
                    await outbox.StopAsync(deadline.Token);
                    exitCode = ExitCodes.Success;
                }
                catch (OperationCanceledException) when (deadline.IsCancellationRequested)
                {
                    await Console.Error.WriteLineAsync("error: the batches in flight did not finish in time and were abandoned; their messages are published again after their lease");
                    exitCode = ExitCodes.Failed;
                }
            }

            await outbox.DisposeAsync();
            await watching;
            await Console.Error.WriteLineAsync($"dispatched {Count(counts.Dispatched)}, failed {Count(counts.Failed)}");
            return parse.GetValue(Once) && counts.Failed > 0 ? ExitCodes.Failed : exitCode;
        }
        finally
        {
            if (publisher is IAsyncDisposable disposable)
            {
                await disposable.DisposeAsync();
            }
        }
    }

    private static string Count(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static Task WatchAsync(Outbox outbox, Counts counts, Secrets secrets, bool verbose)
    {
        // Reading the readers here, before anything runs, turns their notifications on.
        var dispatched = outbox.Dispatched;
        var errors = outbox.Errors;
        return Task.WhenAll(
            Task.Run(async () =>
            {
                await foreach (var message in dispatched.ReadAllAsync())
                {
                    Interlocked.Increment(ref counts.Dispatched);
                    if (verbose)
                    {
                        await Console.Error.WriteLineAsync($"dispatched {Count(message.Id)} ({message.MessageId})");
                    }
                }
            }),
            Task.Run(async () =>
            {
                await foreach (var error in errors.ReadAllAsync())
                {
                    if (error.Operation == OutboxOperation.Publish)
                    {
                        Interlocked.Increment(ref counts.Failed);
                    }

                    var subject = error.Id is { } id ? $" of message {Count(id)}" : string.Empty;
                    await Console.Error.WriteLineAsync(secrets.Redact($"error: {error.Operation}{subject}: {error.Exception.Message}"));
                }
            }));
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private sealed class Counts
    {
        public long Dispatched;
        public long Failed;
    }
}
