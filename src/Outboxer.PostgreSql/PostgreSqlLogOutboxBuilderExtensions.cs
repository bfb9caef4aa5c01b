using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.Providers;

namespace Outboxer;

/// <summary>
/// Puts an outbox registered with <c>AddOutboxer</c> in PostgreSQL's log mode: messages are written into the write-ahead log
/// (<see cref="PostgreSqlLogWriter"/>) and relayed from a logical replication slot (<see cref="PostgreSqlLogRelay"/>), with no table.
/// </summary>
public static class PostgreSqlLogOutboxBuilderExtensions
{
    // The two overloads differ by their first parameter after the builder (a connection string, or the container's data source and
    // a configure delegate), as UsePostgreSql's do.
#pragma warning disable RS0026
    /// <summary>
    /// Writes the outbox's messages into the write-ahead log of the database that the <see cref="NpgsqlDataSource"/> registered in the
    /// container connects to (the one your application writes its data with), and relays them from the slot on nodes that run the
    /// dispatcher role.
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="configure">Changes to the log mode's names (prefix, slot, publication, dead-letter table).</param>
    /// <param name="configureRelay">Changes to the relay's settings (batch size, retries, takeover, heartbeat).</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid; <see cref="ArgumentException.ParamName"/> names it.</exception>
    /// <remarks>
    /// The relay opens its replication connection with the data source's <see cref="NpgsqlDataSource.ConnectionString"/>, which Npgsql
    /// gives without the password unless the connection string says <c>Persist Security Info=true</c>: with password authentication,
    /// use the overload that takes a connection string. The role needs the <c>REPLICATION</c> attribute.
    /// </remarks>
    public static IOutboxBuilder UsePostgreSqlLog(
        this IOutboxBuilder builder,
        Action<PostgreSqlLogOptions>? configure = null,
        Action<PostgreSqlLogRelayOptions>? configureRelay = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return Use(builder, static sp => sp.GetRequiredService<NpgsqlDataSource>(), static dataSource => dataSource.ConnectionString, configure, configureRelay);
    }

    /// <summary>
    /// Writes the outbox's messages into the write-ahead log of the database that <paramref name="connectionString"/> names, through a
    /// data source of the outbox's own that the container disposes, and relays them from the slot with the same connection string on
    /// nodes that run the dispatcher role (<see cref="OutboxOptions.RunDispatcher"/>).
    /// </summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="connectionString">An Npgsql connection string of a role with the <c>REPLICATION</c> attribute.</param>
    /// <param name="configure">Changes to the log mode's names (prefix, slot, publication, dead-letter table).</param>
    /// <param name="configureRelay">Changes to the relay's settings (batch size, retries, takeover, heartbeat).</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="connectionString"/> is empty, or an option is invalid (the message names it).</exception>
    public static IOutboxBuilder UsePostgreSqlLog(
        this IOutboxBuilder builder,
        string connectionString,
        Action<PostgreSqlLogOptions>? configure = null,
        Action<PostgreSqlLogRelayOptions>? configureRelay = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        var key = $"Outboxer:{builder.Name}";
        builder.Services.AddKeyedSingleton(key, (_, _) => NpgsqlDataSource.Create(connectionString));
        return Use(builder, sp => sp.GetRequiredKeyedService<NpgsqlDataSource>(key), _ => connectionString, configure, configureRelay);
    }
#pragma warning restore RS0026

    /// <summary>
    /// Checks the slot of the outbox registered with <c>AddOutboxer(outboxName).UsePostgreSqlLog(...)</c> with a
    /// <see cref="PostgreSqlLogHealthCheck"/>: its problems, whether a relay consumes it, its lag, retained log and dead letters.
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="outboxName">The outbox's name; empty for the default outbox.</param>
    /// <param name="degradedLagBytes">The lag above which the check reports Degraded; the default is 64 MiB.</param>
    /// <param name="name">The health check's name; <c>outboxer-log</c> (or <c>outboxer-log-&lt;name&gt;</c>) when <see langword="null"/>.</param>
    /// <param name="failureStatus">The status reported when the slot cannot be read; <see langword="null"/> for <see cref="HealthStatus.Unhealthy"/>.</param>
    /// <param name="tags">Tags to filter health checks by.</param>
    /// <param name="timeout">How long the check may take; <see langword="null"/> for no limit of its own.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="outboxName"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="degradedLagBytes"/> is negative.</exception>
    public static IHealthChecksBuilder AddOutboxerLogMode(
        this IHealthChecksBuilder builder,
        string outboxName = "",
        long degradedLagBytes = 64L << 20,
        string? name = null,
        HealthStatus? failureStatus = null,
        IEnumerable<string>? tags = null,
        TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(outboxName);
        ArgumentOutOfRangeException.ThrowIfNegative(degradedLagBytes);
        return builder.Add(new HealthCheckRegistration(
            name ?? (outboxName.Length == 0 ? "outboxer-log" : $"outboxer-log-{outboxName}"),
            sp => new PostgreSqlLogHealthCheck(sp.GetRequiredKeyedService<PostgreSqlLogSetup>(outboxName), degradedLagBytes),
            failureStatus,
            tags,
            timeout));
    }

    private static IOutboxBuilder Use(
        IOutboxBuilder builder,
        Func<IServiceProvider, NpgsqlDataSource> dataSource,
        Func<NpgsqlDataSource, string> relayConnectionString,
        Action<PostgreSqlLogOptions>? configure,
        Action<PostgreSqlLogRelayOptions>? configureRelay)
    {
        // The options are read once, here, so that a bad name or setting fails where the outbox is registered.
        var name = builder.Name;
        var services = builder.Services;
        var options = new PostgreSqlLogOptions();
        configure?.Invoke(options);
        options.Validate();
        var relayOptions = new PostgreSqlLogRelayOptions();
        configureRelay?.Invoke(relayOptions);
        relayOptions.Validate();

        // Calling this again replaces the earlier choice; the hosted relay is added once.
        var registered = services.Any(d => d.ServiceType == typeof(LogModeRegistration) && Equals(d.ServiceKey, name));
        RemoveAllKeyed<PostgreSqlLogSetup>(services, name);
        RemoveAllKeyed<PostgreSqlLogRelay>(services, name);
        RemoveAllKeyed<Outbox>(services, name);
        services.AddKeyedSingleton(name, (sp, _) => new PostgreSqlLogSetup(dataSource(sp), options));

        // The outbox enqueues through the log writer; it has no store, so it runs no dispatcher and no cleanup of its own.
        services.AddKeyedSingleton(name, (sp, _) =>
        {
            var outboxOptions = sp.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get(name);
            var publisher = sp.GetKeyedService<IOutboxPublisher>(name);
            if (publisher is null && outboxOptions.RunDispatcher)
            {
                throw new InvalidOperationException(
                    $"The outbox '{(name.Length == 0 ? "(default)" : name)}' in log mode has no event stream (IOutboxPublisher) for its relay; call the Use... method of a publisher package, or set RunDispatcher to false on a node that only enqueues.");
            }

            return new Outbox(
                outboxOptions,
                new PostgreSqlLogWriter(dataSource(sp), options),
                publisher,
                sp.GetService<ILoggerFactory>(),
                sp.GetService<TimeProvider>(),
                sp.GetService<IMeterFactory>());
        });

        // Resolved only on a node that runs the dispatcher role; the container stops and disposes it.
        services.AddKeyedSingleton(name, (sp, _) =>
        {
            var publisher = sp.GetKeyedService<IOutboxPublisher>(name)
                ?? throw new InvalidOperationException($"The outbox '{(name.Length == 0 ? "(default)" : name)}' in log mode has no event stream (IOutboxPublisher) for its relay.");
            return new PostgreSqlLogRelay(
                relayConnectionString(dataSource(sp)),
                publisher,
                options,
                relayOptions,
                sp.GetService<ILoggerFactory>(),
                sp.GetService<TimeProvider>(),
                sp.GetService<IMeterFactory>());
        });

        if (!registered)
        {
            services.AddKeyedSingleton<LogModeRegistration>(name);
            services.AddSingleton<IHostedService>(sp => new LogRelayHostedService(sp, name));
        }

        return builder;
    }

    private static void RemoveAllKeyed<T>(IServiceCollection services, string key)
    {
        for (var i = services.Count - 1; i >= 0; i--)
        {
            if (services[i].ServiceType == typeof(T) && Equals(services[i].ServiceKey, key))
            {
                services.RemoveAt(i);
            }
        }
    }

    /// <summary>Marks that an outbox of a name is in log mode, so that choosing it again adds no second hosted relay.</summary>
    private sealed class LogModeRegistration;

    /// <summary>Runs the outbox's relay for the host's lifetime where the node runs the dispatcher role.</summary>
    private sealed class LogRelayHostedService(IServiceProvider services, string name) : IHostedService
    {
        private PostgreSqlLogRelay? _relay;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            if (!services.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get(name).RunDispatcher)
            {
                return Task.CompletedTask;
            }

            _relay = services.GetRequiredKeyedService<PostgreSqlLogRelay>(name);
            return _relay.StartAsync(cancellationToken);
        }

        public Task StopAsync(CancellationToken cancellationToken) => _relay?.StopAsync(cancellationToken) ?? Task.CompletedTask;
    }
}
