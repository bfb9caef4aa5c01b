// The README's "Usage: PostgreSQL and RabbitMQ in a worker or web app", compiled so that it cannot rot.
//   dotnet run --project samples/Outboxer.Worker   (reads ConnectionStrings:Shop and RabbitMQ:Uri from configuration/environment)
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Outboxer;
using Outboxer.PostgreSql;
using Outboxer.RabbitMQ;
using Outboxer.Worker;
using RabbitMQ.Client;

var builder = Host.CreateApplicationBuilder(args);

var dataSource = NpgsqlDataSource.Create(builder.Configuration.GetConnectionString("Shop")
    ?? "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer");
var rabbit = await new ConnectionFactory { Uri = new Uri(builder.Configuration["RabbitMQ:Uri"] ?? "amqp://outboxer:outboxer@127.0.0.1:5673/") }
    .CreateConnectionAsync();

builder.Services.AddSingleton(dataSource);
builder.Services.AddSingleton(sp => new Outbox(
    new PostgreSqlOutboxStore(dataSource),                 // creates "public"."outbox_messages" on first use
    new RabbitMQPublisher(rabbit),
    new OutboxOptions { CheckInterval = TimeSpan.FromSeconds(1) },
    sp.GetRequiredService<ILoggerFactory>()));
builder.Services.AddHostedService(sp => sp.GetRequiredService<Outbox>());   // starts the dispatcher and the cleanup
builder.Services.AddSingleton<OrderService>();

var app = builder.Build();
await app.RunAsync();
