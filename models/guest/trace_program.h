// Trace replay as a GuestProgram (docs/trace-format.md). Trace addresses are folded into the
// workload's footprint: with L = footprint_bytes rounded down to a multiple of 4 KiB (or
// footprint_bytes itself if below 4 KiB), an access at trace address a becomes
// gpa = base + (a mod L); this keeps every address's offset inside its 4 KiB page, and so its
// alignment. An access that would run past base + L is split: the part up to the end, then the
// rest from base (what folding every byte separately would give). Each piece is its own op.
//
// Errors: make_workload validates the file up front (trace_validate). If the file still fails
// mid-run (validation skipped, the file changed underneath, an I/O error), next() returns false
// and error() says why; the vCPU checks GuestProgram::error() when the program ends and stops
// with it, so that a partial run is not passed off as complete.
#pragma once

#include <cstdint>
#include <string>

#include "hw/cpu/guest_op.h"
#include "models/guest/trace_reader.h"
#include "models/guest/workload.h"

namespace cvmsim {

class TraceProgram final : public GuestProgram {
 public:
  // `spec` must have passed check_workload_spec. Check error() afterwards (file open problems).
  explicit TraceProgram(const WorkloadSpec& spec);

  bool next(GuestOp& op) override;
  uint64_t expected_ops() const override { return expected_ops_; }

  // Empty unless the trace could not be opened or read, or a line failed to parse.
  std::string_view error() const override { return error_; }
  TraceFormat format() const { return reader_.format(); }

  // Reads one whole pass (with folding and splitting, ignoring `ops`) to find errors and count
  // ops, then rewinds; sets expected_ops(). Returns "" or the error. Call before the first next().
  std::string dry_run();

 private:
  bool end_of_pass();  // false when the program has ended
  void emit_piece(GuestOp& op);

  Gpa base_;
  uint64_t fold_len_;
  PatternKind pattern_;
  uint64_t pattern_value_;
  bool verify_;
  uint64_t compute_between_;
  uint64_t mem_limit_;  // 0 = none
  uint64_t repeat_;     // 0 = forever
  TraceReader reader_;
  std::string error_;
  uint64_t expected_ops_ = 0;

  uint64_t passes_done_ = 0;
  uint64_t mem_emitted_ = 0;
  uint64_t mem_in_pass_ = 0;
  bool compute_due_ = false;
  bool done_ = false;
  // The access being emitted, possibly in several pieces.
  TraceRecord cur_;
  uint64_t piece_off_ = 0;
  uint64_t piece_left_ = 0;
};

}  // namespace cvmsim
