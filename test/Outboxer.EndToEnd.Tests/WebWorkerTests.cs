using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;
using Outboxer.Testing.Servers;
using RabbitMQ.Client;
using Xunit;

namespace Outboxer.EndToEnd.Tests;

/// <summary>The web worker sample, run as a process: configured only through AddOutboxer and configuration, it relays, exports telemetry and reports health.</summary>
public sealed class WebWorkerTests
{
    private static readonly string Postgres = PostgreSqlServer.ConnectionString;
    private static readonly string RabbitMQ = RabbitMQServer.Url.OriginalString;

    [Fact]
    public async Task A_worker_configured_only_through_AddOutboxer_relays_exports_telemetry_and_reports_its_lag()
    {
        var ct = TestContext.Current.CancellationToken;
        var schema = $"webworker_{Guid.NewGuid():N}"[..24];
        var queue = $"outboxer-webworker-{Guid.NewGuid():N}";
        var port = FreePort();
        await using var rabbit = await RabbitMQServer.ConnectAsync("Outboxer.EndToEnd.Tests.WebWorker");
        await using var channel = await rabbit.CreateChannelAsync(cancellationToken: ct);
        await channel.QueueDeclareAsync(queue, durable: false, exclusive: true, autoDelete: true, cancellationToken: ct);
        await using var dataSource = NpgsqlDataSource.Create(Postgres);

        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[]
        {
            SampleProcessTests.SamplePath("Outboxer.WebWorker"), "--urls", $"http://127.0.0.1:{port}",
            "--ConnectionStrings:Outbox", Postgres, "--RabbitMQ:Uri", RabbitMQ, "--Outbox:Schema", schema,
            "--Outboxer:CheckInterval", "00:00:00.200",
        })
        {
            start.ArgumentList.Add(argument);
        }

        using var worker = Process.Start(start)!;
        var output = worker.StandardOutput.ReadToEndAsync(ct);
        var errors = worker.StandardError.ReadToEndAsync(ct);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        try
        {
            var health = await HealthAsync(http, ct);
            Assert.Equal("Healthy", health.GetProperty("status").GetString());

            // Another process (this test) enqueues; the worker relays.
            await using (var producer = new Outbox(new PostgreSqlOutboxStore(dataSource, new PostgreSqlOutboxStoreOptions { SchemaName = schema }), new JsonLinesPublisher(TextWriter.Null)))
            {
                for (var i = 0; i < 5; i++)
                {
                    var message = new OutboxMessage($"order {i}");
                    message.Options[RabbitMQOptionKeys.RoutingKey] = queue;
                    await producer.SendAsync(message, ct);
                }
            }

            var received = 0;
            using var bound = CancellationTokenSource.CreateLinkedTokenSource(ct);
            bound.CancelAfter(TimeSpan.FromSeconds(60));
            while (received < 5)
            {
                received += await channel.BasicGetAsync(queue, autoAck: true, bound.Token) is null ? 0 : 1;
                if (received < 5)
                {
                    await Task.Delay(50, bound.Token);
                }
            }

            health = await HealthAsync(http, ct);
            var data = health.GetProperty("checks").GetProperty("outboxer").GetProperty("Data");
            Assert.Equal(0, data.GetProperty("pending").GetInt64());
            Assert.True(data.TryGetProperty("lag_seconds", out _));
            Assert.True(data.GetProperty("dispatcher_running").GetBoolean());
        }
        finally
        {
            // SIGTERM: the host stops gracefully, and OpenTelemetry flushes the metrics on the way out.
            using (var term = Process.Start("kill", ["-TERM", worker.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await term.WaitForExitAsync(CancellationToken.None);
            }

            using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await worker.WaitForExitAsync(exit.Token);
            }
            catch (OperationCanceledException)
            {
                worker.Kill(entireProcessTree: true);
                await worker.WaitForExitAsync(CancellationToken.None);
            }

            await using var drop = dataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }

        var log = await output + await errors;
        Assert.Contains("Activity.DisplayName:        send", log, StringComparison.Ordinal);
        Assert.Contains("messaging.client.sent.messages", log, StringComparison.Ordinal);
    }

    private static async Task<JsonElement> HealthAsync(HttpClient http, CancellationToken ct)
    {
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(ct);
        bound.CancelAfter(TimeSpan.FromSeconds(60));
        while (true)
        {
            try
            {
                using var response = await http.GetAsync("/health", bound.Token);
                var body = await response.Content.ReadAsStringAsync(bound.Token);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return JsonDocument.Parse(body).RootElement.Clone();
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }

            await Task.Delay(100, bound.Token);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
