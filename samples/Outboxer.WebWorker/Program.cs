// A relay service built only from AddOutboxer and configuration: it relays from PostgreSQL to RabbitMQ, exports the outbox's
// spans and metrics with OpenTelemetry (console exporter), and serves a health endpoint that reports the lag.
//
//   dotnet run --project samples/Outboxer.WebWorker -- --urls http://127.0.0.1:5080 \
//       --ConnectionStrings:Outbox "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer" \
//       --RabbitMQ:Uri amqp://outboxer:outboxer@127.0.0.1:5673/ --Outboxer:CheckInterval 00:00:00.500
//   curl http://127.0.0.1:5080/health
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Npgsql;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Outboxer;

var builder = WebApplication.CreateBuilder(args);

builder.Services.AddSingleton(NpgsqlDataSource.Create(builder.Configuration.GetConnectionString("Outbox")
    ?? throw new InvalidOperationException("Set ConnectionStrings:Outbox.")));

// Options from the "Outboxer" section (Outboxer:CheckInterval, Outboxer:MessageBatchSize, ...), validated at start.
builder.Services.AddOutboxer()
    .UsePostgreSql(o => o.SchemaName = builder.Configuration["Outbox:Schema"] ?? "public")
    .UseRabbitMQ(new Uri(builder.Configuration["RabbitMQ:Uri"] ?? throw new InvalidOperationException("Set RabbitMQ:Uri.")));

builder.Services.AddHealthChecks().AddOutboxer(configure: o => o.DegradedLag = TimeSpan.FromSeconds(30));

builder.Services.AddOpenTelemetry()
    .WithTracing(tracing => tracing.AddSource("Outboxer").AddConsoleExporter())
    .WithMetrics(metrics => metrics.AddMeter("Outboxer").AddConsoleExporter());

var app = builder.Build();

app.MapHealthChecks("/health", new HealthCheckOptions
{
    ResponseWriter = async (context, report) =>
    {
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), e.Value.Description, e.Value.Data }),
        });
    },
});

await app.RunAsync();
