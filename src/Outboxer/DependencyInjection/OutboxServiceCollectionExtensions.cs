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
    /// The options are validated when the host starts: a bad value stops the start with an <see cref="OptionsValidationException"/> whose
    /// message names the configuration key and the value. A missing store or publisher fails the start as well, naming the outbox.
    /// </remarks>
    public static IOutboxBuilder AddOutboxer(this IServiceCollection services, string name, Action<OutboxOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(name);

        var optionsBuilder = services.AddOptions<OutboxOptions>(name);
        if (configure is not null)
        {
            optionsBuilder.Configure(configure);
        }

        if (services.Any(d => d.ServiceType == typeof(OutboxRegistration) && Equals(d.ServiceKey, name)))
        {
            return new OutboxBuilder(name, services);
        }

        services.AddKeyedSingleton<OutboxRegistration>(name);
        var section = name.Length == 0 ? ConfigurationSection : $"{ConfigurationSection}:{name}";
        // Bound when configuration is registered (every host has it); a bare ServiceCollection gets the defaults.
        optionsBuilder.Configure<IServiceProvider>((options, sp) => sp.GetService<IConfiguration>()?.GetSection(section).Bind(options)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<OutboxOptions>>(new OutboxOptionsValidator(name, section));

        services.AddKeyedSingleton(name, (sp, _) => new Outbox(
            sp.GetRequiredService<IOptionsMonitor<OutboxOptions>>().Get(name),
            sp.GetKeyedService<IOutboxStore>(name) ?? throw Missing(name, "store (IOutboxStore)", "call the Use... method of a store package, or UseStore"),
            sp.GetKeyedService<IOutboxPublisher>(name) ?? throw Missing(name, "event stream (IOutboxPublisher)", "call the Use... method of a publisher package, UseJsonLines, or UsePublisher"),
            sp.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance,
            sp.GetService<TimeProvider>() ?? TimeProvider.System,
            sp.GetService<IMeterFactory>()));
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

    /// <summary>Validates the named options with <see cref="OutboxOptions.Validate"/>, naming the configuration key and value.</summary>
    private sealed class OutboxOptionsValidator(string name, string section) : IValidateOptions<OutboxOptions>
    {
        public ValidateOptionsResult Validate(string? optionsName, OutboxOptions options)
        {
            if (!string.Equals(optionsName ?? Options.DefaultName, name, StringComparison.Ordinal))
            {
                return ValidateOptionsResult.Skip;
            }

            try
            {
                options.Validate();
                return ValidateOptionsResult.Success;
            }
            catch (ArgumentOutOfRangeException ex)
            {
                return ValidateOptionsResult.Fail($"{section}:{ex.ParamName} = '{ex.ActualValue}' is invalid: {ex.Message.Split(Environment.NewLine)[0]}");
            }
        }
    }

    /// <summary>Runs one outbox's dispatcher and cleanup for the host's lifetime.</summary>
    private sealed class OutboxHostedService(Outbox outbox) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => outbox.StartAsync(cancellationToken);

        public Task StopAsync(CancellationToken cancellationToken) => outbox.StopAsync(cancellationToken);
    }
}
