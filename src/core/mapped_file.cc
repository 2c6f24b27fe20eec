#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace voxtral {

namespace {

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void check_regular_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    fail(path, errno == ENOENT ? "no such file" : cat("cannot open: ", std::strerror(errno)));
  }
  if (S_ISDIR(st.st_mode)) fail(path, "is a directory, expected a file");
}

}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path.string()) {
  check_regular_file(path_);
  Fd file{::open(path_.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) fail(path_, cat("cannot open: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail(path_, cat("cannot stat: ", std::strerror(errno)));
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ == 0) return;  // an empty map is legal; parsers report "empty file"
  void* map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd, 0);
  if (map == MAP_FAILED) fail(path_, cat("cannot map into memory: ", std::strerror(errno)));
  data_ = static_cast<const std::byte*>(map);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

std::string read_text_file(const std::filesystem::path& path) {
  const std::string name = path.string();
  check_regular_file(name);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(name, cat("cannot open: ", std::strerror(errno)));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) fail(name, "read error");
  return content.str();
}

}  // namespace voxtral
