// One Wyoming connection (the protocol and its errors: wyoming.h).
#pragma once

#include "server/http_session.h"

namespace voxtral {

void start_wyoming_session(tcp::socket socket, ServerContext& context);

}  // namespace voxtral
