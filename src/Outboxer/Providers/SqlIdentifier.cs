namespace Outboxer.Providers;

/// <summary>Validation of table and schema names that stores put into SQL, so that no name can inject SQL.</summary>
public static class SqlIdentifier
{
    /// <summary>The longest name accepted, in characters: the shortest limit among the common SQL databases (63 bytes).</summary>
    public const int MaxLength = 63;

    /// <summary>
    /// Derives the name of an object that belongs to a table (an index, a trigger) as <c>&lt;table&gt;_&lt;suffix&gt;</c>, so that two
    /// outbox tables in one schema each get their own. A result longer than <see cref="MaxLength"/> is shortened with a hash of the
    /// table name instead of being cut (databases cut long names, which could give two objects the same name).
    /// </summary>
    /// <param name="table">A validated table name.</param>
    /// <param name="suffix">What the object is, for example <c>pending_ix</c>.</param>
    /// <returns>A name of at most <see cref="MaxLength"/> characters.</returns>
    public static string Derive(string table, string suffix)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(suffix);
        var name = $"{table}_{suffix}";
        if (name.Length <= MaxLength)
        {
            return name;
        }

        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(table)).AsSpan(0, 4));
        return $"{table[..(MaxLength - suffix.Length - hash.Length - 2)]}_{hash}_{suffix}";
    }

    /// <summary>
    /// Checks that <paramref name="name"/> is a plain identifier: 1 to 63 characters, ASCII letters, digits and underscores,
    /// not starting with a digit. Stores quote it as well.
    /// </summary>
    /// <param name="name">The table or schema name.</param>
    /// <param name="paramName">The name of the option or parameter that holds it, for the exception.</param>
    /// <returns><paramref name="name"/>, for chaining.</returns>
    /// <exception cref="ArgumentException">The name is empty, too long, or has other characters; the message quotes it.</exception>
    public static string Validate(string? name, string paramName)
    {
        if (string.IsNullOrEmpty(name))
        {
            throw new ArgumentException($"{paramName} must not be empty.", paramName);
        }

        var valid = name.Length <= MaxLength && !char.IsAsciiDigit(name[0]);
        foreach (var c in name)
        {
            valid &= char.IsAsciiLetterOrDigit(c) || c == '_';
        }

        if (!valid)
        {
            throw new ArgumentException(
                $"{paramName} '{name}' is not a valid name: use 1 to {MaxLength} ASCII letters, digits and underscores, not starting with a digit.",
                paramName);
        }

        return name;
    }
}
