#include "server/server.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "core/error.h"
#include "server/http_session.h"
#include "server/wyoming.h"

namespace voxtral {

struct Server::Impl {
  Impl(Scheduler& engine, Metrics& metrics, ServerOptions opts)
      : options(std::move(opts)),
        context{engine, metrics, options},
        io(options.io_threads),
        acceptor(net::make_strand(io)),
        wyoming(io, context),
        blocking_pool(2) {
    context.blocking_pool = &blocking_pool;
    context.lifecycle = &lifecycle;
    context.memory = &memory;
    memory.set_limit(options.memory_budget_bytes != 0 ? options.memory_budget_bytes : default_memory_budget_bytes());
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

  // The I/O loop of one thread. Connections catch their own exceptions; one that escapes
  // anyway (from any handler) is logged and counted, and the loop goes on: one request
  // never ends the process.
  void run_io() {
    for (;;) {
      try {
        io.run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "voxtral-server: internal error in the I/O loop: %s\n", e.what());
        context.metrics.error("internal");
      } catch (...) {
        std::fprintf(stderr, "voxtral-server: internal error in the I/O loop: an unknown exception\n");
        context.metrics.error("internal");
      }
    }
  }

  // Waits until `done` or the deadline (or cut_grace()); true if `done`.
  template <class Done>
  bool wait_until(std::chrono::steady_clock::time_point deadline, Done done) {
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline || grace_cut.load()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  // What connections use is declared before the I/O context and the pool: their pending
  // handlers and tasks (holding connections) are destroyed with those, before this is.
  ServerOptions options;
  Lifecycle lifecycle;
  MemoryBudget memory;
  ServerContext context;
  net::io_context io;
  tcp::acceptor acceptor;
  WyomingListener wyoming;
  net::thread_pool blocking_pool;
  std::vector<std::thread> threads;
  unsigned short port = 0;
  std::atomic<bool> grace_cut{false};
};

std::size_t default_memory_budget_bytes() {
  double limit = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
    limit = std::min(limit, static_cast<double>(as.rlim_cur));
  }
  if (!(limit > 0)) limit = 8.0 * (1u << 30);  // sysconf failed: assume a small machine
  return static_cast<std::size_t>(limit / 2);
}

Server::Server(Scheduler& engine, ServerOptions options)
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
  if (s.options.wyoming_port >= 0) s.wyoming.start(s.options.host, static_cast<unsigned short>(s.options.wyoming_port));
  s.accept();
  for (int i = 0; i < std::max(1, s.options.io_threads); ++i) s.threads.emplace_back([&s] { s.run_io(); });
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
  impl_->wyoming.close();
  impl_->io.stop();
}

void Server::abort_remaining() { impl_->lifecycle.abort_all(); }

void Server::shutdown(double grace_seconds) {
  auto& s = *impl_;
  using Clock = std::chrono::steady_clock;
  net::post(s.acceptor.get_executor(), [&s] {
    beast::error_code ignored;
    s.acceptor.close(ignored);
  });
  s.wyoming.close();
  s.lifecycle.begin_drain();
  const auto grace_end = Clock::now() + clock_seconds(std::max(0.0, grace_seconds));
  s.wait_until(grace_end, [&s] { return s.context.busy_requests.load() == 0 && s.lifecycle.active() == 0; });
  // What remains is answered 503 (HTTP) or closed with 1001 (WebSocket); those last bytes
  // get a moment to go out before the I/O threads stop.
  s.lifecycle.abort_all();
  s.grace_cut = false;
  s.wait_until(Clock::now() + std::chrono::seconds(2), [&s, this] {
    return s.context.busy_requests.load() == 0 && metrics_.realtime_sessions() == 0;
  });
  stop();
  wait();
}

void Server::cut_grace() { impl_->grace_cut = true; }

unsigned short Server::port() const { return impl_->port; }

unsigned short Server::wyoming_port() const { return impl_->wyoming.port(); }

}  // namespace voxtral
