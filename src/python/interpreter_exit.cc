#include "python/interpreter_exit.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>
#include <shared_mutex>
#include <thread>

namespace py = pybind11;

namespace voxtral::python {

namespace {

// Shared by a thread while it takes the GIL; exclusive while the exit is marked. The marking
// thread holds the GIL's release meanwhile, so a thread taking the GIL under the shared lock
// finishes before the mark, and none starts after it.
std::shared_mutex exit_mutex;
bool exiting = false;  // guarded by exit_mutex

std::mutex engines_mutex;
std::vector<std::weak_ptr<ScheduledModel>> engines;  // guarded by engines_mutex

void halt_engines() {
  std::lock_guard lock(engines_mutex);
  for (const auto& weak : engines) {
    if (auto engine = weak.lock()) engine->halt();
  }
}

[[noreturn]] void park_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace

void halt_at_exit(const std::shared_ptr<ScheduledModel>& engine) {
  std::lock_guard lock(engines_mutex);
  std::erase_if(engines, [](const auto& weak) { return weak.expired(); });
  engines.push_back(engine);
}

void watch_interpreter_exit() {
  if (Py_AtExit(halt_engines) != 0) throw std::runtime_error("voxtral: no room for an exit function (Py_AtExit)");
  py::module_::import("atexit").attr("register")(py::cpp_function([] {
    py::gil_scoped_release nogil;
    std::unique_lock lock(exit_mutex);
    exiting = true;
  }));
}

ReleasedGil::ReleasedGil() : state_(PyEval_SaveThread()) {}

ReleasedGil::~ReleasedGil() {
  {
    std::shared_lock lock(exit_mutex);
    if (!exiting) {
      PyEval_RestoreThread(state_);
      return;
    }
  }
  park_forever();
}

WaitHook python_signals() {
  return [] {
    std::shared_lock lock(exit_mutex);
    if (exiting) {
      lock.unlock();
      park_forever();
    }
    py::gil_scoped_acquire gil;
    lock.unlock();  // a signal handler run below may call into the engine and release the GIL again
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  };
}

}  // namespace voxtral::python
