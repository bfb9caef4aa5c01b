using Microsoft.Extensions.DependencyInjection;

namespace Outboxer;

/// <summary>
/// Configures one outbox registered with <see cref="OutboxServiceCollectionExtensions.AddOutboxer(IServiceCollection, string, Action{OutboxOptions}?)"/>.
/// Store and publisher packages add <c>Use...</c> extension methods to it; <see cref="OutboxServiceCollectionExtensions.UseStore"/> and
/// <see cref="OutboxServiceCollectionExtensions.UsePublisher"/> take any implementation.
/// </summary>
public interface IOutboxBuilder
{
    /// <summary>Gets the outbox's name: the service key of its <see cref="Outbox"/>, store and publisher, and the name of its options.</summary>
    string Name { get; }

    /// <summary>Gets the service collection the outbox is registered in.</summary>
    IServiceCollection Services { get; }
}
