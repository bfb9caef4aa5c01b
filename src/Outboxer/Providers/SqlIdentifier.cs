namespace Outboxer.Providers;

/// <summary>Validation of table and schema names that stores put into SQL, so that no name can inject SQL.</summary>
public static class SqlIdentifier
{
    /// <summary>The longest name accepted: PostgreSQL's limit, which is also within MySQL's and SQLite's.</summary>
    public const int MaxLength = 63;

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
