// Admission and endings: what a client is told when the server has no room for its work,
// how a refused or failed realtime session ends, and what /metrics counts for each; over
// loopback with the demo model. Expected words come from the samples' scripts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server_test_client.h"

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ServerMetrics, CompletedUploadsAreNotCountedAsDisconnects) {
  RunningServer s(ServerOptions{});
  // Each client reads its whole answer, then closes at once (as curl and most HTTP clients
  // do): the close may reach the server before it has noted the answer as written.
  for (int i = 0; i < 20; ++i) {
    const auto reply = upload(s.port(), "lights");
    ASSERT_EQ(reply.status, 200) << reply.body;
  }
  const auto metrics = request(s.port(), http::verb::get, "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("voxtral_requests_total{endpoint=\"/v1/audio/transcriptions\",status=\"200\"} 20\n"));
  EXPECT_THAT(metrics, Not(HasSubstr("client_disconnected"))) << metrics;
}

}  // namespace
}  // namespace voxtral
