// The README's "Usage: PostgreSQL and RabbitMQ in a worker or web app", compiled so that it cannot rot.
//   dotnet run --project samples/Outboxer.Worker   (reads ConnectionStrings:Shop, RabbitMQ:Uri and the Outboxer section from configuration)
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Outboxer;
using Outboxer.Worker;

var builder = Host.CreateApplicationBuilder(args);

builder.Services.AddSingleton(NpgsqlDataSource.Create(
    builder.Configuration.GetConnectionString("Shop") ?? "Host=127.0.0.1;Port=5433;Username=postgres;Database=outboxer"));

builder.Services.AddOutboxer()                     // options from the "Outboxer" configuration section, validated at start
    .UsePostgreSql()                               // the NpgsqlDataSource above; creates "public"."outbox_messages" on first use
    .UseRabbitMQ(new Uri(builder.Configuration["RabbitMQ:Uri"] ?? "amqp://outboxer:outboxer@127.0.0.1:5673/"));

builder.Services.AddSingleton<OrderService>();

var app = builder.Build();
await app.RunAsync();
