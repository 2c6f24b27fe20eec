// The engine's waits and the interpreter's exit. A thread waiting in the engine (a daemon
// thread's transcribe() or feed()) holds no GIL; if the interpreter finalizes meanwhile, taking
// the GIL again ends that thread inside our C++ frames (CPython's forced thread exit unwinds
// through noexcept frames: std::terminate) or touches a torn-down thread state (a crash). So
// an atexit callback, which runs before finalization begins, marks the exit; from then on a
// waiting thread never touches Python again and parks until the process is gone.
#pragma once

#include <Python.h>

#include <pybind11/pybind11.h>

#include "runtime/scheduled_model.h"

namespace voxtral::python {

// Registers the atexit callback that marks the exit (once, at the module's import), and the
// end of finalization's, which halts the schedulers of the models still alive (a parked
// thread's): no engine work may race exit()'s teardown of static objects and shared libraries.
void watch_interpreter_exit();

// A model to halt at the end of finalization if it is still alive then.
void halt_at_exit(const std::shared_ptr<ScheduledModel>& engine);

// Releases the GIL for its life and takes it back at the end, unless the interpreter has
// begun to exit by then: the thread then parks for good instead.
class ReleasedGil {
 public:
  ReleasedGil();
  ~ReleasedGil();
  ReleasedGil(const ReleasedGil&) = delete;
  ReleasedGil& operator=(const ReleasedGil&) = delete;

 private:
  PyThreadState* state_;
};

// Between the slices of a wait (GIL released): Ctrl-C in the main thread raises
// KeyboardInterrupt there instead of waiting for the engine; once the interpreter exits the
// thread parks for good.
WaitHook python_signals();

}  // namespace voxtral::python
