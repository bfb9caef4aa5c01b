using System.Text.Json;
using Npgsql;
using Outboxer.PostgreSql;
using Outboxer.Testing.Servers;
using Xunit;

namespace Outboxer.Cli.Tests;

/// <summary><c>outboxer logmode setup|status|drop</c> against the real server; the slot is dropped at the end whatever happens.</summary>
public sealed class LogModeCliTests : IAsyncDisposable
{
    private readonly string _name = "cli_logmode_" + Guid.NewGuid().ToString("N")[..10];

    [Fact]
    public async Task Logmode_status_names_what_is_missing_setup_creates_it_and_drop_needs_yes()
    {
        string[] names = ["--connection", PostgreSqlServer.ConnectionString, "--slot", _name, "--publication", _name, "--schema", _name];

        var missing = await Cli.RunAsync(["logmode", "status", .. names]);
        Assert.True(missing.ExitCode == 1, missing.ToString());
        Assert.Contains($"The replication slot {_name} does not exist; create it with `outboxer logmode setup`", missing.Stdout, StringComparison.Ordinal);

        var setup = await Cli.RunAsync(["logmode", "setup", .. names]);
        Assert.True(setup.ExitCode == 0, setup.ToString());
        Assert.Contains("inactive (no relay)", setup.Stdout, StringComparison.Ordinal);
        Assert.Contains("max_slot_wal_keep_size", setup.Stdout, StringComparison.Ordinal);

        var status = await Cli.RunAsync(["logmode", "status", "--json", .. names]);
        Assert.True(status.ExitCode == 0, status.ToString());
        using var json = JsonDocument.Parse(status.Stdout);
        Assert.True(json.RootElement.GetProperty("slot_exists").GetBoolean());
        Assert.Equal("logical", json.RootElement.GetProperty("wal_level").GetString());
        Assert.True(json.RootElement.GetProperty("lag_bytes").GetInt64() >= 0);
        Assert.Equal(0, json.RootElement.GetProperty("problems").GetArrayLength());

        var refused = await Cli.RunAsync(["logmode", "drop", .. names]);
        Assert.True(refused.ExitCode == 3, refused.ToString());
        var dropped = await Cli.RunAsync(["logmode", "drop", "--yes", .. names]);
        Assert.True(dropped.ExitCode == 0, dropped.ToString());
        Assert.DoesNotContain("Password", missing.Output + setup.Output + status.Output + dropped.Output, StringComparison.OrdinalIgnoreCase);
    }

    public async ValueTask DisposeAsync()
    {
        await using var dataSource = NpgsqlDataSource.Create(PostgreSqlServer.ConnectionString);
        await new PostgreSqlLogSetup(dataSource, new PostgreSqlLogOptions { SlotName = _name, PublicationName = _name, SchemaName = _name }).DropAsync();
        await using var drop = dataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{_name}\" CASCADE");
        await drop.ExecuteNonQueryAsync();
    }
}
