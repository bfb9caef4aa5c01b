using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Outboxer.Providers;

namespace Outboxer;

/// <summary>Registers outboxes in an <see cref="IServiceCollection"/>, with their options bound from configuration and their loops run as hosted services.</summary>
public static class OutboxServiceCollectionExtensions
{
    /// <summary>The configuration section the default outbox's <see cref="OutboxOptions"/> are bound from; a named outbox uses <c>Outboxer:&lt;name&gt;</c>.</summary>
    public const string ConfigurationSection = "Outboxer";

    /// <summary>Registers the default outbox (the one resolved as a plain <see cref="Outbox"/>).</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Changes to the options after they are bound from the <c>Outboxer</c> configuration section.</param>
    /// <returns>A builder to choose the store and the publisher with: a <c>Use...</c> method of a store package and of a publisher package.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder AddOutboxer(this IServiceCollection services, Action<OutboxOptions>? configure = null) =>
        AddOutboxer(services, Options.DefaultName, configure);

    /// <summary>
    /// Registers an outbox by name, so that one application can have several (two databases, two brokers). Its <see cref="Outbox"/>
    /// is a keyed service with that name; the default outbox (empty name) is also resolvable as a plain <see cref="Outbox"/>.
    /// Its dispatcher and cleanup run as a hosted service. Calling this again with the same name adds nothing twice.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The outbox's name; empty for the default outbox.</param>
    /// <param name="configure">Changes to the options after they are bound from configuration (<c>Outboxer</c>, or <c>Outboxer:&lt;name&gt;</c>).</param>
    /// <returns>A builder to choose the store and the publisher with.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> or <paramref name="name"/> is <see langword="null"/>.</exception>
    /// <remarks>
    /// The options are validated when the host starts: bad values stop the start with one <see cref="OptionsValidationException"/> whose
    /// failures name each configuration key and its value. A missing store fails the start as well, naming the outbox, and so does a
    /// missing publisher unless <see cref="OutboxOptions.RunDispatcher"/> is off (a node that only enqueues, or only cleans up). The
    /// outbox's hosted service starts the dispatcher and the cleanup as <see cref="OutboxOptions.RunDispatcher"/> and
    /// <see cref="OutboxOptions.RunCleanup"/> say.
    /// </remarks>
    public static IOutboxBuilder AddOutboxer(this IServiceCollection services, string name, Action<OutboxOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(name);

        var optionsBuilder = services.AddOptions<OutboxOptions>(name);
        if (services.Any(d => d.ServiceType == typeof(OutboxRegistration) && Equals(d.ServiceKey, name)))
        {
            if (configure is not null)
            {
                optionsBuilder.Configure(configure);
            }

            return new OutboxBuilder(name, services);
        }

        services.AddKeyedSingleton<OutboxRegistration>(name);
        var section = name.Length == 0 ? ConfigurationSection : $"{ConfigurationSection}:{name}";
        // Bound when configuration is registered (every host has it); a bare ServiceCollection gets the defaults. The code's changes
        // come after the binding, as documented.
        optionsBuilder.Configure<IServiceProvider>((options, sp) => sp.GetService<IConfiguration>()?.GetSection(section).Bind(options)).ValidateOnStart();
        if (configure is not null)
        {
            optionsBuilder.Configure(configure);
        }

        services.AddSingleton<IValidateOptions<OutboxOptions>>(new OutboxOptionsValidator(name, section));

        services.AddKeyedSingleton(name, (sp, _) =>
        {
            var options = sp.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get(name);
            var store = sp.GetKeyedService<IOutboxStore>(name) ?? throw Missing(name, "store (IOutboxStore)", "call the Use... method of a store package, or UseStore");
            var publisher = sp.GetKeyedService<IOutboxPublisher>(name);
            if (publisher is null && options.RunDispatcher)
            {
                throw Missing(
                    name,
                    "event stream (IOutboxPublisher)",
                    $"call the Use... method of a publisher package, UseJsonLines, or UsePublisher; or set {section}:{nameof(OutboxOptions.RunDispatcher)} to false on a node that only enqueues");
            }

            // Without a publisher (a node that runs no dispatcher), the outbox only enqueues, and cleans up where RunCleanup asks for it.
            return new Outbox(
                options,
                store,
                publisher,
                sp.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance,
                sp.GetService<TimeProvider>() ?? TimeProvider.System,
                sp.GetService<IMeterFactory>());
        });
        if (name.Length == 0)
        {
            services.TryAddSingleton(sp => sp.GetRequiredKeyedService<Outbox>(Options.DefaultName));
        }

        services.AddSingleton<IHostedService>(sp => new OutboxHostedService(sp.GetRequiredKeyedService<Outbox>(name)));
        return new OutboxBuilder(name, services);
    }

    /// <summary>Uses the store that <paramref name="factory"/> creates (once, when the outbox is first resolved).</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="factory">Creates the store.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseStore(this IOutboxBuilder builder, Func<IServiceProvider, IOutboxStore> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.RemoveAllKeyed<IOutboxStore>(builder.Name);
        builder.Services.AddKeyedSingleton(builder.Name, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>Uses the event stream that <paramref name="factory"/> creates (once, when the outbox is first resolved).</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="factory">Creates the publisher.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IOutboxBuilder UsePublisher(this IOutboxBuilder builder, Func<IServiceProvider, IOutboxPublisher> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.RemoveAllKeyed<IOutboxPublisher>(builder.Name);
        builder.Services.AddKeyedSingleton(builder.Name, (sp, _) => factory(sp));
        return builder;
    }

    /// <summary>Uses the built-in <see cref="JsonLinesPublisher"/>, writing to standard output or appending to a file.</summary>
    /// <param name="builder">The outbox builder.</param>
    /// <param name="path">The file to append to; <see langword="null"/> for standard output.</param>
    /// <returns>The same builder instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    public static IOutboxBuilder UseJsonLines(this IOutboxBuilder builder, string? path = null) =>
        builder.UsePublisher(_ => path is null ? new JsonLinesPublisher(Console.Out) : JsonLinesPublisher.ToFile(path));

    private static InvalidOperationException Missing(string name, string what, string how) =>
        new($"The outbox '{(name.Length == 0 ? "(default)" : name)}' has no {what}; choose one on the builder AddOutboxer returns ({how}).");

    private static void RemoveAllKeyed<T>(this IServiceCollection services, string key)
    {
        for (var i = services.Count - 1; i >= 0; i--)
        {
            if (services[i].ServiceType == typeof(T) && Equals(services[i].ServiceKey, key))
            {
                services.RemoveAt(i);
            }
        }
    }

    private sealed record OutboxBuilder(string Name, IServiceCollection Services) : IOutboxBuilder;

    /// <summary>Marks that an outbox of a name is registered, so that registering it again adds nothing twice.</summary>
    private sealed class OutboxRegistration;

    /// <summary>Validates the named options, reporting every invalid value at once, each with its configuration key and its value.</summary>
    private sealed class OutboxOptionsValidator(string name, string section) : IValidateOptions<OutboxOptions>
    {
        public ValidateOptionsResult Validate(string? optionsName, OutboxOptions options)
        {
            if (!string.Equals(optionsName ?? Options.DefaultName, name, StringComparison.Ordinal))
            {
                return ValidateOptionsResult.Skip;
            }

            var result = new ValidateOptionsResultBuilder();
            foreach (var (property, value, rule) in options.GetProblems())
            {
                result.AddError($"{section}:{property} = '{value}' is invalid: it {rule}.");
            }

            return result.Build();
        }
    }

    /// <summary>Runs one outbox's dispatcher and cleanup for the host's lifetime.</summary>
    private sealed class OutboxHostedService(Outbox outbox) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => outbox.StartAsync(cancellationToken);

        public Task StopAsync(CancellationToken cancellationToken) => outbox.StopAsync(cancellationToken);
    }
}
