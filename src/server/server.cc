#include "server/server.h"

#include <thread>
#include <vector>

#include "core/error.h"
#include "server/http_session.h"

namespace voxtral {

struct Server::Impl {
  Impl(Engine& engine, Metrics& metrics, ServerOptions opts)
      : options(std::move(opts)),
        context{engine, metrics, options},
        io(options.io_threads),
        acceptor(net::make_strand(io)),
        blocking_pool(2) {
    context.blocking_pool = &blocking_pool;
    context.lifecycle = &lifecycle;
    context.memory = &memory;
    memory.set_limit(options.memory_budget_bytes);
    const auto& config = engine.model().config();
    context.sample_rate = config.audio.sampling_rate;
    context.position_seconds = static_cast<double>(config.samples_per_position()) / config.audio.sampling_rate;
  }

  void accept() {
    acceptor.async_accept(net::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (!acceptor.is_open()) return;
      if (!ec) std::make_shared<HttpSession>(std::move(socket), context)->run();
      accept();
    });
  }

  ServerOptions options;
  // Before io: sessions still queued in io when it is destroyed use these in their destructors.
  Lifecycle lifecycle;
  MemoryBudget memory;
  ServerContext context;
  net::io_context io;
  tcp::acceptor acceptor;
  net::thread_pool blocking_pool;
  std::vector<std::thread> threads;
  unsigned short port = 0;
};

Server::Server(Engine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, metrics_, std::move(options))) {}

Server::~Server() {
  stop();
  wait();
  // No engine callback may reach a connection once the I/O context starts going away.
  impl_->context.engine.cancel_all();
  impl_->blocking_pool.join();
}

void Server::start() {
  auto& s = *impl_;
  const std::string where = cat(s.options.host, ":", s.options.port);
  beast::error_code ec;
  const auto address = net::ip::make_address(s.options.host, ec);
  if (ec) fail(where, cat("not an IP address: ", ec.message()));
  const tcp::endpoint endpoint(address, s.options.port);
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail(where, cat("cannot listen: ", ec.message()));
  s.port = s.acceptor.local_endpoint().port();
  s.accept();
  for (int i = 0; i < std::max(1, s.options.io_threads); ++i) s.threads.emplace_back([&s] { s.io.run(); });
}

void Server::wait() {
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

void Server::stop() {
  net::post(impl_->acceptor.get_executor(), [&s = *impl_] {
    beast::error_code ignored;
    s.acceptor.close(ignored);
  });
  impl_->io.stop();
}

void Server::abort_remaining() { impl_->lifecycle.abort_all(); }

unsigned short Server::port() const { return impl_->port; }

}  // namespace voxtral
