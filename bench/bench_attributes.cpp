// Benchmark (not a test): what KVM_SET_MEMORY_ATTRIBUTES costs the two attribute stores
// (models/kvm/mem_attributes.h) in host time and host memory.
//
// One "set" is what kvm_vm_set_mem_attributes() does to the store (kvm-guest-memfd.md §5):
// the kvm_range_has_memory_attributes() early-exit check, xa_reserve of every index, then the
// store of every index. The pre/post MMU hooks are not part of it.
//
//   range store:  PRIVATE over 1 TiB (2^28 gfns), measured directly.
//   xarray store: PRIVATE over 1, 4 and 16 GiB, measured; 1 TiB is extrapolated per page (it would
//                 be ~2^28 walks and GiBs of nodes).
//
// Every figure is the median of several repetitions; each repetition starts from a fresh store
// (construction and destruction are not timed). Plain C++, no SystemC.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "models/kvm/mem_attributes.h"
#include "models/kvm/uapi.h"

using namespace cvmsim;
using namespace cvmsim::kvm;

namespace {

constexpr uint64_t kPrivate = KVM_MEMORY_ATTRIBUTE_PRIVATE;
constexpr uint64_t kGiBPages = uint64_t{1} << 18;
constexpr uint64_t kTiBPages = uint64_t{1} << 28;

GfnRange range(uint64_t s, uint64_t e) {
  return GfnRange{Gfn(s), Gfn(e)};
}

// kvm_vm_set_mem_attributes() as far as the store is concerned.
void kvm_set(MemAttributeStore& st, GfnRange r, uint64_t attrs) {
  // mask ~0 ANDed with the supported attributes (PRIVATE) by the caller, as KVM does.
  if (st.range_has(r, kPrivate, attrs)) return;
  if (!st.reserve(r).ok()) {
    std::fprintf(stderr, "unexpected ENOMEM\n");
    std::exit(1);
  }
  st.store(r, attrs);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Times op(store) on a store freshly built by prepare(store), reps times; returns the median in ns.
template <class Prepare, class Op>
double time_median(AttrStoreKind kind, int reps, Prepare prepare, Op op, uint64_t* host_bytes) {
  std::vector<double> ns;
  for (int i = 0; i < reps; ++i) {
    auto st = make_attr_store(kind);
    prepare(*st);
    const auto t0 = std::chrono::steady_clock::now();
    op(*st);
    const auto t1 = std::chrono::steady_clock::now();
    ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    *host_bytes = st->host_bytes();
  }
  return median(ns);
}

// 1000 disjoint 2 MiB ranges spread over the first TiB, one every GiB.
void thousand_ranges(MemAttributeStore& st) {
  for (uint64_t i = 0; i < 1000; ++i)
    kvm_set(st, range(i * kGiBPages, i * kGiBPages + 512), kPrivate);
}

}  // namespace

int main(int argc, char** argv) {
  std::string cmd;
  for (int i = 0; i < argc; ++i) cmd += (i ? " " : "") + std::string(argv[i]);
  std::printf("command: %s\n", cmd.c_str());
  std::printf(
      "operation: KVM_SET_MEMORY_ATTRIBUTES store work = range_has early exit + reserve + "
      "store; median of N repetitions, fresh store each\n\n");

  // ---- range store, measured at 1 TiB ----
  const int kRangeReps = 101;
  uint64_t bytes = 0;
  const auto noop = [](MemAttributeStore&) {};
  const double r_empty = time_median(
      AttrStoreKind::kRange, kRangeReps, noop,
      [](MemAttributeStore& st) { kvm_set(st, range(0, kTiBPages), kPrivate); }, &bytes);
  const uint64_t r_empty_bytes = bytes;
  const double r_merge = time_median(
      AttrStoreKind::kRange, kRangeReps, thousand_ranges,
      [](MemAttributeStore& st) { kvm_set(st, range(0, kTiBPages), kPrivate); }, &bytes);
  const double r_back = time_median(
      AttrStoreKind::kRange, kRangeReps,
      [](MemAttributeStore& st) { kvm_set(st, range(0, kTiBPages), kPrivate); },
      [](MemAttributeStore& st) { kvm_set(st, range(0, kTiBPages), 0); }, &bytes);
  const double r_noop = time_median(
      AttrStoreKind::kRange, kRangeReps,
      [](MemAttributeStore& st) { kvm_set(st, range(0, kTiBPages), kPrivate); },
      [](MemAttributeStore& st) { kvm_set(st, range(0, kTiBPages), kPrivate); }, &bytes);

  std::printf("range store, 1 TiB (2^28 gfns), measured, median of %d:\n", kRangeReps);
  std::printf("  shared -> PRIVATE, empty store           %10.0f ns  (%.2e ns/page)  host %llu B\n",
              r_empty, r_empty / kTiBPages, static_cast<unsigned long long>(r_empty_bytes));
  std::printf("  shared -> PRIVATE over 1000 runs (merge) %10.0f ns\n", r_merge);
  std::printf("  PRIVATE -> shared                        %10.0f ns\n", r_back);
  std::printf("  PRIVATE -> PRIVATE (early exit)          %10.0f ns\n", r_noop);
  std::printf("  target: under 1 ms: %s\n\n", r_empty < 1e6 && r_merge < 1e6 ? "met" : "NOT met");

  // ---- xarray store, measured at 1/4/16 GiB, extrapolated to 1 TiB ----
  std::printf("xarray store, measured (median):\n");
  std::printf("  %-7s %5s %14s %10s %16s\n", "size", "reps", "time", "ns/page", "host B/page");
  double last_ns_per_page = 0, last_bytes_per_page = 0;
  for (uint64_t gib : {1, 4, 16}) {
    const uint64_t pages = gib * kGiBPages;
    const int reps = gib == 16 ? 5 : gib == 4 ? 7 : 9;
    const double t = time_median(
        AttrStoreKind::kXarray, reps, noop,
        [pages](MemAttributeStore& st) { kvm_set(st, range(0, pages), kPrivate); }, &bytes);
    last_ns_per_page = t / static_cast<double>(pages);
    last_bytes_per_page = static_cast<double>(bytes) / static_cast<double>(pages);
    std::printf("  %3llu GiB %5d %11.1f ms %10.2f %16.3f  (host %.1f MiB)\n",
                static_cast<unsigned long long>(gib), reps, t / 1e6, last_ns_per_page,
                last_bytes_per_page, static_cast<double>(bytes) / (1 << 20));
  }
  std::printf(
      "  1 TiB EXTRAPOLATED from the 16 GiB figures (not measured): %.2f s, %.2f GiB of "
      "xa_nodes\n\n",
      last_ns_per_page * kTiBPages / 1e9, last_bytes_per_page * kTiBPages / (1ull << 30));

  // ---- host memory after 1000 disjoint ranges ----
  auto rs = make_attr_store(AttrStoreKind::kRange);
  auto xa = make_attr_store(AttrStoreKind::kXarray);
  thousand_ranges(*rs);
  thousand_ranges(*xa);
  std::printf(
      "host memory after setting 1000 disjoint PRIVATE ranges of 2 MiB (512 gfns), one per "
      "GiB:\n");
  std::printf("  range store  %10llu B  (%llu B per range)\n",
              static_cast<unsigned long long>(rs->host_bytes()),
              static_cast<unsigned long long>(rs->host_bytes() / 1000));
  std::printf("  xarray store %10llu B  (%llu B per range)\n",
              static_cast<unsigned long long>(xa->host_bytes()),
              static_cast<unsigned long long>(xa->host_bytes() / 1000));
  return 0;
}
