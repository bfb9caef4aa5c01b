using Google.Apis.Auth.OAuth2;
using Grpc.Core;

namespace Outboxer.PubSub;

/// <summary>
/// gRPC call credentials from a <see cref="GoogleCredential"/>: an OAuth2 access token (refreshed by the credential when it expires) in
/// the <c>authorization</c> header, plus the headers the credential asks for, such as <c>x-goog-user-project</c>. What the Grpc.Auth
/// package does, without taking a dependency on it.
/// </summary>
internal static class GoogleCallCredentials
{
    /// <summary>The OAuth2 scope that allows publishing.</summary>
    public const string PubSubScope = "https://www.googleapis.com/auth/pubsub";

    public static CallCredentials Create(GoogleCredential credential)
    {
        if (credential.IsCreateScopedRequired)
        {
            credential = credential.CreateScoped(PubSubScope);
        }

        ITokenAccessWithHeaders tokens = credential;
        return CallCredentials.FromInterceptor(async (context, metadata) =>
        {
            var token = await tokens.GetAccessTokenWithHeadersForRequestAsync(context.ServiceUrl, context.CancellationToken).ConfigureAwait(false);
            metadata.Add("authorization", $"Bearer {token.AccessToken}");
            foreach (var (name, values) in token.Headers)
            {
                foreach (var value in values)
                {
                    metadata.Add(name, value);
                }
            }
        });
    }
}
