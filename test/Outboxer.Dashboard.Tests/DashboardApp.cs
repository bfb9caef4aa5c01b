using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Outboxer.Dashboard;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;
using Outboxer.Testing.Servers;
using RabbitMQ.Client;
using Xunit;

namespace Outboxer.Dashboard.Tests;

/// <summary>
/// A real ASP.NET Core application on 127.0.0.1 (a dynamic port) with an outbox on a fresh PostgreSQL table, dispatching to the
/// test RabbitMQ, and the dashboard mapped at <c>/outboxer</c>. Operators are whoever carries the cookie <see cref="OperatorCookie"/>.
/// </summary>
internal sealed class DashboardApp : IAsyncDisposable
{
    public const string Policy = "outbox-operators";
    public const string OperatorCookie = "dashboard-test-operator";

    private readonly List<string> _queues = [];

    private DashboardApp(WebApplication app, string table, NpgsqlDataSource dataSource, IConnection rabbit, IChannel channel)
    {
        App = app;
        Table = table;
        DataSource = dataSource;
        Rabbit = rabbit;
        Channel = channel;
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        Root = new Uri(address);
        BaseUrl = address.TrimEnd('/') + "/outboxer";
        Outbox = app.Services.GetRequiredService<Outbox>();
    }

    public WebApplication App { get; }

    public Uri Root { get; }

    /// <summary>Gets the dashboard's address, without a trailing slash.</summary>
    public string BaseUrl { get; }

    public string Table { get; }

    public NpgsqlDataSource DataSource { get; }

    public Outbox Outbox { get; }

    public IConnection Rabbit { get; }

    public IChannel Channel { get; }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static async Task<DashboardApp> StartAsync(Action<OutboxerDashboardOptions>? configure = null, Action<IServiceCollection>? services = null)
    {
        var table = $"dash_{Guid.NewGuid():N}"[..30];
        var dataSource = PostgreSqlServer.CreateDataSource();
        await (await PostgreSqlServer.OpenAsync(dataSource)).DisposeAsync();
        var rabbit = await RabbitMQServer.ConnectAsync("dashboard-tests");
        var channel = await rabbit.CreateChannelAsync(cancellationToken: Ct);

        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Production" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(dataSource);
        builder.Services.AddOutboxer(o =>
            {
                o.CheckInterval = TimeSpan.FromMilliseconds(100);
                o.RetryDelay = TimeSpan.FromSeconds(1);
            })
            .UsePostgreSql(o => o.TableName = table)
            .UseRabbitMQ(RabbitMQServer.Url);
        services?.Invoke(builder.Services);
        builder.Services.AddAuthentication(OperatorCookieHandler.Name).AddScheme<AuthenticationSchemeOptions, OperatorCookieHandler>(OperatorCookieHandler.Name, null);
        builder.Services.AddAuthorizationBuilder().AddPolicy(Policy, p => p.RequireAuthenticatedUser());
        builder.Services.AddOutboxerDashboard(o =>
        {
            o.AuthorizationPolicy = Policy;
            o.SampleInterval = TimeSpan.FromSeconds(1);
            configure?.Invoke(o);
        });

        var app = builder.Build();
        app.MapOutboxerDashboard("/outboxer");
        // The test application's sign-in: sets the operator cookie (a real application would ask who you are).
        app.MapGet("/signin", (HttpContext context) =>
        {
            context.Response.Cookies.Append(OperatorCookie, "yes", new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Strict });
            return Results.Content("<!doctype html><title>Signed in</title><p>Signed in as an operator.</p>", "text/html");
        });
        await app.StartAsync(Ct);
        return new DashboardApp(app, table, dataSource, rabbit, channel);
    }

    /// <summary>Declares a queue of the test's own (deleted at the end), bound to the default exchange by its name.</summary>
    public async Task<string> DeclareQueueAsync(string? name = null)
    {
        name ??= NewQueueName();
        await Channel.QueueDeclareAsync(name, durable: false, exclusive: false, autoDelete: false, cancellationToken: Ct);
        _queues.Add(name);
        return name;
    }

    public static string NewQueueName() => $"dash-{Guid.NewGuid():N}";

    /// <summary>Enqueues a message for a queue, through the default exchange.</summary>
    public Task<long> SendAsync(string queue, string payload, Action<OutboxMessage>? configure = null)
    {
        var message = new OutboxMessage(payload);
        message.Options[RabbitMQOptionKeys.RoutingKey] = queue;
        configure?.Invoke(message);
        return Outbox.SendAsync(message, Ct);
    }

    /// <summary>Waits (at most 30 s) until the outbox's statistics satisfy <paramref name="condition"/>.</summary>
    public async Task<OutboxStatistics> WaitForAsync(Func<OutboxStatistics, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var statistics = await Outbox.GetStatisticsAsync(Ct);
            if (condition(statistics))
            {
                return statistics;
            }

            Assert.True(DateTime.UtcNow < deadline, $"Waited 30 s for {what}; the outbox has {statistics}.");
            await Task.Delay(100, Ct);
        }
    }

    /// <summary>Gets the next message of a queue, waiting at most 30 s for it.</summary>
    public async Task<BasicGetResult> ConsumeAsync(string queue)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (await Channel.BasicGetAsync(queue, autoAck: true, Ct) is { } result)
            {
                return result;
            }

            Assert.True(DateTime.UtcNow < deadline, $"Nothing arrived on queue {queue} within 30 s.");
            await Task.Delay(100, Ct);
        }
    }

    /// <summary>Gets an HTTP client for the application, as an operator (with the cookie) or anonymous.</summary>
    public HttpClient Client(bool asOperator)
    {
        var handler = new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false };
        var client = new HttpClient(handler) { BaseAddress = Root };
        if (asOperator)
        {
            client.DefaultRequestHeaders.Add("Cookie", $"{OperatorCookie}=yes");
        }

        return client;
    }

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync(CancellationToken.None);
        await App.DisposeAsync();
        foreach (var queue in _queues)
        {
            await Channel.QueueDeleteAsync(queue, cancellationToken: CancellationToken.None);
        }

        await Channel.DisposeAsync();
        await Rabbit.DisposeAsync();
        await using (var connection = await DataSource.OpenConnectionAsync(CancellationToken.None))
        await using (var drop = new NpgsqlCommand($"DROP TABLE IF EXISTS public.\"{Table}\"", connection))
        {
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }

        await DataSource.DisposeAsync();
    }

    /// <summary>Authenticates a request that carries <see cref="OperatorCookie"/> = yes; any other is anonymous.</summary>
    private sealed class OperatorCookieHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
        : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
    {
        public const string Name = "Operator";

        protected override Task<AuthenticateResult> HandleAuthenticateAsync() =>
            Task.FromResult(Request.Cookies[OperatorCookie] == "yes"
                ? AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, "operator")], Name)), Name))
                : AuthenticateResult.NoResult());
    }
}
