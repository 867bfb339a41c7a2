// Streaming reader for memory traces (docs/trace-format.md): the cvmsim text format and valgrind
// lackey's --trace-mem=yes output. It reads the file in fixed 256 KiB chunks and hands out one
// line at a time, so a multi-gigabyte trace costs no memory; the file must be a regular file
// (format detection and `repeat` seek back to the start).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/guest/workload.h"

namespace cvmsim {

struct TraceRecord {
  enum class Kind : uint8_t { kLoad, kStore, kCompute, kFence };
  Kind kind = Kind::kFence;
  uint64_t addr = 0;       // load/store: the address as written in the trace (not yet folded)
  uint32_t size = 0;       // load/store: 1..kMaxAccessBytes
  bool has_value = false;  // store: the trace gave a value (cvmsim `W addr size value`)
  uint64_t value = 0;
  uint64_t cycles = 0;  // compute
};

class TraceReader {
 public:
  enum class Status : uint8_t { kRecord, kEnd, kError };

  // Opens and, for kAuto, detects the format. Check ok() / error() afterwards.
  TraceReader(std::string path, TraceFormat format, bool instr_fetches);

  bool ok() const { return error_.empty(); }
  // "<path>:<line>: <reason>" for a bad line, "<path>: <reason>" for a file problem.
  const std::string& error() const { return error_; }
  // The format in use (never kAuto once opened).
  TraceFormat format() const { return format_; }
  const std::string& path() const { return path_; }
  uint64_t line() const { return line_; }

  // The next record. A lackey `M` yields a load and then a store at the same address.
  // After kError, error() says why and further calls return kError.
  Status next(TraceRecord& rec);
  // Back to the first line (for `repeat`). Returns false (and sets error()) if seeking fails.
  bool rewind();

 private:
  enum class LineResult : uint8_t { kRecord, kSkip, kError };
  LineResult parse_cvmsim(std::string_view s, TraceRecord& rec);
  LineResult parse_lackey(std::string_view s, TraceRecord& rec);
  LineResult fail(std::string_view reason);
  void detect_format();
  // The next line without its '\n' (and '\r'); false at the end of the file or on a read
  // error (then error_ is set).
  bool read_line(std::string_view& line);

  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };

  std::string path_;
  TraceFormat format_;
  bool instr_fetches_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::vector<char> buf_;  // holds [begin_, end_) of unread bytes
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t line_ = 0;
  std::string error_;
  bool pending_store_ = false;  // the store half of a lackey `M`
  TraceRecord pending_;
};

// What a whole pass over a trace contains; `error` is empty if every line parsed.
struct TraceSummary {
  std::string error;                        // as TraceReader::error()
  TraceFormat format = TraceFormat::kAuto;  // the detected format
  uint64_t lines = 0;
  uint64_t loads = 0;  // lackey `M` counts as one load and one store
  uint64_t stores = 0;
  uint64_t computes = 0;
  uint64_t fences = 0;
};

// Reads the whole trace once (streaming). Meant for config-time validation and tooling.
TraceSummary validate_trace(const std::string& path, TraceFormat format = TraceFormat::kAuto,
                            bool instr_fetches = false);

}  // namespace cvmsim
