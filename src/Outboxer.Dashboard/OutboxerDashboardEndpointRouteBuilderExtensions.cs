using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Outboxer.Dashboard.Internal;

namespace Outboxer.Dashboard;

/// <summary>Maps the Outboxer dashboard's pages into an ASP.NET Core application.</summary>
public static class OutboxerDashboardEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps the dashboard under <paramref name="pattern"/>: the overview (<c>/</c>), destinations, dead letters with their confirmation
    /// pages and actions, and a message lookup, all server-rendered. Actions are POSTs that carry an ASP.NET Core antiforgery token.
    /// </summary>
    /// <param name="endpoints">The application's endpoints (a <c>WebApplication</c>).</param>
    /// <param name="pattern">The path prefix, for example <c>/outboxer</c>.</param>
    /// <returns>The group's convention builder, for more conventions (for example <c>RequireAuthorization</c> with more policies, or <c>RequireHost</c>).</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">
    /// <c>AddOutboxerDashboard</c> was not called, or the options name no <see cref="OutboxerDashboardOptions.AuthorizationPolicy"/> and do
    /// not set <see cref="OutboxerDashboardOptions.AllowAnonymous"/>: the dashboard is never mapped open by accident.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of its range; the message names it and its value.</exception>
    public static IEndpointConventionBuilder MapOutboxerDashboard(this IEndpointRouteBuilder endpoints, string pattern = "/outboxer")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(pattern);
        if (endpoints.ServiceProvider.GetService<DashboardOutboxes>() is null)
        {
            throw new InvalidOperationException("The Outboxer dashboard's services are missing: call services.AddOutboxerDashboard(...) before MapOutboxerDashboard.");
        }

        var options = endpoints.ServiceProvider.GetRequiredService<IOptions<OutboxerDashboardOptions>>().Value;
        options.Validate();

        var prefix = "/" + pattern.Trim('/');
        var handlers = new DashboardEndpoints(prefix == "/" ? string.Empty : prefix);
        var group = endpoints.MapGroup(prefix);
        if (options.AuthorizationPolicy is { } policy)
        {
            group.RequireAuthorization(policy);
        }

        group.MapGet("/", handlers.Guarded(handlers.OverviewAsync));
        group.MapGet("/dashboard.css", DashboardEndpoints.StylesAsync);
        group.MapGet("/destinations", handlers.Guarded(handlers.DestinationsAsync));
        group.MapGet("/dead-letters", handlers.Guarded(handlers.DeadLettersAsync));
        group.MapGet("/confirm", handlers.Guarded(handlers.ConfirmAsync));
        group.MapPost("/dead-letters/{action}", handlers.Guarded(context => handlers.ActAsync(context, context.Request.RouteValues["action"] as string ?? string.Empty)));
        group.MapGet("/message", handlers.Guarded(handlers.MessageAsync));
        return group;
    }
}
