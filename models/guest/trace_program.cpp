#include "models/guest/trace_program.h"

#include <algorithm>

namespace cvmsim {

namespace {

uint64_t fold_length(uint64_t footprint) {
  // Whole pages only, so that folding keeps each address's offset within its 4 KiB page.
  return footprint >= kPageBytes ? footprint & ~(kPageBytes - 1) : footprint;
}

uint64_t saturating_mul(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? ~uint64_t{0} : r;
}

// How many ops an access of `size` bytes at folded offset `off` becomes.
uint64_t piece_count(uint64_t off, uint64_t size, uint64_t len) {
  const uint64_t room = len - off;
  if (size <= room) return 1;
  return 1 + (size - room + len - 1) / len;
}

}  // namespace

TraceProgram::TraceProgram(const WorkloadSpec& spec)
    : base_(spec.base),
      fold_len_(fold_length(spec.footprint_bytes)),
      pattern_(spec.store_pattern),
      pattern_value_(spec.store_value),
      verify_(spec.verify_loads),
      compute_between_(spec.compute_cycles_between),
      mem_limit_(spec.ops),
      repeat_(spec.trace_repeat),
      reader_(spec.trace_path, spec.trace_format, spec.trace_instr_fetches) {
  if (fold_len_ == 0) error_ = "footprint_bytes: must be > 0";
  if (!reader_.ok()) error_ = reader_.error();
  done_ = !error_.empty();
}

std::string TraceProgram::dry_run() {
  if (!error_.empty()) return error_;
  uint64_t mem = 0;
  uint64_t other = 0;
  TraceRecord rec;
  TraceReader::Status st;
  while ((st = reader_.next(rec)) == TraceReader::Status::kRecord) {
    if (rec.kind == TraceRecord::Kind::kLoad || rec.kind == TraceRecord::Kind::kStore) {
      mem += piece_count(rec.addr % fold_len_, rec.size, fold_len_);
    } else {
      ++other;
    }
  }
  if (st == TraceReader::Status::kError) {
    error_ = reader_.error();
  } else if (mem == 0) {
    error_ = reader_.path() + ": contains no loads or stores";
    if (reader_.format() == TraceFormat::kLackey)
      error_ += " (lackey I records are skipped unless trace_instr_fetches is set)";
  } else if (!reader_.rewind()) {
    error_ = reader_.error();
  }
  if (!error_.empty()) {
    done_ = true;
    return error_;
  }

  // Exact unless `ops` cuts a pass short; then the C/F records are estimated pro rata.
  const uint64_t full_mem = repeat_ == 0 ? ~uint64_t{0} : saturating_mul(mem, repeat_);
  const uint64_t full_other = repeat_ == 0 ? ~uint64_t{0} : saturating_mul(other, repeat_);
  uint64_t total_mem = full_mem;
  uint64_t total_other = full_other;
  if (mem_limit_ != 0 && mem_limit_ < full_mem) {
    total_mem = mem_limit_;
    total_other = static_cast<uint64_t>(static_cast<double>(other) / static_cast<double>(mem) *
                                        static_cast<double>(mem_limit_));
  }
  uint64_t total = total_mem;
  const uint64_t computes = compute_between_ != 0 ? total_mem - 1 : 0;
  if (__builtin_add_overflow(total, total_other, &total) ||
      __builtin_add_overflow(total, computes, &total))
    total = ~uint64_t{0};
  expected_ops_ = total;
  return {};
}

bool TraceProgram::end_of_pass() {
  ++passes_done_;
  if (repeat_ != 0 && passes_done_ >= repeat_) {
    done_ = true;
    return false;
  }
  if (mem_in_pass_ == 0) {
    // Repeating would loop forever without producing a memory op.
    error_ = reader_.path() + ": contains no loads or stores";
    done_ = true;
    return false;
  }
  mem_in_pass_ = 0;
  if (!reader_.rewind()) {
    error_ = reader_.error();
    done_ = true;
    return false;
  }
  return true;
}

void TraceProgram::emit_piece(GuestOp& op) {
  const uint64_t len = std::min(piece_left_, fold_len_ - piece_off_);
  const Gpa gpa = base_ + piece_off_;
  const uint32_t size = static_cast<uint32_t>(len);
  if (cur_.kind == TraceRecord::Kind::kLoad) {
    op = GuestOp{.kind = OpKind::kLoad,
                 .gpa = gpa,
                 .size = size,
                 .pattern = pattern_,
                 .value = pattern_value_,
                 .verify = verify_};
  } else if (cur_.has_value) {
    op = GuestOp::store(gpa, size, cur_.value, PatternKind::kValue);
  } else {
    op = GuestOp::store(gpa, size, pattern_value_, pattern_);
  }
  piece_off_ += len;
  if (piece_off_ == fold_len_) piece_off_ = 0;
  piece_left_ -= len;
  ++mem_emitted_;
  ++mem_in_pass_;
  compute_due_ = compute_between_ != 0;
}

bool TraceProgram::next(GuestOp& op) {
  for (;;) {
    if (done_) return false;
    if (mem_limit_ != 0 && mem_emitted_ >= mem_limit_) {
      done_ = true;
      return false;
    }
    if (piece_left_ > 0) {
      if (compute_due_) {
        compute_due_ = false;
        op = GuestOp::compute(compute_between_);
        return true;
      }
      emit_piece(op);
      return true;
    }
    switch (reader_.next(cur_)) {
      case TraceReader::Status::kError:
        error_ = reader_.error();
        done_ = true;
        return false;
      case TraceReader::Status::kEnd:
        if (!end_of_pass()) return false;
        continue;
      case TraceReader::Status::kRecord:
        break;
    }
    switch (cur_.kind) {
      case TraceRecord::Kind::kCompute:
        op = GuestOp::compute(cur_.cycles);
        return true;
      case TraceRecord::Kind::kFence:
        op = GuestOp::fence();
        return true;
      case TraceRecord::Kind::kLoad:
      case TraceRecord::Kind::kStore:
        piece_off_ = cur_.addr % fold_len_;
        piece_left_ = cur_.size;
        break;
    }
  }
}

}  // namespace cvmsim
