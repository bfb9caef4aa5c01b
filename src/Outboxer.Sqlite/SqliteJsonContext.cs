using System.Text.Json.Serialization;

namespace Outboxer.Sqlite;

[JsonSerializable(typeof(IReadOnlyList<long>))]
internal sealed partial class SqliteJsonContext : JsonSerializerContext;
