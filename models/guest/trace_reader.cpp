#include "models/guest/trace_reader.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "hw/cpu/guest_op.h"

namespace cvmsim {

namespace {

constexpr size_t kChunk = 256 * 1024;
constexpr size_t kMaxLine = 4 * 1024 * 1024;

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim_left(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  return s.substr(i);
}

// Splits off the next whitespace-separated token; empty when none is left.
std::string_view next_token(std::string_view& s) {
  s = trim_left(s);
  size_t i = 0;
  while (i < s.size() && !is_space(s[i])) ++i;
  std::string_view tok = s.substr(0, i);
  s = s.substr(i);
  return tok;
}

enum class NumResult : uint8_t { kOk, kBad, kOverflow };

NumResult parse_number(std::string_view tok, int base, uint64_t& out) {
  if (tok.empty()) return NumResult::kBad;
  const auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), out, base);
  if (ec == std::errc::result_out_of_range) return NumResult::kOverflow;
  if (ec != std::errc() || ptr != tok.data() + tok.size()) return NumResult::kBad;
  return NumResult::kOk;
}

// cvmsim format numbers: 0x-prefixed hex or decimal.
NumResult parse_cvmsim_number(std::string_view tok, uint64_t& out) {
  if (tok.size() > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X'))
    return parse_number(tok.substr(2), 16, out);
  return parse_number(tok, 10, out);
}

// lackey addresses: hex without a prefix (%08lx); a 0x prefix is tolerated.
NumResult parse_lackey_address(std::string_view tok, uint64_t& out) {
  if (tok.size() > 2 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X')) tok = tok.substr(2);
  return parse_number(tok, 16, out);
}

std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

std::string_view strip_cr(std::string_view s) {
  if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  return s;
}

bool is_valgrind_message(std::string_view s) {
  // "==1234== ..." (tool banner and messages) and "--1234-- ..." (debug/warning messages).
  return s.starts_with("==") || s.starts_with("--");
}

bool is_lackey_record(std::string_view trimmed) {
  if (trimmed.size() < 3) return false;
  const char c = trimmed[0];
  return (c == 'I' || c == 'L' || c == 'S' || c == 'M') && is_space(trimmed[1]) &&
         trimmed.find(',') != std::string_view::npos;
}

}  // namespace

TraceReader::TraceReader(std::string path, TraceFormat format, bool instr_fetches)
    : path_(std::move(path)), format_(format), instr_fetches_(instr_fetches) {
  if (path_.empty()) {
    error_ = "no trace file given";
    return;
  }
  std::error_code ec;
  const auto st = std::filesystem::status(path_, ec);
  if (ec || !std::filesystem::exists(st)) {
    error_ = path_ + ": cannot open: no such file";
    return;
  }
  if (!std::filesystem::is_regular_file(st)) {
    error_ = path_ + ": not a regular file (traces are re-read from the start, so pipes won't do)";
    return;
  }
  errno = 0;
  file_.reset(std::fopen(path_.c_str(), "rb"));
  if (!file_) {
    error_ = path_ + ": cannot open: " + (errno != 0 ? std::strerror(errno) : "unknown error");
    return;
  }
  buf_.resize(kChunk);
  if (format_ == TraceFormat::kAuto) detect_format();
}

bool TraceReader::read_line(std::string_view& line) {
  for (;;) {
    const char* start = buf_.data() + begin_;
    if (const void* nl = std::memchr(start, '\n', end_ - begin_)) {
      const size_t len = static_cast<const char*>(nl) - start;
      line = strip_cr(std::string_view(start, len));
      begin_ += len + 1;
      return true;
    }
    if (eof_) {
      if (begin_ == end_) return false;
      line = strip_cr(std::string_view(start, end_ - begin_));  // last line without '\n'
      begin_ = end_;
      return true;
    }
    // Keep the partial line, move it to the front and refill; grow only for a line longer
    // than the whole buffer.
    const size_t partial = end_ - begin_;
    if (begin_ > 0) std::memmove(buf_.data(), start, partial);
    begin_ = 0;
    end_ = partial;
    if (end_ == buf_.size()) {
      // Bounded, so that a binary file without newlines cannot eat the host's memory.
      if (buf_.size() >= kMaxLine) {
        error_ = path_ + ":" + std::to_string(line_ + 1) + ": line longer than " +
                 std::to_string(kMaxLine >> 20) + " MiB (not a text trace?)";
        return false;
      }
      buf_.resize(buf_.size() * 2);
    }
    const size_t got = std::fread(buf_.data() + end_, 1, buf_.size() - end_, file_.get());
    end_ += got;
    if (got == 0) {
      if (std::ferror(file_.get())) {
        error_ = path_ + ":" + std::to_string(line_ + 1) + ": read error";
        return false;
      }
      eof_ = true;
    }
  }
}

void TraceReader::detect_format() {
  // The first line that is not blank and not a `#` comment decides: a valgrind message line or
  // a lackey record (I/L/S/M, blank, address,size) means lackey; anything else means cvmsim,
  // whose parser then reports what is wrong with it.
  format_ = TraceFormat::kCvmsim;
  std::string_view raw;
  while (read_line(raw)) {
    const std::string_view t = trim_left(raw);
    if (t.empty() || t[0] == '#') continue;
    if (is_valgrind_message(raw) || is_lackey_record(t)) format_ = TraceFormat::kLackey;
    break;
  }
  rewind();
}

bool TraceReader::rewind() {
  if (!error_.empty()) return false;
  begin_ = end_ = 0;
  eof_ = false;
  line_ = 0;
  pending_store_ = false;
  if (std::fseek(file_.get(), 0, SEEK_SET) != 0) {
    error_ = path_ + ": cannot seek back to the start";
    return false;
  }
  return true;
}

TraceReader::LineResult TraceReader::fail(std::string_view reason) {
  error_ = path_ + ":" + std::to_string(line_) + ": " + std::string(reason);
  return LineResult::kError;
}

TraceReader::Status TraceReader::next(TraceRecord& rec) {
  if (!error_.empty()) return Status::kError;
  if (pending_store_) {
    pending_store_ = false;
    rec = pending_;
    return Status::kRecord;
  }
  std::string_view s;
  while (read_line(s)) {
    ++line_;
    const LineResult r =
        format_ == TraceFormat::kLackey ? parse_lackey(s, rec) : parse_cvmsim(s, rec);
    if (r == LineResult::kRecord) return Status::kRecord;
    if (r == LineResult::kError) return Status::kError;
  }
  return error_.empty() ? Status::kEnd : Status::kError;
}

TraceReader::LineResult TraceReader::parse_cvmsim(std::string_view s, TraceRecord& rec) {
  if (const size_t hash = s.find('#'); hash != std::string_view::npos) s = s.substr(0, hash);
  const std::string_view op = next_token(s);
  if (op.empty()) return LineResult::kSkip;
  char c = op.size() == 1 ? op[0] : '?';
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');

  auto read_size = [&](std::string_view tok, uint32_t& size) -> bool {
    uint64_t v = 0;
    if (tok.empty()) {
      fail("expected a size after the address");
      return false;
    }
    const NumResult nr = parse_cvmsim_number(tok, v);
    if (nr != NumResult::kOk || v == 0 || v > kMaxAccessBytes) {
      fail("size " + quoted(tok) + " must be a number in 1.." + std::to_string(kMaxAccessBytes));
      return false;
    }
    size = static_cast<uint32_t>(v);
    return true;
  };

  rec = TraceRecord{};
  switch (c) {
    case 'R':
    case 'W': {
      rec.kind = c == 'R' ? TraceRecord::Kind::kLoad : TraceRecord::Kind::kStore;
      const std::string_view addr = next_token(s);
      if (addr.empty()) return fail(std::string("expected an address after '") + op[0] + "'");
      const NumResult nr = parse_cvmsim_number(addr, rec.addr);
      if (nr == NumResult::kOverflow)
        return fail("address " + quoted(addr) + " does not fit in 64 bits");
      if (nr != NumResult::kOk)
        return fail("bad address " + quoted(addr) + ": expected hex (0x...) or decimal");
      if (!read_size(next_token(s), rec.size)) return LineResult::kError;
      if (c == 'W') {
        const std::string_view value = next_token(s);
        if (!value.empty()) {
          const NumResult vr = parse_cvmsim_number(value, rec.value);
          if (vr == NumResult::kOverflow)
            return fail("value " + quoted(value) + " does not fit in 64 bits");
          if (vr != NumResult::kOk)
            return fail("bad value " + quoted(value) + ": expected hex (0x...) or decimal");
          rec.has_value = true;
        }
      }
      break;
    }
    case 'C': {
      rec.kind = TraceRecord::Kind::kCompute;
      const std::string_view cycles = next_token(s);
      if (cycles.empty()) return fail("expected a cycle count after 'C'");
      if (parse_cvmsim_number(cycles, rec.cycles) != NumResult::kOk)
        return fail("bad cycle count " + quoted(cycles) + ": expected hex (0x...) or decimal");
      break;
    }
    case 'F':
      rec.kind = TraceRecord::Kind::kFence;
      break;
    default:
      return fail("unknown operation " + quoted(op) + " (expected R, W, C or F)");
  }
  if (const std::string_view extra = next_token(s); !extra.empty())
    return fail("unexpected " + quoted(extra) + " at the end of the line");
  return LineResult::kRecord;
}

TraceReader::LineResult TraceReader::parse_lackey(std::string_view s, TraceRecord& rec) {
  if (is_valgrind_message(s)) return LineResult::kSkip;
  s = trim_left(s);
  if (s.empty() || s[0] == '#') return LineResult::kSkip;
  // --trace-superblocks=yes adds "SB <addr>" lines: not memory accesses.
  if (s.starts_with("SB") && (s.size() == 2 || is_space(s[2]))) return LineResult::kSkip;

  const std::string_view kind = next_token(s);
  const char c = kind.size() == 1 ? kind[0] : '?';
  if (c != 'I' && c != 'L' && c != 'S' && c != 'M')
    return fail("unknown lackey record " + quoted(kind) + " (expected I, L, S or M)");

  s = trim_left(s);
  const size_t comma = s.find(',');
  std::string_view addr = s.substr(0, comma);
  while (!addr.empty() && is_space(addr.back())) addr.remove_suffix(1);
  if (addr.empty()) return fail(std::string("expected an address after '") + c + "'");
  if (comma == std::string_view::npos) return fail("expected ',' and a size after the address");
  rec = TraceRecord{};
  const NumResult nr = parse_lackey_address(addr, rec.addr);
  if (nr == NumResult::kOverflow)
    return fail("address " + quoted(addr) + " does not fit in 64 bits");
  if (nr != NumResult::kOk) return fail("bad address " + quoted(addr) + ": expected hex");

  std::string_view rest = s.substr(comma + 1);
  const std::string_view size = next_token(rest);
  if (size.empty()) return fail("expected a size after ','");
  uint64_t v = 0;
  if (parse_number(size, 10, v) != NumResult::kOk || v == 0 || v > kMaxAccessBytes)
    return fail("size " + quoted(size) + " must be a number in 1.." +
                std::to_string(kMaxAccessBytes));
  rec.size = static_cast<uint32_t>(v);
  if (const std::string_view extra = next_token(rest); !extra.empty())
    return fail("unexpected " + quoted(extra) + " at the end of the line");

  switch (c) {
    case 'I':
      // Instruction fetches are skipped by default: guest code pages would otherwise dominate
      // a trace that is meant to describe data accesses.
      if (!instr_fetches_) return LineResult::kSkip;
      rec.kind = TraceRecord::Kind::kLoad;
      break;
    case 'L':
      rec.kind = TraceRecord::Kind::kLoad;
      break;
    case 'S':
      rec.kind = TraceRecord::Kind::kStore;
      break;
    default:  // 'M': a read-modify-write, which lackey reports as one record
      rec.kind = TraceRecord::Kind::kLoad;
      pending_ = rec;
      pending_.kind = TraceRecord::Kind::kStore;
      pending_store_ = true;
      break;
  }
  return LineResult::kRecord;
}

TraceSummary validate_trace(const std::string& path, TraceFormat format, bool instr_fetches) {
  TraceSummary sum;
  TraceReader reader(path, format, instr_fetches);
  sum.format = reader.format();
  if (!reader.ok()) {
    sum.error = reader.error();
    return sum;
  }
  TraceRecord rec;
  TraceReader::Status st;
  while ((st = reader.next(rec)) == TraceReader::Status::kRecord) {
    switch (rec.kind) {
      case TraceRecord::Kind::kLoad:
        ++sum.loads;
        break;
      case TraceRecord::Kind::kStore:
        ++sum.stores;
        break;
      case TraceRecord::Kind::kCompute:
        ++sum.computes;
        break;
      case TraceRecord::Kind::kFence:
        ++sum.fences;
        break;
    }
  }
  sum.lines = reader.line();
  if (st == TraceReader::Status::kError) sum.error = reader.error();
  return sum;
}

}  // namespace cvmsim
