using System.Data.Common;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Outboxer.Providers;
using Xunit;

namespace Outboxer.Testing;

/// <summary>
/// The behaviour every <see cref="IOutboxStore"/> must have, run against a real database. A store's test class derives from this,
/// gives each test instance a schema, database or file of its own, answers the hooks below for its database, and adds the store's
/// specific tests. Stores whose database lets several transactions write at once derive from
/// <see cref="RowLockingOutboxStoreConformanceTests"/> instead, which adds the tests of row locks.
/// </summary>
public abstract class OutboxStoreConformanceTests : IAsyncLifetime
{
    private string? _businessTable;

    /// <summary>Gets a token that is cancelled when the test is aborted.</summary>
    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Gets the instant the tests count from.</summary>
    protected static DateTimeOffset T0 { get; } = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>Gets table names that are not plain identifiers, which every store and its create script reject.</summary>
    public static TheoryData<string> InvalidTableNames =>
    [
        "x; DROP TABLE y", "orders; DROP TABLE orders", "a\"b", "outbox\"", "a`b", "", "1abc", "1outbox", "caf\u00e9", new string('t', SqlIdentifier.MaxLength + 1),
    ];

    /// <summary>Gets the quoted (and qualified, where needed) name of this test's business table, which the suite creates.</summary>
    protected string BusinessTable => QuoteTable(_businessTable ??= NewTableName("orders"));

    /// <summary>Gets the name of this test's outbox table, the one <see cref="CreateStore()"/> uses.</summary>
    protected virtual string OutboxTable => "outbox_messages";

    /// <summary>Gets the name of the store's options class, which its errors about a bad setting name (<c>SqliteOutboxStoreOptions</c>).</summary>
    protected abstract string OptionsName { get; }

    /// <summary>Gets the name of the constructor parameter that says where the database is (<c>dataSource</c>, <c>connectionString</c>).</summary>
    protected abstract string DatabaseParameterName { get; }

    /// <summary>
    /// Gets the indexes the store gives its table: the suffix of each name (after <c>&lt;table&gt;_</c>) and the definition, as
    /// <see cref="ReadIndexesAsync"/> shows it.
    /// </summary>
    protected abstract IReadOnlyDictionary<string, string> ExpectedIndexes { get; }

    /// <summary>
    /// Gets the suffixes of the <see cref="ExpectedIndexes"/> that creating the table adds to an existing table which lacks them (one
    /// made by hand or by an older script); the tests of that drop these. All of them unless a store says otherwise.
    /// </summary>
    protected virtual IReadOnlyCollection<string> IndexesAddedToAnExistingTable => [.. ExpectedIndexes.Keys];

    /// <summary>
    /// Gets the longest index name the database keeps whole, or <see langword="null"/> where every name is kept whole. A longer one would
    /// be cut (PostgreSQL) or refused (MySQL), so that two indexes of a long table name could end up as one.
    /// </summary>
    protected virtual int? MaxIndexNameLength => SqlIdentifier.MaxLength;

    /// <summary>
    /// Gets the most messages the store writes with one insert statement in <see cref="IOutboxWriter.AddRangeAsync"/>; a longer list
    /// takes several statements or a bulk copy. The tests enqueue lists on both sides of it. The default is 100.
    /// </summary>
    protected virtual int RowsPerInsertStatement => 100;

    /// <summary>Changes <paramref name="message"/> so that the store refuses it before anything reaches the server. The default gives it an option of a type no store can write.</summary>
    protected virtual void MakeUnstorable(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        message.Options["socket"] = new object();
    }

    /// <summary>Creates a store over this test's outbox table; each call returns a new instance on the same table.</summary>
    protected RelationalOutboxStore CreateStore() => CreateStore(OutboxTable);

    /// <summary>Creates a store over the outbox table <paramref name="table"/>, which it creates on first use when missing.</summary>
    protected RelationalOutboxStore CreateStore(string table) => CreateStore(table, createTableIfMissing: true);

    /// <summary>Creates a store over the outbox table <paramref name="table"/> in this test's schema, database or file.</summary>
    protected abstract RelationalOutboxStore CreateStore(string table, bool createTableIfMissing);

    /// <summary>Creates a store with <see langword="null"/> for where the database is, which the constructor must reject.</summary>
    protected abstract RelationalOutboxStore CreateStoreWithoutDatabase();

    /// <summary>Gets the store's create script (its public <c>GetCreateScript</c>) for the outbox table <paramref name="table"/>.</summary>
    protected abstract string CreateScript(string table);

    /// <summary>Gets a table name that this test alone uses, starting with <paramref name="prefix"/>; the test removes the table afterwards.</summary>
    /// <remarks>Where each test has a schema or file of its own, the prefix itself. A database the tests share (MySQL) adds a suffix.</remarks>
    protected virtual string NewTableName(string prefix) => prefix;

    /// <summary>Gets <paramref name="table"/> as SQL writes it, and as the store's errors name it: quoted, and qualified where needed.</summary>
    protected abstract string QuoteTable(string table);

    /// <summary>Gets the statement that drops the index <paramref name="index"/> of <paramref name="table"/>.</summary>
    protected abstract string DropIndexStatement(string table, string index);

    /// <summary>Reads the indexes of <paramref name="table"/>, without its primary key: each name and its definition.</summary>
    protected abstract Task<IReadOnlyDictionary<string, string>> ReadIndexesAsync(string table);

    /// <summary>Reads a time column of the outbox table as the instant the store wrote.</summary>
    protected abstract DateTimeOffset ReadInstant(DbDataReader reader, int ordinal);

    /// <summary>Opens a connection to the store's database.</summary>
    protected abstract Task<DbConnection> OpenConnectionAsync();

    /// <summary>Opens a connection of the same provider to another database on the same server (another file for SQLite).</summary>
    protected abstract Task<DbConnection> OpenConnectionToAnotherDatabaseAsync();

    /// <summary>Prepares the database for this test (a schema or file of its own).</summary>
    public virtual async ValueTask InitializeAsync()
    {
        await using var connection = await OpenConnectionAsync();
        await ExecuteAsync(connection, null, $"CREATE TABLE {BusinessTable} (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)");
    }

    /// <summary>Removes what the test created.</summary>
    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task A_message_enqueued_in_a_committed_transaction_is_claimed_with_every_field()
    {
        var store = CreateStore();
        var message = NewMessage("hello");
        message.Options["exchange.name"] = "orders";
        message.Options["delay_seconds"] = 5;
        message.Options["exchange.durable"] = false;
        message.Options["ratio"] = 0.5;
        message.Options["nothing"] = null;
        message.Headers["tenant"] = "acme";
        message.Headers["nested"] = new Dictionary<string, object?> { ["list"] = new List<object?> { 1, "two", true } };

        await using (var connection = await OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync(Ct))
        {
            var id = await store.AddAsync(transaction, message, Ct);
            Assert.True(id > 0);
            Assert.Equal(id, message.Id);
            await transaction.CommitAsync(Ct);
        }

        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal(message.Id, claimed.Id);
        Assert.Equal(message.MessageId, claimed.MessageId);
        Assert.Equal("hello", Encoding.UTF8.GetString(claimed.Payload));
        Assert.Equal(message.CreatedAt, claimed.CreatedAt);
        Assert.Equal(1, claimed.Attempts);
        Assert.Equal("orders", claimed.Options["exchange.name"]);
        Assert.Equal<object?>(5L, claimed.Options["delay_seconds"]);
        Assert.Equal<object?>(false, claimed.Options["exchange.durable"]);
        Assert.Equal<object?>(0.5, claimed.Options["ratio"]);
        Assert.True(claimed.Options.ContainsKey("nothing"));
        Assert.Null(claimed.Options["nothing"]);
        Assert.Equal("acme", claimed.Headers["tenant"]);
        var nested = Assert.IsType<Dictionary<string, object?>>(claimed.Headers["nested"]);
        Assert.Equal(new List<object?> { 1L, "two", true }, nested["list"]);
    }

    [Fact]
    public async Task A_message_without_options_or_headers_comes_back_with_empty_ones()
    {
        var store = CreateStore();
        await store.AddWithinTransactionAsync(NewMessage("plain"), null, Ct);

        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Empty(claimed.Options);
        Assert.Empty(claimed.Headers);
    }

    [Fact]
    public async Task A_message_enqueued_in_a_rolled_back_transaction_is_never_claimed()
    {
        var store = CreateStore();
        await using (var connection = await OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync(Ct))
        {
            await ExecuteAsync(connection, transaction, $"INSERT INTO {BusinessTable} (id, name) VALUES (1, 'rolled back')");
            await store.AddAsync(transaction, NewMessage("rolled back"), Ct);
            await transaction.RollbackAsync(Ct);
        }

        Assert.Empty(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal(0, await CountBusinessRowsAsync());
    }

    [Fact]
    public async Task Send_within_a_transaction_commits_the_callers_rows_and_the_message_together()
    {
        var store = CreateStore();
        var id = await store.AddWithinTransactionAsync(NewMessage("with work"), (tx, ct) => ExecuteAsync(tx.Connection!, tx, $"INSERT INTO {BusinessTable} (id, name) VALUES (7, 'seven')"), Ct);

        Assert.Equal(1, await CountBusinessRowsAsync());
        Assert.Equal(id, Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
    }

    [Fact]
    public async Task Send_within_a_transaction_rolls_back_and_rethrows_when_the_callback_throws()
    {
        var store = CreateStore();
        var thrown = new InvalidOperationException("business rule broken");

        var caught = await Assert.ThrowsAsync<InvalidOperationException>(() => store.AddWithinTransactionAsync(
            NewMessage("never"),
            async (tx, ct) =>
            {
                await ExecuteAsync(tx.Connection!, tx, $"INSERT INTO {BusinessTable} (id, name) VALUES (8, 'eight')");
                throw thrown;
            },
            Ct));

        Assert.Same(thrown, caught);
        Assert.Equal(0, await CountBusinessRowsAsync());
        Assert.Empty(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task Claims_return_the_oldest_messages_first_in_batches()
    {
        var store = CreateStore();
        var ids = new List<long>();
        for (var i = 0; i < 7; i++)
        {
            ids.Add(await store.AddWithinTransactionAsync(NewMessage($"m{i}"), null, Ct));
        }

        var first = await store.ClaimAsync(3, T0, T0.AddSeconds(30), Ct);
        var second = await store.ClaimAsync(3, T0, T0.AddSeconds(30), Ct);
        var third = await store.ClaimAsync(3, T0, T0.AddSeconds(30), Ct);

        Assert.Equal(ids[..3], first.Select(m => m.Id));
        Assert.Equal(ids[3..6], second.Select(m => m.Id));
        Assert.Equal(ids[6..], third.Select(m => m.Id));
    }

    [Fact]
    public async Task A_claimed_message_is_claimed_again_only_after_its_lease_ends()
    {
        var store = CreateStore();
        await store.AddWithinTransactionAsync(NewMessage("leased"), null, Ct);

        Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Empty(await store.ClaimAsync(10, T0.AddSeconds(29), T0.AddSeconds(59), Ct));
        var again = Assert.Single(await store.ClaimAsync(10, T0.AddSeconds(30), T0.AddSeconds(60), Ct));
        Assert.Equal(2, again.Attempts);
    }

    [Fact]
    public async Task Concurrent_claims_never_return_the_same_message_twice()
    {
        var stores = Enumerable.Range(0, 4).Select(_ => CreateStore()).ToArray();
        for (var i = 0; i < 200; i++)
        {
            await stores[0].AddWithinTransactionAsync(NewMessage($"m{i}"), null, Ct);
        }

        var claims = await Task.WhenAll(stores.Select(async store =>
        {
            var mine = new List<long>();
            IReadOnlyList<OutboxMessage> batch;
            while ((batch = await store.ClaimAsync(7, T0, T0.AddSeconds(30), Ct)).Count > 0)
            {
                mine.AddRange(batch.Select(m => m.Id));
            }

            return mine;
        }));

        var all = claims.SelectMany(c => c).ToList();
        Assert.Equal(200, all.Count);
        Assert.Equal(200, all.Distinct().Count());
    }

    [Fact]
    public async Task A_claim_whose_lease_ran_out_and_whose_row_was_claimed_again_can_no_longer_mark_release_or_dead_letter_it()
    {
        var store = CreateStore();
        await store.AddWithinTransactionAsync(NewMessage("stalled"), null, Ct);
        var stale = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        var current = Assert.Single(await store.ClaimAsync(10, T0.AddSeconds(31), T0.AddSeconds(61), Ct));

        Assert.NotEqual(0, stale.LeaseToken);
        Assert.NotEqual(stale.LeaseToken, current.LeaseToken);
        Assert.Equal(0, await store.MarkDispatchedAsync([stale.Id], stale.LeaseToken, T0.AddSeconds(32), Ct));
        Assert.False(await store.ReleaseAsync(stale.Id, stale.LeaseToken, T0.AddHours(1), "late", cancellationToken: Ct));
        Assert.False(await store.DeadLetterAsync(stale.Id, stale.LeaseToken, T0.AddSeconds(32), "late", Ct));
        Assert.Empty(await store.GetDeadLettersAsync(10, 0, Ct));

        Assert.Equal(1, await store.MarkDispatchedAsync([current.Id], current.LeaseToken, T0.AddSeconds(33), Ct));
        Assert.Empty(await store.ClaimAsync(10, T0.AddHours(2), T0.AddHours(3), Ct));
    }

    [Fact]
    public async Task A_claim_whose_lease_ran_out_still_settles_its_rows_while_no_other_claim_took_them()
    {
        var store = CreateStore();
        await store.AddWithinTransactionAsync(NewMessage("slow but alone"), null, Ct);
        await store.AddWithinTransactionAsync(NewMessage("failed"), null, Ct);
        var batch = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);

        Assert.Equal(1, await store.MarkDispatchedAsync([batch[0].Id], batch[0].LeaseToken, T0.AddMinutes(5), Ct));
        Assert.True(await store.ReleaseAsync(batch[1].Id, batch[1].LeaseToken, T0.AddMinutes(6), "broker down", cancellationToken: Ct));
        Assert.Equal(batch[1].Id, Assert.Single(await store.ClaimAsync(10, T0.AddMinutes(6), T0.AddMinutes(7), Ct)).Id);
    }

    [Fact]
    public async Task A_message_written_already_claimed_is_left_to_its_claim_until_the_lease_ends_and_is_marked_with_its_token()
    {
        var store = CreateStore();
        var message = NewMessage("sent after commit");

        var id = await store.AddLeasedWithinTransactionAsync(message, null, T0, T0.AddSeconds(30), 42, Ct);

        Assert.Equal(42, message.LeaseToken);
        Assert.Equal(1, message.Attempts);
        Assert.Empty(await store.ClaimAsync(10, T0.AddSeconds(29), T0.AddSeconds(59), Ct));
        Assert.Equal(1, await store.MarkDispatchedAsync([id], 42, T0.AddSeconds(1), Ct));
        Assert.Empty(await store.ClaimAsync(10, T0.AddHours(1), T0.AddHours(2), Ct));
    }

    [Fact]
    public async Task A_message_written_already_claimed_by_a_process_that_died_is_claimed_after_the_lease_with_its_attempt_counted()
    {
        var store = CreateStore();
        var id = await store.AddLeasedWithinTransactionAsync(NewMessage("the sender died"), null, T0, T0.AddSeconds(30), 42, Ct);

        var claimed = Assert.Single(await store.ClaimAsync(10, T0.AddSeconds(30), T0.AddSeconds(60), Ct));

        Assert.Equal(id, claimed.Id);
        Assert.Equal(2, claimed.Attempts);
        Assert.Equal(0, await store.MarkDispatchedAsync([id], 42, T0.AddSeconds(31), Ct));
    }

    [Fact]
    public async Task Many_messages_written_already_claimed_in_the_callers_transaction_get_ids_and_wait_for_their_lease_beyond_the_statement_limit()
    {
        var store = CreateStore();
        var messages = Enumerable.Range(0, RowsPerInsertStatement + 3).Select(i => NewMessage($"leased {i}")).ToList();
        await using (var connection = await OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync(Ct))
        {
            Assert.Equal(messages.Count, await store.AddLeasedRangeAsync(transaction, messages, T0, T0.AddSeconds(30), 42, Ct));
            await transaction.CommitAsync(Ct);
        }

        // Marked by id with the token, so every id is there, even where a long list of pending rows would go by bulk copy.
        Assert.All(messages, m => Assert.True(m.Id > 0 && m.LeaseToken == 42 && m.Attempts == 1));
        Assert.Equal(messages.Count, messages.Select(m => m.Id).Distinct().Count());
        Assert.Empty(await store.ClaimAsync(500, T0.AddSeconds(29), T0.AddSeconds(59), Ct));
        Assert.Equal(messages.Count - 1, await store.MarkDispatchedAsync([.. messages.Skip(1).Select(m => m.Id)], 42, T0.AddSeconds(1), Ct));
        var late = Assert.Single(await store.ClaimAsync(500, T0.AddSeconds(30), T0.AddSeconds(60), Ct));
        Assert.Equal((messages[0].Id, messages[0].MessageId, 2), (late.Id, late.MessageId, late.Attempts));
    }

    [Fact]
    public async Task A_message_written_already_claimed_in_a_transaction_that_rolls_back_is_not_written()
    {
        var store = CreateStore();

        await Assert.ThrowsAsync<InvalidOperationException>(() => store.AddLeasedWithinTransactionAsync(
            NewMessage("rolled back"), (_, _) => throw new InvalidOperationException("the work failed"), T0, T0.AddSeconds(30), 42, Ct));

        Assert.Empty(await store.ClaimAsync(10, T0.AddHours(1), T0.AddHours(2), Ct));
    }

    [Fact]
    public async Task A_message_marked_dispatched_is_not_claimed_again()
    {
        var store = CreateStore();
        await store.AddWithinTransactionAsync(NewMessage("a"), null, Ct);
        await store.AddWithinTransactionAsync(NewMessage("b"), null, Ct);
        var batch = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);

        await store.MarkDispatchedAsync([batch[0].Id], batch[0].LeaseToken, T0.AddSeconds(1), Ct);

        var later = T0.AddMinutes(5);
        Assert.Equal(batch[1].Id, Assert.Single(await store.ClaimAsync(10, later, later.AddSeconds(30), Ct)).Id);
    }

    [Fact]
    public async Task A_released_message_is_claimed_again_from_its_retry_time()
    {
        var store = CreateStore();
        await store.AddWithinTransactionAsync(NewMessage("flaky"), null, Ct);
        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));

        await store.ReleaseAsync(claimed.Id, claimed.LeaseToken, T0.AddSeconds(5), "broker down", cancellationToken: Ct);

        Assert.Empty(await store.ClaimAsync(10, T0.AddSeconds(4), T0.AddSeconds(34), Ct));
        Assert.Single(await store.ClaimAsync(10, T0.AddSeconds(5), T0.AddSeconds(35), Ct));
    }

    [Fact]
    public async Task Remove_deletes_only_messages_dispatched_before_the_cutoff_at_most_a_batch_at_a_time()
    {
        var store = CreateStore();
        for (var i = 0; i < 5; i++)
        {
            await store.AddWithinTransactionAsync(NewMessage($"m{i}"), null, Ct);
        }

        var batch = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);
        await store.MarkDispatchedAsync(batch.Take(3).Select(m => m.Id).ToList(), batch[0].LeaseToken, T0, Ct);
        await store.MarkDispatchedAsync([batch[3].Id], batch[3].LeaseToken, T0.AddDays(1), Ct);

        Assert.Equal(2, await store.RemoveDispatchedAsync(T0.AddHours(1), 2, Ct));
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddHours(1), 2, Ct));
        Assert.Equal(0, await store.RemoveDispatchedAsync(T0.AddHours(1), 2, Ct));
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddDays(2), 2, Ct));

        // The pending message is never removed, whatever the cutoff.
        Assert.Equal(0, await store.RemoveDispatchedAsync(T0.AddYears(1), 100, Ct));
        var pending = Assert.Single(await store.ClaimAsync(10, T0.AddHours(1), T0.AddHours(2), Ct));
        Assert.Equal(batch[4].Id, pending.Id);
    }

    [Fact]
    public async Task Enqueue_into_a_committed_transaction_throws_and_writes_nothing()
    {
        var store = CreateStore();
        await using var connection = await OpenConnectionAsync();
        var transaction = await connection.BeginTransactionAsync(Ct);
        await transaction.CommitAsync(Ct);

        var ex = await Assert.ThrowsAsync<ArgumentException>(async () => await store.AddAsync(transaction, NewMessage("late"), Ct));
        Assert.Equal("transaction", ex.ParamName);
        Assert.Empty(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task Enqueue_into_a_transaction_on_another_database_throws_naming_both_and_writes_nothing()
    {
        var store = CreateStore();
        await store.MigrateAsync(Ct);
        await using var connection = await OpenConnectionToAnotherDatabaseAsync();
        await using var transaction = await connection.BeginTransactionAsync(Ct);

        var ex = await Assert.ThrowsAsync<ArgumentException>(async () => await store.AddAsync(transaction, NewMessage("elsewhere"), Ct));
        Assert.Equal("transaction", ex.ParamName);
        Assert.Contains("is on the database", ex.Message, StringComparison.Ordinal);
        Assert.Contains(store.TableDisplayName, ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.AddRangeAsync(transaction, [NewMessage("elsewhere")], Ct));
        await transaction.CommitAsync(Ct);
        Assert.Empty(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task A_value_that_cannot_be_stored_is_rejected_with_its_key_and_nothing_is_written()
    {
        var store = CreateStore();
        var message = NewMessage("bad");
        message.Headers["stream"] = new MemoryStream();

        var ex = await Assert.ThrowsAsync<ArgumentException>(() => store.AddWithinTransactionAsync(message, null, Ct));
        Assert.Contains("'stream'", ex.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(MemoryStream), ex.Message, StringComparison.Ordinal);
        Assert.Empty(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task An_outbox_publishes_exactly_the_committed_messages_once()
    {
        var store = CreateStore();
        var publisher = new RecordingPublisher();
        var time = new FakeTimeProvider(T0);
        await using var outbox = new Outbox(store, publisher, timeProvider: time);
        var committed = new List<Guid>();
        for (var i = 0; i < 30; i++)
        {
            await using var connection = await OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync(Ct);
            var message = NewMessage($"order {i}");
            await ExecuteAsync(connection, transaction, $"INSERT INTO {BusinessTable} (id, name) VALUES ({i}, 'order {i}')");
            await outbox.EnqueueAsync(transaction, message, Ct);
            if (i % 3 == 0)
            {
                await transaction.RollbackAsync(Ct);
            }
            else
            {
                await transaction.CommitAsync(Ct);
                committed.Add(message.MessageId);
            }
        }

        Assert.Equal(20, await outbox.DispatchPendingAsync(Ct));
        Assert.Equal(committed.Order(), publisher.Published.Select(m => m.MessageId).Order());
        Assert.Equal(0, await outbox.DispatchPendingAsync(Ct));
        Assert.Equal(20, await CountBusinessRowsAsync());
    }

    [Fact]
    public async Task Two_outboxes_on_one_table_publish_each_message_once()
    {
        var publisher = new RecordingPublisher();
        var time = new FakeTimeProvider(T0);
        await using var first = new Outbox(CreateStore(), publisher, new OutboxOptions { MessageBatchSize = 5 }, timeProvider: time);
        await using var second = new Outbox(CreateStore(), publisher, new OutboxOptions { MessageBatchSize = 5 }, timeProvider: time);
        for (var i = 0; i < 100; i++)
        {
            await first.SendAsync(NewMessage($"m{i}"), Ct);
        }

        var counts = await Task.WhenAll(first.DispatchPendingAsync(Ct), second.DispatchPendingAsync(Ct));

        Assert.Equal(100, counts.Sum());
        Assert.Equal(100, publisher.Published.Select(m => m.Id).Distinct().Count());
        Assert.Equal(100, publisher.Published.Count);
    }

    [Fact]
    public async Task Many_messages_enqueued_at_once_commit_and_roll_back_with_the_transaction()
    {
        var store = CreateStore();
        var publisher = new RecordingPublisher();
        await using var outbox = new Outbox(store, publisher, new OutboxOptions { MessageBatchSize = 500 }, timeProvider: new FakeTimeProvider(T0));
        var committed = Enumerable.Range(0, 1000).Select(i =>
        {
            var message = new OutboxMessage($"bulk {i}");
            message.Headers["index"] = i;
            return message;
        }).ToList();

        foreach (var (messages, commit) in new[] { (committed, true), (Enumerable.Range(0, 10).Select(i => new OutboxMessage($"undone {i}")).ToList(), false) })
        {
            await using var connection = await OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync(Ct);
            Assert.Equal(messages.Count, await outbox.EnqueueManyAsync(transaction, messages, Ct));
            if (commit)
            {
                await transaction.CommitAsync(Ct);
            }
            else
            {
                await transaction.RollbackAsync(Ct);
            }
        }

        Assert.Equal(1000, await outbox.DispatchPendingAsync(Ct));
        var published = publisher.Published.OrderBy(m => m.Id).ToList();
        Assert.Equal(committed.Select(m => m.MessageId), published.Select(m => m.MessageId));
        Assert.Equal(999L, published[^1].Headers["index"]);
    }

    [Fact]
    public async Task A_bad_message_among_many_is_rejected_before_any_is_written()
    {
        var store = CreateStore();
        await using var outbox = new Outbox(store, new RecordingPublisher(), timeProvider: new FakeTimeProvider(T0));
        var bad = new OutboxMessage("bad");
        bad.Options["socket"] = new object();

        await using (var connection = await OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync(Ct))
        {
            await Assert.ThrowsAsync<ArgumentException>(async () => await outbox.EnqueueManyAsync(transaction, [new OutboxMessage("good"), bad], Ct));
            await Assert.ThrowsAsync<ArgumentException>(async () => await outbox.EnqueueManyAsync(transaction, [new OutboxMessage("good"), null!], Ct));
            await transaction.CommitAsync(Ct);
        }

        Assert.Empty(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
    }

    [Fact]
    public async Task Many_messages_enqueued_at_once_get_their_ids_in_list_order_on_both_sides_of_the_statement_limit()
    {
        var store = CreateStore();
        await using var outbox = new Outbox(store, new RecordingPublisher(), timeProvider: new FakeTimeProvider(T0));
        foreach (var size in new[] { 1, 7, RowsPerInsertStatement, RowsPerInsertStatement + 1 })
        {
            var messages = Enumerable.Range(0, size).Select(i => new OutboxMessage($"{size}/{i}")).ToList();
            messages[^1].Headers["last"] = true;
            await using (var connection = await OpenConnectionAsync())
            await using (var transaction = await connection.BeginTransactionAsync(Ct))
            {
                Assert.Equal(size, await outbox.EnqueueManyAsync(transaction, messages, Ct));
                await transaction.CommitAsync(Ct);
            }

            // Up to the limit every store fills the ids; above it a bulk copy may leave them all zero, but never some.
            var filled = size <= RowsPerInsertStatement || messages[0].Id != 0;
            var claimed = await store.ClaimAsync(size + 10, T0, T0.AddSeconds(30), Ct);
            Assert.Equal(messages.Select(m => m.MessageId), claimed.Select(m => m.MessageId));
            Assert.Equal(true, claimed[^1].Headers["last"]);
            Assert.Equal(filled ? claimed.Select(m => m.Id) : Enumerable.Repeat(0L, size), messages.Select(m => m.Id));
            Assert.Equal(size, await store.MarkDispatchedAsync([.. claimed.Select(m => m.Id)], claimed[0].LeaseToken, T0, Ct));
        }
    }

    [Fact]
    public async Task An_unstorable_seventh_message_rejects_the_whole_list_before_the_server_and_the_transaction_goes_on()
    {
        var store = CreateStore();
        await using var outbox = new Outbox(store, new RecordingPublisher(), timeProvider: new FakeTimeProvider(T0));
        var messages = Enumerable.Range(0, 10).Select(i => new OutboxMessage($"m{i}")).ToList();
        MakeUnstorable(messages[6]);
        var good = new OutboxMessage("after the refusal");

        await using (var connection = await OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync(Ct))
        {
            await ExecuteAsync(connection, transaction, $"INSERT INTO {BusinessTable} (id, name) VALUES (1, 'kept')");
            await Assert.ThrowsAsync<ArgumentException>(async () => await outbox.EnqueueManyAsync(transaction, messages, Ct));
            Assert.All(messages, m => Assert.Equal(0, m.Id));

            // The refusal reached no server: the transaction still works and commits everything else.
            Assert.Equal(1, await outbox.EnqueueManyAsync(transaction, [good], Ct));
            await transaction.CommitAsync(Ct);
        }

        Assert.Equal([good.MessageId], (await store.ClaimAsync(20, T0, T0.AddSeconds(30), Ct)).Select(m => m.MessageId));
        Assert.Equal(1L, await CountBusinessRowsAsync());
    }

    [Fact]
    public async Task Only_the_oldest_pending_message_of_each_ordering_key_is_claimable()
    {
        var store = CreateStore();
        var ids = new Dictionary<string, long>();
        foreach (var (name, key) in new[] { ("a1", "a"), ("b1", "b"), ("a2", "a"), ("n1", null), ("b2", "b"), ("a3", "a"), ("n2", null) })
        {
            var message = NewMessage(name);
            message.OrderingKey = key;
            ids[name] = await store.AddWithinTransactionAsync(message, null, Ct);
        }

        var first = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);
        Assert.Equal([ids["a1"], ids["b1"], ids["n1"], ids["n2"]], first.Select(m => m.Id));
        Assert.Equal("a", first[0].OrderingKey);
        Assert.Null(first[2].OrderingKey);

        // While a key's head is leased (or waiting for a retry), nothing behind it is claimable, by this claimer or another.
        Assert.Empty(await CreateStore().ClaimAsync(10, T0, T0.AddSeconds(30), Ct));

        await store.MarkDispatchedAsync([ids["a1"], ids["n1"], ids["n2"]], first[0].LeaseToken, T0, Ct);
        await store.ReleaseAsync(ids["b1"], first[0].LeaseToken, T0.AddMinutes(1), "b1 failed", cancellationToken: Ct);
        Assert.Equal([ids["a2"]], (await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Select(m => m.Id));

        // A dead-lettered head no longer holds its key back.
        await store.DeadLetterAsync(ids["b1"], first[0].LeaseToken, T0, "b1 gave up", Ct);
        Assert.Equal([ids["b2"]], (await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Select(m => m.Id));
    }

    [Fact]
    public async Task A_late_commit_of_an_older_message_waits_while_a_newer_message_of_its_key_is_in_flight_or_failing()
    {
        var store = CreateStore();
        var older = NewMessage("older, committed late");
        older.OrderingKey = "k";
        var newer = NewMessage("newer, committed first");
        newer.OrderingKey = "k";

        // A late commit gives the older message (smaller id) a row only after the newer one was claimed. The same state, without
        // racing transactions (which SQLite, with one writer at a time, cannot have), through the store's own operations: the older
        // row is set aside as a dead letter while the newer one is claimed, then requeued.
        await store.AddWithinTransactionAsync(older, null, Ct);
        await store.AddWithinTransactionAsync(newer, null, Ct);
        var setAside = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.True(await store.DeadLetterAsync(older.Id, setAside.LeaseToken, T0, "set aside", Ct));
        var held = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal(newer.Id, held.Id);
        Assert.Equal(1, await store.RequeueDeadLettersAsync([older.Id], Ct));

        // The newer message is leased, then waits for a retry: either way its key is busy, so the older one waits too.
        Assert.Empty(await store.ClaimAsync(10, T0.AddSeconds(1), T0.AddSeconds(31), Ct));
        Assert.True(await store.ReleaseAsync(newer.Id, held.LeaseToken, T0.AddMinutes(1), "failed", cancellationToken: Ct));
        Assert.Empty(await store.ClaimAsync(10, T0.AddSeconds(40), T0.AddSeconds(70), Ct));

        Assert.Equal(1, await store.MarkDispatchedAsync([newer.Id], held.LeaseToken, T0.AddMinutes(2), Ct));
        Assert.Equal(older.Id, Assert.Single(await store.ClaimAsync(10, T0.AddMinutes(2), T0.AddMinutes(3), Ct)).Id);
    }

    [Fact]
    public async Task Dead_letters_are_kept_out_of_claims_listed_with_their_error_requeued_and_purged()
    {
        var store = CreateStore();
        var ids = new List<long>();
        for (var i = 0; i < 4; i++)
        {
            var message = NewMessage($"m{i}");
            message.OrderingKey = $"key{i}";
            ids.Add(await store.AddWithinTransactionAsync(message, null, Ct));
        }

        var claimed = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);
        Assert.Equal(4, claimed.Count);
        foreach (var id in ids.Take(3))
        {
            await store.DeadLetterAsync(id, claimed[0].LeaseToken, T0.AddSeconds(1), $"unroutable {id}", Ct);
        }

        var later = T0.AddHours(1);
        Assert.Equal([ids[3]], (await store.ClaimAsync(10, later, later.AddSeconds(30), Ct)).Select(m => m.Id));

        var dead = await store.GetDeadLettersAsync(10, 0, Ct);
        Assert.Equal(ids.Take(3), dead.Select(m => m.Id));
        Assert.Equal($"unroutable {ids[0]}", dead[0].LastError);
        Assert.Equal(T0.AddSeconds(1), dead[0].DeadLetteredAt);
        Assert.Equal("key0", dead[0].OrderingKey);
        Assert.Equal("m0", Encoding.UTF8.GetString(dead[0].Payload));
        Assert.Equal([ids[1], ids[2]], (await store.GetDeadLettersAsync(5, ids[0], Ct)).Select(m => m.Id));
        Assert.Equal([ids[0]], (await store.GetDeadLettersAsync(1, 0, Ct)).Select(m => m.Id));

        Assert.Equal(1, await store.RequeueDeadLettersAsync([ids[0], ids[3]], Ct));
        var requeued = Assert.Single(await store.ClaimAsync(10, later, later.AddSeconds(30), Ct));
        Assert.Equal(ids[0], requeued.Id);
        Assert.Equal(1, requeued.Attempts);

        Assert.Equal(1, await store.PurgeDeadLettersAsync([ids[1]], Ct));
        Assert.Equal([ids[2]], (await store.GetDeadLettersAsync(10, 0, Ct)).Select(m => m.Id));
        Assert.Equal(1, await store.PurgeDeadLettersAsync(null, Ct));
        Assert.Empty(await store.GetDeadLettersAsync(10, 0, Ct));
        Assert.Equal(0, await store.RequeueDeadLettersAsync(null, Ct));
    }

    [Fact]
    public async Task A_dead_letter_whose_earlier_attempt_had_an_unknown_outcome_says_it_may_have_been_published()
    {
        var store = CreateStore();
        var uncertainId = await store.AddWithinTransactionAsync(NewMessage("uncertain"), null, Ct);
        var knownId = await store.AddWithinTransactionAsync(NewMessage("known"), null, Ct);

        // First attempt: no confirm came for the one, a definite refusal for the other.
        var first = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);
        Assert.True(await store.ReleaseAsync(uncertainId, first[0].LeaseToken, T0.AddSeconds(1), "no confirm", outcomeUnknown: true, Ct));
        Assert.True(await store.ReleaseAsync(knownId, first[0].LeaseToken, T0.AddSeconds(1), "nacked", outcomeUnknown: false, Ct));

        // Second attempt: both fail for sure, and both become dead letters.
        var later = T0.AddMinutes(1);
        var second = await store.ClaimAsync(10, later, later.AddSeconds(30), Ct);
        Assert.Equal(2, second.Count);
        Assert.True(await store.DeadLetterAsync(uncertainId, second[0].LeaseToken, later, "exchange deleted", Ct));
        Assert.True(await store.DeadLetterAsync(knownId, second[0].LeaseToken, later, "exchange deleted", Ct));

        var dead = (await store.GetDeadLettersAsync(10, 0, Ct)).ToDictionary(m => m.Id);
        Assert.Equal(1, dead[uncertainId].UncertainAttempts);
        Assert.Equal(0, dead[knownId].UncertainAttempts);
        Assert.Equal(1, (await store.GetMessageAsync(uncertainId, Ct))!.UncertainAttempts);
        Assert.Equal(0, (await store.GetMessageAsync(knownId, Ct))!.UncertainAttempts);
    }

    [Fact]
    public async Task Statistics_count_pending_in_flight_and_dead_letters_and_find_the_oldest_pending_message()
    {
        var store = CreateStore();
        Assert.Equal(new OutboxStatistics(0, 0, 0, null, T0), await store.GetStatisticsAsync(T0, Ct));
        var ids = new List<long>();
        for (var i = 0; i < 4; i++)
        {
            var message = NewMessage($"m{i}");
            message.CreatedAt = T0.AddMinutes(i);
            ids.Add(await store.AddWithinTransactionAsync(message, null, Ct));
        }

        var token = (await store.ClaimAsync(3, T0, T0.AddSeconds(30), Ct))[0].LeaseToken;
        await store.MarkDispatchedAsync([ids[0]], token, T0, Ct);
        await store.DeadLetterAsync(ids[1], token, T0, "gave up", Ct);

        var statistics = await store.GetStatisticsAsync(T0.AddSeconds(10), Ct);

        Assert.Equal(2, statistics.Pending);
        Assert.Equal(1, statistics.InFlight);
        Assert.Equal(1, statistics.DeadLettered);
        Assert.Equal(T0.AddMinutes(2), statistics.OldestPendingCreatedAt);
        Assert.Equal(TimeSpan.Zero, statistics.Lag);

        var later = await store.GetStatisticsAsync(T0.AddMinutes(5), Ct);
        Assert.Equal(0, later.InFlight);
        Assert.Equal(TimeSpan.FromMinutes(3), later.Lag);
    }

    [Fact]
    public async Task A_message_is_found_by_id_or_message_id_in_every_state_and_retrying_and_dispatched_messages_are_counted()
    {
        var store = CreateStore();
        var messages = new List<OutboxMessage>();
        for (var i = 0; i < 4; i++)
        {
            var message = NewMessage($"m{i}");
            message.CreatedAt = T0.AddMinutes(i);
            message.Headers["k"] = $"v{i}";
            message.Destination = "orders";
            await store.AddWithinTransactionAsync(message, null, Ct);
            messages.Add(message);
        }

        var token = (await store.ClaimAsync(4, T0, T0.AddSeconds(30), Ct))[0].LeaseToken;
        await store.MarkDispatchedAsync([messages[0].Id], token, T0.AddSeconds(1), Ct);
        await store.DeadLetterAsync(messages[1].Id, token, T0.AddSeconds(2), "gave up", Ct);
        await store.ReleaseAsync(messages[2].Id, token, T0.AddMinutes(1), "broker down", cancellationToken: Ct);

        var dispatched = await store.GetMessageAsync(messages[0].Id, Ct);
        Assert.NotNull(dispatched);
        Assert.True(dispatched.Dispatched);
        Assert.Equal(T0.AddSeconds(1), dispatched.DispatchedAt);
        Assert.Equal("m0", System.Text.Encoding.UTF8.GetString(dispatched.Payload));
        Assert.Equal("v0", dispatched.Headers["k"]);
        Assert.Equal("orders", dispatched.Destination);

        var dead = await store.GetMessageByMessageIdAsync(messages[1].MessageId, Ct);
        Assert.NotNull(dead);
        Assert.Equal(messages[1].Id, dead.Id);
        Assert.False(dead.Dispatched);
        Assert.Null(dead.DispatchedAt);
        Assert.Equal(T0.AddSeconds(2), dead.DeadLetteredAt);
        Assert.Equal("gave up", dead.LastError);

        var retrying = await store.GetMessageByMessageIdAsync(messages[2].MessageId, Ct);
        Assert.Equal("broker down", retrying?.LastError);
        Assert.Null(retrying?.DeadLetteredAt);
        Assert.Equal(1, retrying?.Attempts);

        Assert.Null(await store.GetMessageAsync(messages[3].Id + 1000, Ct));
        Assert.Null(await store.GetMessageByMessageIdAsync(Guid.NewGuid(), Ct));
        Assert.Equal(1, await store.CountRetryingAsync(Ct));
        Assert.Equal(1, await store.CountDispatchedSinceAsync(T0, Ct));
        Assert.Equal(0, await store.CountDispatchedSinceAsync(T0.AddSeconds(1), Ct));
    }

    [Fact]
    public async Task Statistics_per_destination_count_pending_and_dead_letters_by_the_destination_recorded_at_enqueue()
    {
        var store = CreateStore();
        var ids = new List<long>();
        foreach (var destination in new[] { "orders", "orders", "billing", "direct-queue", null, "orders" })
        {
            var message = NewMessage(destination ?? "none");
            message.Destination = destination;
            ids.Add(await store.AddWithinTransactionAsync(message, null, Ct));
        }

        var claimed = await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct);
        Assert.Equal(["orders", "orders", "billing", "direct-queue", null, "orders"], claimed.Select(m => m.Destination));
        await store.DeadLetterAsync(ids[1], claimed[1].LeaseToken, T0, "gave up", Ct);
        await store.MarkDispatchedAsync([ids[5]], claimed[5].LeaseToken, T0, Ct);

        var statistics = await store.GetDestinationStatisticsAsync(Ct);

        Assert.Equal([null, "billing", "direct-queue", "orders"], statistics.Select(d => d.Destination));
        Assert.Equal([1L, 1L, 1L, 1L], statistics.Select(d => d.Pending));
        Assert.Equal([0L, 0L, 0L, 1L], statistics.Select(d => d.DeadLettered));
        Assert.NotNull(statistics[3].OldestPendingCreatedAt);
        Assert.Equal("orders", Assert.Single(await store.GetDeadLettersAsync(10, 0, Ct)).Destination);
    }

    [Fact]
    public void A_null_data_source_or_connection_string_is_rejected()
    {
        var ex = Assert.Throws<ArgumentNullException>(CreateStoreWithoutDatabase);
        Assert.Equal(DatabaseParameterName, ex.ParamName);
    }

    [Theory]
    [MemberData(nameof(InvalidTableNames))]
    public void A_table_name_that_is_not_a_plain_identifier_is_rejected_by_option_name(string name)
    {
        var ex = Assert.Throws<ArgumentException>(() => CreateStore(name));
        Assert.Equal($"{OptionsName}.TableName", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => CreateScript(name));
        Assert.Equal($"{OptionsName}.TableName", ex.ParamName);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Ten_stores_creating_the_table_at_once_on_a_fresh_table_all_succeed(bool tableWithoutIndexes)
    {
        // Three rounds: one race does not always interleave the creators badly enough to show a missing lock. Without one, PostgreSQL's
        // CREATE TABLE IF NOT EXISTS collides with itself, and MySQL's ALTERs that add missing indexes to an existing table do.
        for (var round = 0; round < 3; round++)
        {
            var table = NewTableName($"fresh{round}");
            if (tableWithoutIndexes)
            {
                await using var connection = await OpenConnectionAsync();
                await ExecuteAsync(connection, null, CreateScript(table));
                await DropIndexesAsync(table);
            }

            await TenStoresCreateAtOnceAsync(() => CreateStore(table), () => ReadIndexesAsync(table), table);
        }
    }

    [Fact]
    public async Task A_missing_index_is_added_to_an_existing_table_and_its_rows_are_kept()
    {
        var store = CreateStore();
        var id = await store.AddWithinTransactionAsync(NewMessage("kept"), null, Ct);
        await DropIndexesAsync(OutboxTable);
        Assert.Equal(ExpectedIndexes.Count - IndexesAddedToAnExistingTable.Count, (await ReadIndexesAsync(OutboxTable)).Count);

        await CreateStore().MigrateAsync(Ct);

        AssertHasItsIndexes(OutboxTable, await ReadIndexesAsync(OutboxTable));
        Assert.Equal(id, Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
    }

    [Fact]
    public async Task Two_stores_with_different_tables_both_work_and_each_has_its_own_indexes()
    {
        var a = NewTableName("outbox_a");
        var b = NewTableName("outbox_b");
        var first = CreateStore(a);
        var second = CreateStore(b);

        var idA = await first.AddWithinTransactionAsync(NewMessage("a"), null, Ct);
        var idB = await second.AddWithinTransactionAsync(NewMessage("b"), null, Ct);

        Assert.Equal("a", Encoding.UTF8.GetString(Assert.Single(await first.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Payload));
        Assert.Equal("b", Encoding.UTF8.GetString(Assert.Single(await second.ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Payload));
        Assert.Equal(1, idA);
        Assert.Equal(1, idB);
        AssertHasItsIndexes(a, await ReadIndexesAsync(a));
        AssertHasItsIndexes(b, await ReadIndexesAsync(b));
    }

    [Fact]
    public async Task A_table_name_of_the_longest_allowed_length_still_gets_distinct_indexes()
    {
        var table = NewTableName("long").PadRight(SqlIdentifier.MaxLength, 't');
        await CreateStore(table).MigrateAsync(Ct);

        var indexes = await ReadIndexesAsync(table);
        Assert.Equal(ExpectedIndexes.Count, indexes.Count);
        if (MaxIndexNameLength is { } max)
        {
            Assert.All(indexes.Keys, name => Assert.True(name.Length <= max, name));
        }

        foreach (var (suffix, definition) in ExpectedIndexes)
        {
            Assert.Single(indexes, i => i.Key.EndsWith("_" + suffix, StringComparison.Ordinal) && i.Value == definition);
        }

        // Running the check again finds everything in place instead of creating anything.
        await CreateStore(table).MigrateAsync(Ct);
        Assert.Equal(ExpectedIndexes.Count, (await ReadIndexesAsync(table)).Count);
    }

    [Fact]
    public async Task The_create_script_applied_by_hand_makes_a_table_that_a_store_which_creates_nothing_uses()
    {
        var table = NewTableName("managed");
        await using (var connection = await OpenConnectionAsync())
        {
            // Once, as migrations run: not every database can write the script's later steps to be safe to run again.
            await ExecuteAsync(connection, null, CreateScript(table));
        }

        var store = CreateStore(table, createTableIfMissing: false);
        var id = await store.AddWithinTransactionAsync(NewMessage("managed"), null, Ct);
        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Equal(id, claimed.Id);
        await store.MarkDispatchedAsync([id], claimed.LeaseToken, T0, Ct);
        Assert.Equal(1, await store.RemoveDispatchedAsync(T0.AddDays(1), 10, Ct));
    }

    [Fact]
    public async Task A_store_that_creates_nothing_fails_on_a_missing_table_with_an_error_naming_it()
    {
        var table = NewTableName("missing");
        var store = CreateStore(table, createTableIfMissing: false);

        var ex = await Assert.ThrowsAsync<OutboxException>(() => store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));
        Assert.Contains($"{QuoteTable(table)} does not exist", ex.Message, StringComparison.Ordinal);
        Assert.Contains("outboxer schema migrate", ex.Message, StringComparison.Ordinal);
        Assert.False(ex.IsTransient);
        Assert.False((await store.GetSchemaStatusAsync(Ct)).Exists);
    }

    [Fact]
    public async Task Creating_the_table_again_does_not_wait_for_an_open_transaction_that_writes_to_it()
    {
        var store = CreateStore();
        await store.MigrateAsync(Ct);
        await using var connection = await OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync(Ct);
        await store.AddAsync(transaction, NewMessage("holding a row lock"), Ct);

        // DDL on the table (CREATE INDEX IF NOT EXISTS, ALTER TABLE) would wait for this transaction's lock on it; the catalog check runs none.
        await CreateStore().MigrateAsync(Ct).WaitAsync(TimeSpan.FromSeconds(5), Ct);
        await transaction.CommitAsync(Ct);
    }

    [Fact]
    public async Task A_failure_text_with_a_nul_character_or_half_a_surrogate_pair_is_still_recorded()
    {
        var store = CreateStore();
        var id = await store.AddWithinTransactionAsync(NewMessage("flaky"), null, Ct);
        var claimed = Assert.Single(await store.ClaimAsync(10, T0, T0.AddSeconds(30), Ct));

        // 3999 characters, then a surrogate pair that the 4000-character limit cuts in half.
        var error = "broker\0down \uDE00" + new string('x', 3986) + "\U0001F600";
        await store.ReleaseAsync(id, claimed.LeaseToken, T0.AddSeconds(5), error, cancellationToken: Ct);

        await using var connection = await OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT last_error, locked_until FROM {QuoteTable(OutboxTable)} WHERE id = {id}";
        await using var reader = await command.ExecuteReaderAsync(Ct);
        Assert.True(await reader.ReadAsync(Ct));
        Assert.Equal("broker\uFFFDdown \uFFFD" + new string('x', 3986) + "\uFFFD", reader.GetString(0));
        Assert.Equal(T0.AddSeconds(5), ReadInstant(reader, 1));
    }

    /// <summary>Creates a message with the id and creation time an <see cref="Outbox"/> would assign.</summary>
    protected static OutboxMessage NewMessage(string payload) =>
        new(payload) { MessageId = Guid.CreateVersion7(), CreatedAt = T0.AddTicks(Random.Shared.Next(1, 1000) * 10) };

    /// <summary>Runs a statement.</summary>
    protected static async Task ExecuteAsync(DbConnection connection, DbTransaction? transaction, string sql)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(Ct);
    }

    /// <summary>
    /// Has ten stores from <paramref name="createStore"/> create their table at once, then checks that they all succeeded: one writes,
    /// another claims, and the table <paramref name="table"/> has its indexes.
    /// </summary>
    protected async Task TenStoresCreateAtOnceAsync(Func<RelationalOutboxStore> createStore, Func<Task<IReadOnlyDictionary<string, string>>> readIndexes, string table)
    {
        ArgumentNullException.ThrowIfNull(createStore);
        ArgumentNullException.ThrowIfNull(readIndexes);
        var stores = Enumerable.Range(0, 10).Select(_ => createStore()).ToArray();

        await Task.WhenAll(stores.Select(store => store.MigrateAsync(Ct)));

        var id = await stores[3].AddWithinTransactionAsync(NewMessage("after the race"), null, Ct);
        Assert.Equal(id, Assert.Single(await stores[7].ClaimAsync(10, T0, T0.AddSeconds(30), Ct)).Id);
        AssertHasItsIndexes(table, await readIndexes());
    }

    /// <summary>Asserts that <paramref name="indexes"/> are exactly the <see cref="ExpectedIndexes"/>, named after <paramref name="table"/>.</summary>
    protected void AssertHasItsIndexes(string table, IReadOnlyDictionary<string, string> indexes)
    {
        ArgumentNullException.ThrowIfNull(indexes);
        Assert.Equal(
            ExpectedIndexes.Select(i => $"{table}_{i.Key}: {i.Value}").Order(StringComparer.Ordinal),
            indexes.Select(i => $"{i.Key}: {i.Value}").Order(StringComparer.Ordinal));
    }

    private async Task DropIndexesAsync(string table)
    {
        await using var connection = await OpenConnectionAsync();
        foreach (var suffix in IndexesAddedToAnExistingTable)
        {
            await ExecuteAsync(connection, null, DropIndexStatement(table, $"{table}_{suffix}"));
        }
    }

    private async Task<long> CountBusinessRowsAsync()
    {
        await using var connection = await OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT COUNT(*) FROM {BusinessTable}";
        return Convert.ToInt64(await command.ExecuteScalarAsync(Ct), System.Globalization.CultureInfo.InvariantCulture);
    }
}
