// Chooses and builds the backend a model runs on, from the user's load options: the CPU
// backend, the CUDA backend (when this build has it), or "auto" (CUDA when a GPU is usable,
// else the CPU with a notice); VOXTRAL_PROFILE=1 wraps the choice in a ProfilingBackend.
// The one place that knows every backend; the model sees only the Backend interface.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace voxtral {

struct ModelOptions;  // model/model.h: the options every front end parses once

// The backend named by options.backend ("cpu", "cuda" or "auto"), with options.threads CPU
// threads (0: one per core), options.precision (both backends) and weights / kv_cache for CUDA. Throws Error
// naming the field for an unknown backend, precision or weight storage, and for "cuda" in a
// build without CUDA.
std::unique_ptr<Backend> make_backend(const ModelOptions& options);

// options.backend with "auto" decided: "cuda" when this build has CUDA and a GPU is usable,
// else "cpu" (with a notice on stderr in a CUDA build, unless options.quiet). Any other value
// comes back as it is (make_backend names an unknown one).
std::string resolve_backend(const ModelOptions& options);

}  // namespace voxtral
