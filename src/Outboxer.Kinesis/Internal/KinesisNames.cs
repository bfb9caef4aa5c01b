using System.Globalization;
using System.Text.RegularExpressions;

namespace Outboxer.Kinesis.Internal;

/// <summary>The formats and limits Kinesis imposes on names and keys, checked before anything is sent.</summary>
internal static partial class KinesisNames
{
    /// <summary>The largest record Kinesis accepts: data plus partition key (UTF-8), 1 MiB.</summary>
    public const int MaxRecordBytes = 1024 * 1024;

    /// <summary>The largest <c>PutRecords</c> request Kinesis accepts: data plus partition keys of all its records, 5 MiB.</summary>
    public const int MaxRequestBytes = 5 * 1024 * 1024;

    /// <summary>The most records one <c>PutRecords</c> request may hold.</summary>
    public const int MaxRecordsPerRequest = 500;

    /// <summary>The longest partition key, in characters.</summary>
    public const int MaxPartitionKeyLength = 256;

    public static bool IsStreamName(string value) => StreamNamePattern().IsMatch(value);

    public static bool IsRegion(string value) => RegionPattern().IsMatch(value);

    /// <summary>Whether <paramref name="value"/> is a decimal integer from 0 to 2^128 - 1 without leading zeros, as Kinesis requires.</summary>
    public static bool IsExplicitHashKey(string value) =>
        HashKeyPattern().IsMatch(value) && UInt128.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _);

    public static bool IsSequenceNumber(string value) => SequenceNumberPattern().IsMatch(value);

    /// <summary>The region named by a regional AWS Kinesis address (<c>kinesis.eu-west-1.amazonaws.com</c>, a VPC endpoint), if any.</summary>
    public static string? RegionOf(Uri serviceUrl)
    {
        var match = RegionalHostPattern().Match(serviceUrl.Host);
        return match.Success ? match.Groups["region"].Value : null;
    }

    /// <summary>The public regional endpoint of Kinesis in <paramref name="region"/>.</summary>
    public static Uri EndpointOf(string region) =>
        new($"https://kinesis.{region}.{(region.StartsWith("cn-", StringComparison.Ordinal) ? "amazonaws.com.cn" : "amazonaws.com")}/");

    [GeneratedRegex("^[a-zA-Z0-9_.-]{1,128}$", RegexOptions.CultureInvariant)]
    private static partial Regex StreamNamePattern();

    [GeneratedRegex("^[a-z0-9]+(-[a-z0-9]+)+$", RegexOptions.CultureInvariant)]
    private static partial Regex RegionPattern();

    [GeneratedRegex("^(0|[1-9][0-9]{0,38})$", RegexOptions.CultureInvariant)]
    private static partial Regex HashKeyPattern();

    [GeneratedRegex("^(0|[1-9][0-9]{0,128})$", RegexOptions.CultureInvariant)]
    private static partial Regex SequenceNumberPattern();

    [GeneratedRegex(@"(^|\.)kinesis(-fips)?\.(?<region>[a-z0-9]+(-[a-z0-9]+)+)\.(vpce\.)?amazonaws\.com(\.cn)?$", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase)]
    private static partial Regex RegionalHostPattern();
}
