using Outboxer.Providers;
using Outboxer.Testing;
using Xunit;

namespace Outboxer.Tests;

public sealed class OutboxPublisherTests
{
    [Fact]
    public void A_publisher_that_does_not_name_destinations_gets_null_from_the_default_implementation()
    {
        IOutboxPublisher publisher = new RecordingPublisher();
        var message = new OutboxMessage("x");
        message.Options["queue"] = "orders";

        Assert.Null(publisher.GetDestinationName(message));
    }
}
