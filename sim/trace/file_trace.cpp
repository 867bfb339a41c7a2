#include "sim/trace/file_trace.h"

#include <stdexcept>

namespace cvmsim {

FileTrace::FileTrace(const std::string& path) : f_(std::fopen(path.c_str(), "w")) {
  if (!f_) throw std::runtime_error("cannot open trace file " + path);
}

FileTrace::~FileTrace() {
  if (f_) std::fclose(f_);
}

void FileTrace::event(uint64_t time_ps, std::string_view component, std::string_view event,
                      std::string_view details) {
  std::fprintf(f_, "%llu.%03llu %.*s %.*s %.*s\n", static_cast<unsigned long long>(time_ps / 1000),
               static_cast<unsigned long long>(time_ps % 1000), static_cast<int>(component.size()),
               component.data(), static_cast<int>(event.size()), event.data(),
               static_cast<int>(details.size()), details.data());
  ++events_;
}

}  // namespace cvmsim
