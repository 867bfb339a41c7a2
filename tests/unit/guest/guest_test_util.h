// Helpers shared by the guest workload tests.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "hw/cpu/guest_op.h"

namespace cvmsim::test {

inline std::vector<GuestOp> drain(GuestProgram& p, size_t limit = 10'000'000) {
  std::vector<GuestOp> ops;
  GuestOp op;
  while (ops.size() < limit && p.next(op)) ops.push_back(op);
  return ops;
}

// A file in the temp directory, removed when the test ends. Names include the pid because
// ctest may run test cases of this executable in parallel processes.
class TempFile {
 public:
  explicit TempFile(const std::string& contents, const std::string& stem = "trace") {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("cvmsim_guest_" + stem + "_" + std::to_string(::getpid()) + "_" +
              std::to_string(counter++) + ".txt"))
                .string();
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cvmsim::test
