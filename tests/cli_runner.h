// Runs the built voxtral command line (or another binary of the build) through the shell,
// for end-to-end tests: exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_util.h"

namespace voxtral::testing {

struct CliResult {
  int exit_code = -1;  // -1: killed by a signal (an abort, a crash)
  std::string out, err;
};

inline std::string slurp_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline std::string shell_quoted(const std::filesystem::path& p) {
  std::string q = "'";
  q.append(p.string()).push_back('\'');
  return q;
}

// The voxtral binary under test ($VOXTRAL_CLI when the tests run against a moved build).
inline std::filesystem::path cli_binary() {
  const char* moved = std::getenv("VOXTRAL_CLI");
  return moved != nullptr ? moved : VOXTRAL_CLI;
}

// `<prefix><binary> <args> <VOXTRAL_TEST_CLI_ARGS> >out 2>err` through the shell, so args may
// hold redirections; `stdout_to` replaces the captured stdout (e.g. "/dev/full").
inline CliResult run_binary(const std::filesystem::path& binary, const std::string& args, const std::string& prefix = "",
                            const std::string& stdout_to = "") {
  TempDir dir;
  const auto out = dir.path() / "out", err = dir.path() / "err";
  const char* extra = std::getenv("VOXTRAL_TEST_CLI_ARGS");
  const std::string cmd = prefix + shell_quoted(binary) + " " + args + " " + (extra != nullptr ? extra : "") + " >" +
                          (stdout_to.empty() ? shell_quoted(out) : stdout_to) + " 2>" + shell_quoted(err);
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp_file(out);
  r.err = slurp_file(err);
  return r;
}

}  // namespace voxtral::testing
