// What a vCPU executes: a stream of guest operations. Workload generators, trace replay and the
// guest kernel model (models/guest) produce them through the GuestProgram interface declared
// here, so hw/cpu depends on nothing above it (ARCHITECTURE.md principle 2).
#pragma once

#include <cstdint>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/pattern.h"

namespace cvmsim {

enum class OpKind : uint8_t {
  kLoad,       // read `size` bytes at `gpa`; with `verify`, compare against the pattern
  kStore,      // write `size` bytes of the pattern at `gpa`
  kCompute,    // spend `cycles` cycles without touching memory
  kFence,      // synchronise with simulated time (ends the current time quantum)
  kHypercall,  // exit to the hypervisor with `nr` and `args`
  kSync,       // wait at synchronisation point `nr` (scenario barriers; see SyncHandler)
  // Later backends add accept/validate/convert operations here.
};

std::string_view name_of(OpKind k);

inline constexpr uint32_t kMaxAccessBytes = 4096;

struct GuestOp {
  OpKind kind = OpKind::kCompute;
  Gpa gpa{};
  uint32_t size = 0;  // load/store: 1..kMaxAccessBytes, may cross pages
  PatternKind pattern = PatternKind::kValue;
  uint64_t value = 0;   // pattern value or seed
  bool verify = false;  // loads: check the bytes read against the pattern
  uint64_t cycles = 0;  // compute: how long
  uint64_t nr = 0;      // hypercall number
  uint64_t args[4] = {0, 0, 0, 0};

  static GuestOp load(Gpa g, uint32_t n) { return {.kind = OpKind::kLoad, .gpa = g, .size = n}; }
  static GuestOp store(Gpa g, uint32_t n, uint64_t v, PatternKind p = PatternKind::kValue) {
    return {.kind = OpKind::kStore, .gpa = g, .size = n, .pattern = p, .value = v};
  }
  static GuestOp compute(uint64_t c) { return {.kind = OpKind::kCompute, .cycles = c}; }
  static GuestOp fence() { return {.kind = OpKind::kFence}; }
};

// What became of one operation, for programs that check results (scenario steps).
struct OpResult {
  bool verify_mismatch = false;  // a verified load read something else
  uint64_t ret = 0;              // hypercall: the value returned to the guest
};

// A source of guest operations for one vCPU. next() fills `op` and returns true, or returns
// false when the program has ended. Implementations must be deterministic for a given seed.
class GuestProgram {
 public:
  virtual ~GuestProgram() = default;
  virtual bool next(GuestOp& op) = 0;
  // Number of operations the program will produce, if known (for progress reporting).
  virtual uint64_t expected_ops() const { return 0; }
  // Why the program ended early, or empty if it ended normally (or has not ended). The vCPU asks
  // after next() returns false and, if this is not empty, stops with it as the stop reason, so
  // that a program that failed half-way (a trace line that does not parse) is reported as a
  // failed run, not passed off as a short one. The view must stay valid while the program lives.
  virtual std::string_view error() const { return {}; }
  // Programs that check results return true; the vCPU then reports every completed operation
  // through on_result, and a stop through on_stop (so others pay no call per operation).
  virtual bool wants_results() const { return false; }
  virtual void on_result(const GuestOp&, const OpResult&) {}
  virtual void on_stop(std::string_view /*reason*/) {}
};

}  // namespace cvmsim
