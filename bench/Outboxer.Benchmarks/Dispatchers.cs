using System.Text.Json.Nodes;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.Providers;
using Outboxer.RabbitMQ;

namespace Outboxer.Benchmarks;

/// <summary>
/// One or more dispatchers in this process, each a separate <see cref="Outbox"/> with its own NpgsqlDataSource (connection pool),
/// its own <see cref="RabbitMQPublisher"/> (AMQP connection) and the same PostgreSQL table, as separate processes would have.
/// </summary>
internal sealed class Dispatchers : IAsyncDisposable
{
    private readonly List<Member> _members = [];
    private readonly List<Task> _errorReaders = [];
    private readonly Dictionary<string, int> _errors = [];
    private NpgsqlDataSource? _application;

    private Dispatchers()
    {
    }

    public Outbox First => _members[0].Outbox;

    /// <summary>
    /// The data source of the in-process producers: the first dispatcher's own, as an application shares one with its outbox store; a
    /// separate durable one when the dispatchers' connections commit asynchronously (<c>--what-if</c>).
    /// </summary>
    public NpgsqlDataSource ApplicationDataSource => _application ?? _members[0].DataSource;

    /// <param name="options">The benchmark's options.</param>
    /// <param name="count">How many dispatchers.</param>
    /// <param name="batchSize">Their MessageBatchSize.</param>
    /// <param name="asynchronousCommit">
    /// What-if: the dispatchers' own connections (claim, mark) run with <c>synchronous_commit=off</c>, which the library could do
    /// because losing a claim or a mark in a crash only leads to a publish again (at-least-once); producers stay durable.
    /// </param>
    public static async Task<Dispatchers> CreateAsync(BenchOptions options, int count, int batchSize, bool asynchronousCommit = false)
    {
        var set = new Dispatchers();
        var connectionString = options.PostgresUrl;
        if (asynchronousCommit)
        {
            connectionString = new NpgsqlConnectionStringBuilder(options.PostgresUrl) { Options = "-c synchronous_commit=off" }.ConnectionString;
            set._application = NpgsqlDataSource.Create(options.PostgresUrl);
        }

        try
        {
            for (var i = 0; i < count; i++)
            {
                var dataSource = NpgsqlDataSource.Create(connectionString);
                var publisher = await RabbitMQPublisher.ConnectAsync(new Uri(options.RabbitMQUrl));
                var profile = options.Profile ? new DispatchProfile() : null;
                IOutboxStore store = new PostgreSqlOutboxStore(dataSource, Database.StoreOptions);
                IOutboxPublisher publishing = publisher;
                if (profile is not null)
                {
                    store = ProfilingStoreProxy.Create(store, profile);

                    // A batch publisher gets whole batches from the dispatcher; wrapping it per message would change what is measured.
                    if (publishing is not IOutboxBatchPublisher)
                    {
                        publishing = new ProfilingPublisher(publisher, profile);
                    }
                }

                var outbox = new Outbox(store, publishing, new OutboxOptions { MessageBatchSize = batchSize, MaxBatchesInFlight = options.BatchesInFlight ?? new OutboxOptions().MaxBatchesInFlight });
                set._members.Add(new Member(outbox, publisher, dataSource, profile));
                set._errorReaders.Add(set.ReadErrorsAsync(outbox));
            }
        }
        catch
        {
            await set.DisposeAsync();
            throw;
        }

        return set;
    }

    public void StartAll()
    {
        foreach (var member in _members)
        {
            member.Outbox.StartDispatcher();
        }
    }

    /// <summary>The failures the dispatchers reported (outbox.Errors), counted by operation and exception type.</summary>
    public JsonObject Errors()
    {
        lock (_errors)
        {
            var json = new JsonObject();
            foreach (var (key, count) in _errors)
            {
                json[key] = count;
            }

            return json;
        }
    }

    private async Task ReadErrorsAsync(Outbox outbox)
    {
        await foreach (var error in outbox.Errors.ReadAllAsync())
        {
            var key = $"{error.Operation}: {error.Exception.GetType().Name}";
            int count;
            lock (_errors)
            {
                _errors[key] = count = _errors.GetValueOrDefault(key) + 1;
            }

            if (count <= 3)
            {
                Console.Error.WriteLine($"[bench] dispatcher error ({error.Operation}, message {error.Id}): {error.Exception.GetType().Name}: {error.Exception.Message}"
                    + (error.Exception.InnerException is { } inner ? $" <- {inner.GetType().Name}: {inner.Message}" : string.Empty));
            }
        }
    }

    public JsonObject? Profile(double wallSeconds)
    {
        var profiles = _members.Select(m => m.Profile).OfType<DispatchProfile>().ToList();
        return profiles.Count == 0 ? null : DispatchProfile.Summarize(profiles, wallSeconds);
    }

    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(_members.Select(m => m.Outbox.StopAsync()));
        foreach (var member in _members)
        {
            // Completes the Errors reader.
            await member.Outbox.DisposeAsync();
            await member.Publisher.DisposeAsync();
            await member.DataSource.DisposeAsync();
        }

        _members.Clear();
        await Task.WhenAll(_errorReaders);
        if (_application is not null)
        {
            await _application.DisposeAsync();
        }
    }

    private sealed record Member(Outbox Outbox, RabbitMQPublisher Publisher, NpgsqlDataSource DataSource, DispatchProfile? Profile);
}
