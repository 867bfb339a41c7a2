// Random exploration figures (docs/performance.md, "Random exploration"): operations per host
// second with incremental checking per backend (and without checks, for the checker's share),
// operations to the first violation per unsafe policy (median over seeds), the size of the shrunk
// reproducers and the time the shrink took. Runs on the functional core only (sim/explore).
//
//   bench_explore [--ops N] [--seeds K] [--million]
//     --ops N      operations per rate measurement and the budget per unsafe-policy search (100000)
//     --seeds K    seeds per unsafe policy (5)
//     --million    also run 1,000,000 operations under mainline policies on each backend
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "sim/explore/explorer.h"

using namespace cvmsim;

namespace {

template <class T>
T median(std::vector<T> v) {
  if (v.empty()) return T{};
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t ops = 100'000, seeds = 5;
  bool million = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--ops") && i + 1 < argc)
      ops = std::stoull(argv[++i]);
    else if (!std::strcmp(argv[i], "--seeds") && i + 1 < argc)
      seeds = std::stoull(argv[++i]);
    else if (!std::strcmp(argv[i], "--million"))
      million = true;
    else {
      std::fprintf(stderr, "usage: bench_explore [--ops N] [--seeds K] [--million]\n");
      return 2;
    }
  }
  const char* backends[] = {"default", "sw_protected", "tdx"};

  std::printf("## Rate: %" PRIu64 " operations, mainline policies, seed 1\n\n", ops);
  std::printf(
      "| backend | ops/s, checked every op (incremental) | ops/s, no checks | violations "
      "|\n|---|---|---|---|\n");
  for (const char* b : backends) {
    explore::Options o;
    o.backend = b;
    o.ops = ops;
    o.keep_sequence = false;
    const auto checked = explore::explore(o);
    o.check_every = ops + 1;  // never
    const auto unchecked = explore::explore(o);
    std::printf("| %s | %.0f | %.0f | %s |\n", b, double(checked.ops_executed) / checked.seconds,
                double(unchecked.ops_executed) / unchecked.seconds,
                checked.violation ? checked.violation->invariant.c_str() : "none");
    std::fflush(stdout);
  }

  if (million) {
    std::printf("\n## 1,000,000 operations, mainline policies, seed 1\n\n");
    std::printf(
        "| backend | operations | errno results | vCPU stops | violation | host seconds "
        "|\n|---|---|---|---|---|---|\n");
    for (const char* b : backends) {
      explore::Options o;
      o.backend = b;
      o.ops = 1'000'000;
      o.keep_sequence = false;
      const auto r = explore::explore(o);
      std::printf(
          "| %s | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %s | %.1f |\n", b, r.ops_executed,
          r.errnos, r.stops,
          r.violation
              ? (r.violation->invariant + " at " + std::to_string(r.violation->op_index)).c_str()
              : "none",
          r.seconds);
      std::fflush(stdout);
    }
  }

  std::printf("\n## Unsafe policies: seeds 1..%" PRIu64 ", at most %" PRIu64 " operations each\n\n",
              seeds, ops);
  std::printf(
      "| backend | policy | found (seeds) | invariants | ops to first violation (median, max) | "
      "shrunk ops (median, max) | shrink re-runs (median) | shrink s (median) |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (const char* b : {"sw_protected", "tdx"}) {
    for (const auto& k : explore::policy_knobs()) {
      std::vector<uint64_t> to_first, shrunk, runs;
      std::vector<double> secs;
      std::vector<std::string> ids;
      for (uint64_t s = 1; s <= seeds; ++s) {
        explore::Options o;
        o.backend = b;
        o.policies = {std::string(k.name)};
        o.seed = s;
        o.ops = ops;
        const auto r = explore::explore(o);
        if (!r.violation) continue;
        to_first.push_back(r.violation->op_index + 1);
        shrunk.push_back(r.shrunk.size());
        runs.push_back(r.shrink_runs);
        secs.push_back(r.shrink_seconds);
        if (std::find(ids.begin(), ids.end(), r.violation->invariant) == ids.end())
          ids.push_back(r.violation->invariant);
      }
      std::string inv;
      for (const auto& i : ids) inv += (inv.empty() ? "" : ", ") + i;
      if (to_first.empty()) {
        std::printf("| %s | %s | 0 of %" PRIu64 " | - | not within %" PRIu64 " | - | - | - |\n", b,
                    std::string(k.name).c_str(), seeds, ops);
      } else {
        std::printf("| %s | %s | %zu of %" PRIu64 " | %s | %" PRIu64 ", %" PRIu64 " | %" PRIu64
                    ", %" PRIu64 " | %" PRIu64 " | %.2f |\n",
                    b, std::string(k.name).c_str(), to_first.size(), seeds, inv.c_str(),
                    median(to_first), *std::max_element(to_first.begin(), to_first.end()),
                    median(shrunk), *std::max_element(shrunk.begin(), shrunk.end()), median(runs),
                    median(secs));
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
