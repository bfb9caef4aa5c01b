using Outboxer.Providers;

namespace Outboxer.Dashboard;

/// <summary>
/// Settings of the Outboxer dashboard (<see cref="OutboxerDashboardServiceCollectionExtensions.AddOutboxerDashboard"/>), checked when it is
/// mapped: a bad value throws an exception naming the option and its value.
/// </summary>
/// <remarks>
/// The dashboard is safe by default: <see cref="OutboxerDashboardEndpointRouteBuilderExtensions.MapOutboxerDashboard"/> refuses to map
/// unless <see cref="AuthorizationPolicy"/> names the policy that protects it or <see cref="AllowAnonymous"/> says that it needs none.
/// </remarks>
public sealed class OutboxerDashboardOptions
{
    private readonly List<KeyValuePair<string, IOutboxAdministration>> _stores = [];

    /// <summary>
    /// Gets or sets the authorization policy every page and action requires (the name of a policy registered with
    /// <c>AddAuthorization</c>). The default is <see langword="null"/>: then <see cref="AllowAnonymous"/> must be set.
    /// </summary>
    public string? AuthorizationPolicy { get; set; }

    /// <summary>
    /// Gets or sets a value indicating whether the dashboard may be mapped without an <see cref="AuthorizationPolicy"/>: anyone who can
    /// reach the application sees the messages and can requeue and purge dead letters. For Development only (for example
    /// <c>AllowAnonymous = builder.Environment.IsDevelopment()</c>), or behind a gate the application already has. The default is
    /// <see langword="false"/>.
    /// </summary>
    public bool AllowAnonymous { get; set; }

    /// <summary>
    /// Gets or sets a value indicating whether the dashboard only shows: no requeue or purge button is rendered, and a POST is refused
    /// with 403. The default is <see langword="false"/>.
    /// </summary>
    public bool ReadOnly { get; set; }

    /// <summary>Gets or sets how often the dashboard samples each outbox for its charts. The default is 10 seconds; at least 1 second.</summary>
    public TimeSpan SampleInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Gets or sets how far back the charts reach; the samples are kept in memory (one per <see cref="SampleInterval"/>, at most 10,000).
    /// The default is 1 hour.
    /// </summary>
    public TimeSpan History { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Gets or sets how many dead letters a page lists. The default is 50; between 1 and 1000.</summary>
    public int PageSize { get; set; } = 50;

    /// <summary>
    /// Gets or sets how many bytes of a payload the previews show; the rest is cut, and the page says how much. The default is 4096;
    /// between 16 and 1,048,576.
    /// </summary>
    public int PreviewBytes { get; set; } = 4096;

    /// <summary>Gets the stores shown besides the outboxes registered with <c>AddOutboxer</c> (see <see cref="AddStore"/>).</summary>
    public IReadOnlyList<KeyValuePair<string, IOutboxAdministration>> Stores => _stores;

    /// <summary>
    /// Shows a store that no registered <see cref="Outbox"/> owns (a tool that opens a table directly, as the CLI's <c>dashboard</c> verb
    /// does). The outboxes registered with <c>AddOutboxer</c> are shown without this.
    /// </summary>
    /// <param name="name">The name the dashboard shows; unique among the outboxes and stores it shows.</param>
    /// <param name="administration">The store's administration contract.</param>
    /// <returns>The same options instance so that multiple calls can be chained.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public OutboxerDashboardOptions AddStore(string name, IOutboxAdministration administration)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(administration);
        _stores.Add(new(name, administration));
        return this;
    }

    /// <summary>Checks every value, naming the option and the value in the exception.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is outside its range.</exception>
    /// <exception cref="InvalidOperationException">Neither <see cref="AuthorizationPolicy"/> nor <see cref="AllowAnonymous"/> is set.</exception>
    public void Validate()
    {
        if (SampleInterval < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(SampleInterval), SampleInterval, "The dashboard's SampleInterval must be at least 1 second.");
        }

        if (History < SampleInterval || History.Ticks / SampleInterval.Ticks > 10_000)
        {
            throw new ArgumentOutOfRangeException(nameof(History), History, $"The dashboard's History must be at least SampleInterval ({SampleInterval}) and at most 10,000 samples long.");
        }

        if (PageSize is < 1 or > 1000)
        {
            throw new ArgumentOutOfRangeException(nameof(PageSize), PageSize, "The dashboard's PageSize must be between 1 and 1000.");
        }

        if (PreviewBytes is < 16 or > 1_048_576)
        {
            throw new ArgumentOutOfRangeException(nameof(PreviewBytes), PreviewBytes, "The dashboard's PreviewBytes must be between 16 and 1,048,576.");
        }

        if (AuthorizationPolicy is { Length: 0 } || (AuthorizationPolicy is null && !AllowAnonymous))
        {
            throw new InvalidOperationException(
                "The Outboxer dashboard shows message payloads and can requeue and purge dead letters, so it is not mapped without authorization: " +
                "set OutboxerDashboardOptions.AuthorizationPolicy to a policy registered with AddAuthorization, or set AllowAnonymous = true " +
                "(Development only, for example AllowAnonymous = builder.Environment.IsDevelopment()).");
        }
    }
}
