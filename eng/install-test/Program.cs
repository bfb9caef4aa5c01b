// The README's install path, proven (eng/install-test.sh copies this file, and samples/Outboxer.Worker/OrderService.cs verbatim, into a
// fresh console app outside the repository that got its packages with `dotnet add package`). It runs the README's usage against the
// real PostgreSQL and RabbitMQ: an order and its message in one transaction, relayed by the hosted outbox, read back from a queue.
// Its own schema and queue (named after a run id) keep it apart from everything else on the servers; both are removed at the end.
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Outboxer;
using Outboxer.Worker;
using RabbitMQ.Client;

var postgres = Environment.GetEnvironmentVariable("OUTBOXER_POSTGRES_URL") ?? "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer";
var rabbitUri = new Uri(Environment.GetEnvironmentVariable("OUTBOXER_RABBITMQ_URL") ?? "amqp://outboxer:outboxer@127.0.0.1:5673/");
var schema = "install_" + Guid.NewGuid().ToString("N")[..12];
var orderId = Random.Shared.Next(1, int.MaxValue);
using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
var ct = timeout.Token;

await using (var setup = NpgsqlDataSource.Create(postgres))
await using (var create = setup.CreateCommand($"CREATE SCHEMA {schema}; CREATE TABLE {schema}.orders (id integer PRIMARY KEY, total numeric NOT NULL)"))
{
    await create.ExecuteNonQueryAsync(ct);
}

var exitCode = 1;
try
{
    // The README's worker, with this run's schema: the data source finds "orders" there, and the outbox table goes there too.
    var builder = Host.CreateApplicationBuilder(args);
    builder.Services.AddSingleton(NpgsqlDataSource.Create($"{postgres};Search Path={schema}"));
    builder.Services.AddOutboxer()
        .UsePostgreSql(o => o.SchemaName = schema)
        .UseRabbitMQ(rabbitUri);
    builder.Services.AddSingleton<OrderService>();
    builder.Services.AddHealthChecks().AddOutboxer();
    using var app = builder.Build();

    // The consumer: a queue of this run's own, bound to the README's exchange and routing key.
    var factory = new ConnectionFactory { Uri = rabbitUri };
    await using var connection = await factory.CreateConnectionAsync(ct);
    await using var channel = await connection.CreateChannelAsync(cancellationToken: ct);
    await channel.ExchangeDeclareAsync("shop", ExchangeType.Topic, durable: true, cancellationToken: ct);
    var queue = (await channel.QueueDeclareAsync($"outboxer.install.{schema}", durable: false, exclusive: true, autoDelete: true, cancellationToken: ct)).QueueName;
    await channel.QueueBindAsync(queue, "shop", "orders.placed", cancellationToken: ct);

    await app.StartAsync(ct);
    await app.Services.GetRequiredService<OrderService>().PlaceOrderAsync(orderId, 12.5m, ct);

    OrderPlaced? received = null;
    while (received is null)
    {
        if (await channel.BasicGetAsync(queue, autoAck: true, ct) is { } delivery
            && JsonSerializer.Deserialize<OrderPlaced>(delivery.Body.Span) is { } order && order.OrderId == orderId)
        {
            received = order;
        }
        else
        {
            await Task.Delay(50, ct);
        }
    }

    var health = await app.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(ct);
    Console.WriteLine($"order {received.OrderId} ({received.Total}) came through RabbitMQ; health: {health.Status}");
    await app.StopAsync(ct);
    exitCode = health.Status == HealthStatus.Healthy ? 0 : 1;
}
finally
{
    await using var cleanup = NpgsqlDataSource.Create(postgres);
    await using var drop = cleanup.CreateCommand($"DROP SCHEMA {schema} CASCADE");
    await drop.ExecuteNonQueryAsync(CancellationToken.None);
}

Console.WriteLine(exitCode == 0 ? "INSTALL OK" : "INSTALL FAILED");
return exitCode;
