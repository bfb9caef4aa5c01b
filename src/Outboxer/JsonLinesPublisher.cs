using System.Buffers;
using System.Text;
using System.Text.Json;
using Outboxer.Providers;

namespace Outboxer;

/// <summary>
/// A built-in event stream that needs no broker: it writes each message as one JSON line to a <see cref="TextWriter"/>
/// (standard output, a file) and counts it as confirmed once the line is flushed. For samples, local development, tests,
/// and relaying to tools that read JSON lines.
/// </summary>
/// <remarks>
/// Each line is an object with <c>id</c>, <c>message_id</c>, <c>created_at</c>, <c>payload</c> (the payload as UTF-8 text when it
/// is valid UTF-8, otherwise base64 with <c>"payload_encoding":"base64"</c>), <c>options</c> and <c>headers</c>.
/// Lines are written one at a time, so concurrent publishes never interleave.
/// </remarks>
public sealed class JsonLinesPublisher : IOutboxPublisher, IAsyncDisposable
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly TextWriter _writer;
    private readonly bool _ownsWriter;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>Initializes a publisher that writes to <paramref name="writer"/>.</summary>
    /// <param name="writer">Where to write the lines, for example <see cref="Console.Out"/>.</param>
    /// <param name="ownsWriter">Whether <see cref="DisposeAsync"/> disposes the writer.</param>
    /// <exception cref="ArgumentNullException"><paramref name="writer"/> is <see langword="null"/>.</exception>
    public JsonLinesPublisher(TextWriter writer, bool ownsWriter = false)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _writer = writer;
        _ownsWriter = ownsWriter;
    }

    /// <summary>Creates a publisher that appends lines to the file at <paramref name="path"/>, creating it when missing.</summary>
    /// <param name="path">The file path.</param>
    /// <returns>A publisher that owns the file and closes it when disposed.</returns>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty.</exception>
    public static JsonLinesPublisher ToFile(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        return new JsonLinesPublisher(new StreamWriter(stream, new UTF8Encoding(false)), ownsWriter: true);
    }

    /// <inheritdoc />
    public async ValueTask PublishAsync(OutboxMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        var line = Format(message);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _writer.WriteLineAsync(line.AsMemory(), cancellationToken).ConfigureAwait(false);
            await _writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Gets <see langword="null"/> for every message: all of them go to the same writer, whatever their options, so there is no
    /// destination to tell them apart by (the line keeps the message's options, for a reader that routes by them).
    /// </summary>
    /// <param name="message">The message.</param>
    /// <returns><see langword="null"/>.</returns>
    public string? GetDestinationName(OutboxMessage message) => null;

    /// <summary>Disposes the writer when the publisher owns it.</summary>
    /// <returns>A task that completes when the writer is closed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (_ownsWriter)
        {
            await _writer.DisposeAsync().ConfigureAwait(false);
        }

        _gate.Dispose();
    }

    private static string Format(OutboxMessage message)
    {
        var buffer = new ArrayBufferWriter<byte>(256 + message.Payload.Length);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("id", message.Id);
            json.WriteString("message_id", message.MessageId);
            json.WriteString("created_at", message.CreatedAt);
            string? text;
            try
            {
                text = StrictUtf8.GetString(message.Payload);
            }
            catch (DecoderFallbackException)
            {
                text = null;
            }

            if (text is null)
            {
                json.WriteBase64String("payload", message.Payload);
                json.WriteString("payload_encoding", "base64");
            }
            else
            {
                json.WriteString("payload", text);
            }

            WriteValues(json, "options", message.Options);
            WriteValues(json, "headers", message.Headers);
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteValues(Utf8JsonWriter json, string name, OutboxValues values)
    {
        json.WritePropertyName(name);
        var text = values.ToJson();
        if (text is null)
        {
            json.WriteStartObject();
            json.WriteEndObject();
        }
        else
        {
            json.WriteRawValue(text, skipInputValidation: true);
        }
    }
}
