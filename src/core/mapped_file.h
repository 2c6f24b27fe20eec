// Read-only memory map of a whole file. Model weights are used in place from the map.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

namespace voxtral {

class MappedFile {
 public:
  // Throws Error naming the path when it is missing, unreadable, not mappable, or not a
  // regular file: a directory, and also a device or a pipe, which may never end (/dev/zero),
  // is refused before anything is read.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Gives back the whole pages of a read-only file map inside [data, data + bytes): they leave
// the process's resident memory and are read from the file again if touched (a model
// quantized at load no longer needs its BF16 matrices). A hint: errors are ignored.
void release_mapped_pages(const void* data, std::size_t bytes);

// What a path names (following symlinks); throws Error naming the path when it is missing
// or cannot be examined (e.g. a symlink loop).
enum class FileKind {
  Regular,
  Directory,
  Stream,  // a FIFO, a character device, a socket: read as a stream, never mapped
};
FileKind file_kind(const std::string& path);

// Reads a whole (small) regular file into a string; errors name the path, as MappedFile's.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace voxtral
