// Read-only memory map of a whole file. Model weights are used in place from the map.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

namespace voxtral {

class MappedFile {
 public:
  // Throws Error naming the path when it is missing, unreadable, a directory or not mappable.
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

// Reads a whole (small) file into a string; errors name the path.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace voxtral
