// Measures how fast this machine reads memory with all threads: the figure the decode step
// is compared with (a decode step must read every decoder weight once).
#pragma once

namespace voxtral {

// Best-of-several read bandwidth in bytes per second over a buffer far larger than the
// caches (`bytes`), using `threads` threads.
double measure_read_bandwidth(int threads, double bytes = 2.0e9);

}  // namespace voxtral
