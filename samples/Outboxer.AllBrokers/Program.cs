// One MySQL database, six outbox tables, six brokers: every business transaction enqueues the same event into each outbox (or, when
// it rolls back, into none); each outbox relays to its broker; the program reads every broker back and exits 0 only when each one
// received exactly the committed events. Written only against the public API, with each broker's own client on the reading side.
//
//   dotnet Outboxer.AllBrokers.dll            (servers from `bash eng/servers.sh start mariadb rabbitmq fauxqs kinesalite pubsub redis nats`;
//                                               OUTBOXER_MYSQL_URL, OUTBOXER_RABBITMQ_URL, OUTBOXER_SQS_URL, OUTBOXER_KINESIS_URL,
//                                               OUTBOXER_PUBSUB_HOST, OUTBOXER_NATS_URL and OUTBOXER_REDIS_URL override the addresses)
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Amazon.Runtime;
using Amazon.SQS;
using Amazon.SQS.Model;
using MySqlConnector;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using Outboxer;
using Outboxer.Kinesis;
using Outboxer.MySql;
using Outboxer.Nats;
using Outboxer.Providers;
using Outboxer.PubSub;
using Outboxer.RabbitMQ;
using Outboxer.Redis;
using Outboxer.Sqs;
using RabbitMQ.Client;
using StackExchange.Redis;

const int Events = 40;
var run = Guid.NewGuid().ToString("N")[..8];
var mysql = Setting("OUTBOXER_MYSQL_URL", "Server=127.0.0.1;Port=3307;User ID=outboxer;Password=outboxer;Database=outboxer");
var rabbitUri = new Uri(Setting("OUTBOXER_RABBITMQ_URL", "amqp://outboxer:outboxer@127.0.0.1:5673/"));
var sqsUrl = Setting("OUTBOXER_SQS_URL", "http://127.0.0.1:4566");
var kinesisUrl = new Uri(Setting("OUTBOXER_KINESIS_URL", "http://127.0.0.1:4567"));
var pubsubHost = Setting("OUTBOXER_PUBSUB_HOST", "127.0.0.1:8085");
var natsUrl = Setting("OUTBOXER_NATS_URL", "nats://127.0.0.1:4223");
var redisConfiguration = Setting("OUTBOXER_REDIS_URL", "127.0.0.1:6380");
using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
var ct = timeout.Token;

// Broker-side destinations, fresh for this run.
var exchange = $"outboxer.all.{run}";
var queue = $"outboxer-all-{run}";
var stream = $"outboxer-all-{run}";
var project = "outboxer-all";
var topic = $"all-{run}";
var natsStream = $"OUTBOXER_ALL_{run}";
var natsSubject = $"outboxer.all.{run}.shipments";
var redisStream = $"outboxer:all:{run}";

await using var rabbit = await new ConnectionFactory { Uri = rabbitUri, ClientProvidedName = "all-brokers-reader" }.CreateConnectionAsync(ct);
await using var rabbitChannel = await rabbit.CreateChannelAsync(cancellationToken: ct);
await rabbitChannel.ExchangeDeclareAsync(exchange, ExchangeType.Topic, durable: false, autoDelete: true, cancellationToken: ct);
await rabbitChannel.QueueDeclareAsync(queue, durable: false, exclusive: true, autoDelete: true, cancellationToken: ct);
await rabbitChannel.QueueBindAsync(queue, exchange, "shipments.#", cancellationToken: ct);

var awsCredentials = new BasicAWSCredentials("test", "test");
using var sqs = new AmazonSQSClient(awsCredentials, new AmazonSQSConfig { ServiceURL = sqsUrl, AuthenticationRegion = "us-east-1" });
var queueUrl = (await sqs.CreateQueueAsync(queue, ct)).QueueUrl;

using var http = new HttpClient();
var kinesis = new KinesisReader(http, kinesisUrl);
await kinesis.CreateStreamAsync(stream, ct);
var pubsub = new PubSubReader(http, new Uri($"http://{pubsubHost}/v1/projects/{project}/"));
await pubsub.CreateAsync(topic, $"{topic}-reader", ct);

// JetStream stores only what a stream covers: the operator creates it (file storage, the default 2-minute duplicate window).
await using var nats = new NatsConnection(new NatsOpts { Url = natsUrl, Name = "all-brokers-reader" });
var jetStream = new NatsJSContext(nats);
await jetStream.CreateStreamAsync(new StreamConfig(natsStream, [natsSubject]), ct);

// A Redis stream is created by its first XADD; the reader has its own connection.
await using var redis = await ConnectionMultiplexer.ConnectAsync(redisConfiguration);

// Four outboxes on one MySQL database, one table and one broker each.
await using var dataSource = new MySqlDataSource(mysql);
await using (var connection = await dataSource.OpenConnectionAsync(ct))
await using (var create = new MySqlCommand($"CREATE TABLE shipments_{run} (id INT PRIMARY KEY, destination VARCHAR(100) NOT NULL)", connection))
{
    await create.ExecuteNonQueryAsync(ct);
}

await using var rabbitPublisher = new RabbitMQPublisher(rabbitUri);
await using var sqsPublisher = new SqsPublisher(sqs);
await using var kinesisPublisher = new KinesisPublisher(new KinesisPublisherOptions { ServiceUrl = kinesisUrl, Credentials = awsCredentials });
await using var pubsubPublisher = await PubSubPublisher.CreateAsync(new PubSubPublisherOptions { EmulatorHost = pubsubHost, ProjectId = project }, cancellationToken: ct);
await using var natsPublisher = NatsPublisher.Create(natsUrl);
await using var redisPublisher = await RedisPublisher.ConnectAsync(redisConfiguration, cancellationToken: ct);
var outboxes = new (string Broker, IOutboxPublisher Publisher, Action<OutboxMessage> Route)[]
{
    ("RabbitMQ", rabbitPublisher, m =>
    {
        m.Options[RabbitMQOptionKeys.ExchangeName] = exchange;
        m.Options[RabbitMQOptionKeys.ExchangeDurable] = false;          // as the reader declared it
        m.Options[RabbitMQOptionKeys.ExchangeAutoDelete] = true;
        m.Options[RabbitMQOptionKeys.RoutingKey] = "shipments.sent";
    }),
    ("SQS", sqsPublisher, m => m.Options[SqsOptionKeys.QueueName] = queue),
    ("Kinesis", kinesisPublisher, m => m.Options[KinesisOptionKeys.StreamName] = stream),
    ("Pub/Sub", pubsubPublisher, m => m.Options[PubSubOptionKeys.TopicName] = topic),
    ("NATS", natsPublisher, m => m.Options[NatsOptionKeys.Subject] = natsSubject),
    ("Redis", redisPublisher, m => m.Options[RedisOptionKeys.Stream] = redisStream),
}.Select(o => (o.Broker, o.Route, Outbox: new Outbox(
    new MySqlOutboxStore(dataSource, new MySqlOutboxStoreOptions { TableName = $"outbox_{run}_{o.Broker.Replace("/", "", StringComparison.Ordinal).ToLowerInvariant()}" }),
    o.Publisher))).ToList();

// The application: each shipment and its event, in every outbox, in one MySQL transaction; every fourth one rolls back.
var committed = new HashSet<string>();
var rolledBack = new HashSet<string>();
for (var i = 0; i < Events; i++)
{
    var payload = $$"""{"event":"ShipmentSent","shipment":{{i}},"run":"{{run}}"}""";
    await using var connection = await dataSource.OpenConnectionAsync(ct);
    await using var transaction = await connection.BeginTransactionAsync(ct);
    await using (var insert = new MySqlCommand($"INSERT INTO shipments_{run} (id, destination) VALUES (@id, 'Lisbon')", connection, transaction))
    {
        insert.Parameters.AddWithValue("@id", i);
        await insert.ExecuteNonQueryAsync(ct);
    }

    foreach (var (_, route, outbox) in outboxes)
    {
        var message = new OutboxMessage(payload);
        message.Headers["event-type"] = "ShipmentSent";
        route(message);
        await outbox.EnqueueAsync(transaction, message, ct);
    }

    if (i % 4 == 3)
    {
        await transaction.RollbackAsync(ct);
        rolledBack.Add(payload);
    }
    else
    {
        await transaction.CommitAsync(ct);
        committed.Add(payload);
    }
}

// Relay: each outbox publishes everything pending, as a one-shot job would.
foreach (var (broker, _, outbox) in outboxes)
{
    var errors = outbox.Errors;
    var claimed = await outbox.DispatchPendingAsync(ct);
    var failed = 0;
    while (errors.TryRead(out var error))
    {
        failed++;
        Console.WriteLine($"{broker,-9} error: {error.Exception.Message}");
    }

    Console.WriteLine($"{broker,-9} relayed {claimed - failed} of {claimed} messages claimed from MySQL");
}

// Read every broker back with its own client.
var received = new Dictionary<string, List<string>>
{
    ["RabbitMQ"] = await ReadRabbitMQAsync(),
    ["SQS"] = await ReadSqsAsync(),
    ["Kinesis"] = await kinesis.ReadAsync(stream, committed.Count, ct),
    ["Pub/Sub"] = await pubsub.PullAsync($"{topic}-reader", committed.Count, ct),
    ["NATS"] = await ReadNatsAsync(),
    ["Redis"] = (await redis.GetDatabase().StreamRangeAsync(redisStream)).Select(entry => entry["payload"].ToString()).ToList(),
};

var ok = true;
foreach (var (broker, payloads) in received)
{
    var exact = payloads.Count == committed.Count && payloads.ToHashSet().SetEquals(committed);
    var leaked = payloads.Count(rolledBack.Contains);
    ok &= exact && leaked == 0;
    Console.WriteLine($"{broker,-9} received {payloads.Count} of {committed.Count} committed, {leaked} rolled back: {(exact && leaked == 0 ? "exact" : "WRONG")}");
}

foreach (var (_, _, outbox) in outboxes)
{
    await outbox.DisposeAsync();
}

await sqs.DeleteQueueAsync(queueUrl, ct);
await kinesis.DeleteStreamAsync(stream, ct);
await pubsub.DeleteAsync(topic, $"{topic}-reader", ct);
await jetStream.DeleteStreamAsync(natsStream, ct);
await redis.GetDatabase().KeyDeleteAsync(redisStream);
await using (var connection = await dataSource.OpenConnectionAsync(ct))
await using (var drop = new MySqlCommand($"DROP TABLE shipments_{run}, outbox_{run}_rabbitmq, outbox_{run}_sqs, outbox_{run}_kinesis, outbox_{run}_pubsub, outbox_{run}_nats, outbox_{run}_redis", connection))
{
    await drop.ExecuteNonQueryAsync(ct);
}

Console.WriteLine(ok ? "OK: every broker received exactly the committed messages." : "FAILED");
return ok ? 0 : 1;

async Task<List<string>> ReadRabbitMQAsync()
{
    var payloads = new List<string>();
    while (await rabbitChannel.BasicGetAsync(queue, autoAck: true, ct) is { } delivery)
    {
        payloads.Add(Encoding.UTF8.GetString(delivery.Body.Span));
    }

    return payloads;
}

async Task<List<string>> ReadSqsAsync()
{
    var payloads = new List<string>();
    while (payloads.Count < committed.Count)
    {
        var response = await sqs.ReceiveMessageAsync(new ReceiveMessageRequest { QueueUrl = queueUrl, MaxNumberOfMessages = 10, WaitTimeSeconds = 1 }, ct);
        if (response.Messages is not { Count: > 0 })
        {
            break;
        }

        foreach (var message in response.Messages)
        {
            payloads.Add(message.Body);
            await sqs.DeleteMessageAsync(queueUrl, message.ReceiptHandle, ct);
        }
    }

    return payloads;
}

async Task<List<string>> ReadNatsAsync()
{
    // An ordered consumer over the whole stream, fetching what is there (at most the committed count, waiting 2 s at most).
    var consumer = await jetStream.CreateOrderedConsumerAsync(natsStream, cancellationToken: ct);
    var payloads = new List<string>();
    await foreach (var message in consumer.FetchAsync<string>(new NatsJSFetchOpts { MaxMsgs = committed.Count + 1, Expires = TimeSpan.FromSeconds(2) }, cancellationToken: ct))
    {
        payloads.Add(message.Data ?? string.Empty);
    }

    return payloads;
}

static string Setting(string name, string fallback) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback;

/// <summary>Reads a Kinesis stream with the service's JSON API (the emulator checks no signature, only that one is present).</summary>
internal sealed class KinesisReader(HttpClient http, Uri endpoint)
{
    public async Task CreateStreamAsync(string stream, CancellationToken ct)
    {
        await CallAsync("CreateStream", new JsonObject { ["StreamName"] = stream, ["ShardCount"] = 1 }, ct);
        while ((await CallAsync("DescribeStream", new JsonObject { ["StreamName"] = stream }, ct))["StreamDescription"]!["StreamStatus"]!.GetValue<string>() != "ACTIVE")
        {
            await Task.Delay(50, ct);
        }
    }

    public Task DeleteStreamAsync(string stream, CancellationToken ct) =>
        CallAsync("DeleteStream", new JsonObject { ["StreamName"] = stream }, ct);

    public async Task<List<string>> ReadAsync(string stream, int expected, CancellationToken ct)
    {
        var shard = (await CallAsync("DescribeStream", new JsonObject { ["StreamName"] = stream }, ct))["StreamDescription"]!["Shards"]![0]!["ShardId"]!.GetValue<string>();
        var iterator = (await CallAsync("GetShardIterator", new JsonObject { ["StreamName"] = stream, ["ShardId"] = shard, ["ShardIteratorType"] = "TRIM_HORIZON" }, ct))["ShardIterator"]!.GetValue<string>();
        var payloads = new List<string>();
        for (var empty = 0; payloads.Count < expected && empty < 3;)
        {
            var records = await CallAsync("GetRecords", new JsonObject { ["ShardIterator"] = iterator }, ct);
            iterator = records["NextShardIterator"]!.GetValue<string>();
            var batch = records["Records"]!.AsArray();
            empty = batch.Count == 0 ? empty + 1 : 0;
            payloads.AddRange(batch.Select(r => Encoding.UTF8.GetString(Convert.FromBase64String(r!["Data"]!.GetValue<string>()))));
        }

        return payloads;
    }

    private async Task<JsonNode> CallAsync(string operation, JsonObject body, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, endpoint) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8) };
        request.Content.Headers.ContentType = new("application/x-amz-json-1.1");
        request.Headers.Add("X-Amz-Target", $"Kinesis_20131202.{operation}");
        request.Headers.Add("X-Amz-Date", "20260101T000000Z");
        request.Headers.TryAddWithoutValidation("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0");
        using var response = await http.SendAsync(request, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        return response.IsSuccessStatusCode ? JsonNode.Parse(text.Length == 0 ? "{}" : text)! : throw new InvalidOperationException($"Kinesis {operation}: {text}");
    }
}

/// <summary>Creates a topic and subscription and pulls from it with the Pub/Sub REST API, which the emulator serves next to gRPC.</summary>
internal sealed class PubSubReader(HttpClient http, Uri project)
{
    public async Task CreateAsync(string topic, string subscription, CancellationToken ct)
    {
        (await http.PutAsync(new Uri(project, $"topics/{topic}"), null, ct)).EnsureSuccessStatusCode();
        var body = JsonContent.Create(new JsonObject { ["topic"] = $"{project.AbsolutePath.TrimStart('/').Replace("v1/", "", StringComparison.Ordinal)}topics/{topic}" });
        (await http.PutAsync(new Uri(project, $"subscriptions/{subscription}"), body, ct)).EnsureSuccessStatusCode();
    }

    public async Task DeleteAsync(string topic, string subscription, CancellationToken ct)
    {
        (await http.DeleteAsync(new Uri(project, $"subscriptions/{subscription}"), ct)).EnsureSuccessStatusCode();
        (await http.DeleteAsync(new Uri(project, $"topics/{topic}"), ct)).EnsureSuccessStatusCode();
    }

    public async Task<List<string>> PullAsync(string subscription, int expected, CancellationToken ct)
    {
        var payloads = new List<string>();
        for (var empty = 0; payloads.Count < expected && empty < 3;)
        {
            using var response = await http.PostAsync(new Uri(project, $"subscriptions/{subscription}:pull"), JsonContent.Create(new JsonObject { ["maxMessages"] = 100 }), ct);
            var pulled = JsonNode.Parse(await response.Content.ReadAsStringAsync(ct))!["receivedMessages"]?.AsArray() ?? [];
            empty = pulled.Count == 0 ? empty + 1 : 0;
            payloads.AddRange(pulled.Select(m => Encoding.UTF8.GetString(Convert.FromBase64String(m!["message"]!["data"]!.GetValue<string>()))));
            if (pulled.Count > 0)
            {
                var ack = new JsonObject { ["ackIds"] = new JsonArray(pulled.Select(m => (JsonNode)JsonValue.Create(m!["ackId"]!.GetValue<string>())!).ToArray()) };
                (await http.PostAsync(new Uri(project, $"subscriptions/{subscription}:acknowledge"), JsonContent.Create(ack), ct)).EnsureSuccessStatusCode();
            }
        }

        return payloads;
    }
}
