// Reading audio from a FIFO while signals arrive: a handler installed without SA_RESTART (as
// Python installs its own) makes the blocked open() or read() fail with EINTR, which must
// resume the wait (after the caller's hook), not fail the read.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/audio.h"
#include "test_util.h"
#include "wav_builder.h"

namespace voxtral::testing {
namespace {

using namespace std::chrono_literals;

// SIGUSR1 with a handler that returns, without SA_RESTART, for the test's life.
class InterruptingSignal {
 public:
  InterruptingSignal() {
    struct sigaction action {};
    action.sa_handler = [](int) {};
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    if (::sigaction(SIGUSR1, &action, &old_) != 0) throw std::runtime_error("sigaction");
  }
  ~InterruptingSignal() { ::sigaction(SIGUSR1, &old_, nullptr); }
  InterruptingSignal(const InterruptingSignal&) = delete;
  InterruptingSignal& operator=(const InterruptingSignal&) = delete;

 private:
  struct sigaction old_ {};
};

// The FIFO's writing end once a reader has opened it; -1 after 10 s without one (a reader that
// failed must not hang the test).
int open_for_writing(const std::string& fifo) {
  for (int tries = 0; tries < 1000; ++tries) {
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      return fd;
    }
    std::this_thread::sleep_for(10ms);
  }
  return -1;
}

void write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) return;  // the reader is gone: its failure is the test's
    done += static_cast<std::size_t>(n);
  }
}

struct Fifo {
  TempDir dir;
  std::string path = (dir.path() / "audio.wav").string();
  Fifo() {
    if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo");
  }
};

TEST(AudioInterrupted, AFifoReadIsResumedAfterASignal) {
  const InterruptingSignal signal;
  const Fifo fifo;
  const std::string wav = simple_wav(fmt_body(kPcm, 1, 16000, 16), s16_bytes({16384, -8192, 4096, -2048}));
  const pthread_t reader = ::pthread_self();
  std::thread writer([&] {
    const int fd = open_for_writing(fifo.path);
    if (fd < 0) return;
    write_all(fd, wav.substr(0, 46));  // the header and one sample: the reader then waits in read()
    for (int i = 0; i < 2; ++i) {
      std::this_thread::sleep_for(200ms);
      ::pthread_kill(reader, SIGUSR1);
    }
    std::this_thread::sleep_for(200ms);
    write_all(fd, wav.substr(46));
    ::close(fd);
  });
  int interruptions = 0;
  std::vector<float> samples;
  EXPECT_NO_THROW(samples = load_audio_file(fifo.path, 16000, AudioFormat::Wav, {}, [&] { ++interruptions; }));
  writer.join();
  EXPECT_EQ(samples, (std::vector<float>{0.5f, -0.25f, 0.125f, -0.0625f}));
  EXPECT_EQ(interruptions, 2);
}

TEST(AudioInterrupted, AFifoOpenWaitingForItsWriterIsResumedAfterASignal) {
  const InterruptingSignal signal;
  const Fifo fifo;
  const pthread_t reader = ::pthread_self();
  std::thread writer([&] {
    std::this_thread::sleep_for(200ms);  // the reader waits in open() for a writer
    ::pthread_kill(reader, SIGUSR1);
    std::this_thread::sleep_for(200ms);
    const int fd = open_for_writing(fifo.path);
    if (fd < 0) return;
    write_all(fd, s16_bytes({16384}));
    ::close(fd);
  });
  int interruptions = 0;
  std::vector<float> samples;
  EXPECT_NO_THROW(samples = load_audio_file(fifo.path, 16000, AudioFormat::RawS16le, {}, [&] { ++interruptions; }));
  writer.join();
  EXPECT_EQ(samples, std::vector<float>{0.5f});
  EXPECT_EQ(interruptions, 1);
}

TEST(AudioInterrupted, WhatTheHookThrowsEndsTheRead) {
  const InterruptingSignal signal;
  const Fifo fifo;
  const pthread_t reader = ::pthread_self();
  std::atomic<bool> done{false};
  std::thread writer([&] {
    const int fd = open_for_writing(fifo.path);
    if (fd < 0) return;
    write_all(fd, s16_bytes({1, 2, 3}));
    std::this_thread::sleep_for(200ms);
    ::pthread_kill(reader, SIGUSR1);
    for (int i = 0; i < 500 && !done; ++i) std::this_thread::sleep_for(10ms);  // open: only the hook ends it
    ::close(fd);
  });
  const auto started = std::chrono::steady_clock::now();
  EXPECT_THROW(load_audio_file(fifo.path, 16000, AudioFormat::RawS16le, {},
                               [] { throw std::runtime_error("KeyboardInterrupt"); }),
               std::runtime_error);
  done = true;
  writer.join();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
}

TEST(AudioInterrupted, WithoutAHookTheReadIsResumed) {
  const InterruptingSignal signal;
  const Fifo fifo;
  const pthread_t reader = ::pthread_self();
  std::thread writer([&] {
    const int fd = open_for_writing(fifo.path);
    if (fd < 0) return;
    write_all(fd, s16_bytes({16384}));
    std::this_thread::sleep_for(200ms);
    ::pthread_kill(reader, SIGUSR1);
    std::this_thread::sleep_for(200ms);
    write_all(fd, s16_bytes({-16384}));
    ::close(fd);
  });
  std::vector<float> samples;
  EXPECT_NO_THROW(samples = load_audio_file(fifo.path, 16000, AudioFormat::RawS16le));
  writer.join();
  EXPECT_EQ(samples, (std::vector<float>{0.5f, -0.5f}));
}

}  // namespace
}  // namespace voxtral::testing
