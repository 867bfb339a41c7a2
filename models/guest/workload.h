// Guest workload generators: synthetic memory-access streams (sequential, strided, uniform,
// Zipf, hot/cold) and trace replay, all behind the GuestProgram interface (hw/cpu/guest_op.h).
// A WorkloadSpec is plain data (the config layer maps it from JSON); make_workload checks it and
// builds the program. Every generator is deterministic for a given Rng.
//
// Semantics shared by the synthetic kinds (offsets are relative to `base`):
//   - The footprint is cut into slots of `access_size` bytes: slot i is [i*A, i*A + A). Only
//     whole slots are used, so every access lies in [base, base + footprint_bytes) and, when A is
//     a power of two and base is A-aligned, is naturally aligned. A trailing partial slot is never
//     touched.
//   - sequential: slot 0, 1, 2, ..., wrapping to slot 0 after the last slot.
//   - strided: offsets 0, S, 2S, ... modulo the used length L (whole slots); an offset that would
//     cross L (possible only when S is not a multiple of A) is moved down to L - A.
//   - uniform: a slot drawn uniformly.
//   - zipf, hotcold: page-granular. The footprint's whole 4 KiB pages (P of them; a trailing
//     partial page is unused) are the items; an access picks a page, then a slot inside it
//     uniformly (4096 / A slots per page). zipf picks the page of rank k with probability
//     proportional to k^-zipf_theta (zipf.h). hotcold has H = round(hot_fraction * P) hot
//     pages, clamped to [1, P - 1]; an access goes to a uniform hot page with probability
//     hot_probability, otherwise to a uniform cold page. With scatter_pages (default) ranks and
//     the hot set are spread over the footprint by a seeded bijection (page_permutation.h);
//     without it rank k is page k - 1 and the hot set is the first H pages.
//   - Each memory op is a load with probability read_fraction (no draw when it is 0 or 1), else
//     a store of store_pattern/store_value. Loads carry the same pattern and `verify_loads`, so a
//     vCPU can check what it reads (meaningful only if the memory holds that pattern).
//   - compute_cycles_between > 0 inserts a compute op of that many cycles between consecutive
//     memory ops (not before the first or after the last).
//   - `ops` counts memory ops; expected_ops() also counts the compute ops.
// Trace replay (kind trace) is described in docs/trace-format.md and trace_program.h.
// convert: each of the `ops` operations is one conversion round trip of one 4 KiB page (pages
// taken in turn from the footprint): KVM_HC_MAP_GPA_RANGE to private, a store of access_size
// bytes, KVM_HC_MAP_GPA_RANGE to shared, a store. With a VMM that discards the opposite backing,
// every store faults a fresh frame in (kvm-guest-memfd.md §11).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/pattern.h"
#include "hw/base/rng.h"
#include "hw/cpu/guest_op.h"

namespace cvmsim {

enum class WorkloadKind : uint8_t {
  kSequential,
  kStrided,
  kUniform,
  kZipf,
  kHotCold,
  kTrace,
  kConvert
};
enum class TraceFormat : uint8_t { kAuto, kCvmsim, kLackey };

// Names as in scenario files: "sequential", "strided", "uniform", "zipf", "hotcold", "trace",
// "convert".
std::string_view name_of(WorkloadKind k);
std::optional<WorkloadKind> parse_workload_kind(std::string_view s);
// "auto", "cvmsim", "lackey".
std::string_view name_of(TraceFormat f);
std::optional<TraceFormat> parse_trace_format(std::string_view s);

// Fields a kind does not use are ignored (and not checked).
struct WorkloadSpec {
  WorkloadKind kind = WorkloadKind::kSequential;
  Gpa base{0};
  // > 0 and >= access_size; zipf needs >= 4 KiB, hotcold >= 8 KiB. Traces fold into it.
  uint64_t footprint_bytes = uint64_t{1} << 20;
  // 1..4096. Synthetic kinds only: a trace gives each access's size.
  uint32_t access_size = 8;
  // Memory ops to generate, >= 1. Trace: a limit, 0 = the whole trace times trace_repeat.
  uint64_t ops = 100000;
  double read_fraction = 0.5;  // [0, 1]

  uint64_t stride_bytes = 4096;  // strided: >= 1
  double zipf_theta = 0.99;      // zipf: [0, 100]; 0 is uniform over pages
  double hot_fraction = 0.1;     // hotcold: (0, 1), share of pages that are hot
  double hot_probability = 0.9;  // hotcold: [0, 1], share of accesses that go to the hot set
  bool scatter_pages = true;     // zipf/hotcold: spread ranks / the hot set over the footprint

  uint64_t compute_cycles_between = 0;  // 0 = no compute ops
  PatternKind store_pattern = PatternKind::kSeeded;
  uint64_t store_value = 0x5eed;  // pattern value (kValue) or seed (kSeeded)
  bool verify_loads = false;

  // kind == trace (docs/trace-format.md)
  std::string trace_path;  // used as given; the config layer resolves relative paths
  TraceFormat trace_format = TraceFormat::kAuto;
  bool trace_instr_fetches = false;  // lackey `I` records: false = skip, true = replay as loads
  // Passes over the file; 0 = loop until `ops` memory ops (then ops must be > 0).
  uint64_t trace_repeat = 1;
  // Parse the whole file once in make_workload, so that errors surface before the run.
  bool trace_validate = true;
};

// make_workload's answer. Result<T> (hw/base/result.h) carries an errno, which cannot say which
// field was wrong; a user needs "zipf_theta: must be in [0, 100], got -1".
struct MakeWorkloadResult {
  std::unique_ptr<GuestProgram> program;  // null on error
  std::string error;  // "<field>: <reason>" naming a WorkloadSpec member, empty on success
  bool ok() const { return program != nullptr; }
};

// Checks the fields `spec.kind` uses (others are ignored) without touching any file. Returns ""
// or "<field>: <reason>".
std::string check_workload_spec(const WorkloadSpec& spec);

// Builds the program. For traces (with trace_validate) the whole file is read once here, so a
// malformed line is reported now as "trace_path: <file>:<line>: <reason>" rather than mid-run.
// Never throws on bad values; every rejection names the field.
MakeWorkloadResult make_workload(const WorkloadSpec& spec, Rng rng);

namespace guest {

// A vCPU's program after the guest kernel booted: first a compute op of `boot_cycles` (the
// kernel's boot work, e.g. accepting memory, done when the platform was built so that the
// simulated time shows it), then `inner` (which may be null: nothing more). Results and stops
// of `inner`'s operations are forwarded; the compute op's are not.
class AfterBootProgram final : public GuestProgram {
 public:
  AfterBootProgram(uint64_t boot_cycles, std::unique_ptr<GuestProgram> inner)
      : boot_cycles_(boot_cycles), inner_(std::move(inner)) {}
  bool next(GuestOp& op) override {
    if (!boot_done_) {
      boot_done_ = true;
      if (boot_cycles_) {
        op = GuestOp::compute(boot_cycles_);
        own_outstanding_ = true;
        return true;
      }
    }
    return inner_ && inner_->next(op);
  }
  uint64_t expected_ops() const override {
    return (boot_cycles_ ? 1 : 0) + (inner_ ? inner_->expected_ops() : 0);
  }
  std::string_view error() const override { return inner_ ? inner_->error() : std::string_view{}; }
  bool wants_results() const override { return inner_ && inner_->wants_results(); }
  void on_result(const GuestOp& op, const OpResult& r) override {
    if (own_outstanding_) {
      own_outstanding_ = false;
      return;
    }
    if (inner_) inner_->on_result(op, r);
  }
  void on_stop(std::string_view reason) override {
    if (inner_) inner_->on_stop(reason);
  }

 private:
  uint64_t boot_cycles_;
  std::unique_ptr<GuestProgram> inner_;
  bool boot_done_ = false;
  bool own_outstanding_ = false;
};

}  // namespace guest

}  // namespace cvmsim
