// bench_conversion: the KVM layer's benchmark (docs/performance.md). A benchmark, not a test.
//
// 1. Conversion round trips: a sw_protected guest converts 4 KiB pages shared->private->shared
//    through the full path (KVM_HC_MAP_GPA_RANGE exit, the VMM, KVM_SET_MEMORY_ATTRIBUTES,
//    punch-hole / MADV_DONTNEED, and the refault on the next touch), with each attribute store.
//    Target: at least 250,000 round trips per host second.
//    The same with invariant checking off, for the checker's overhead (target: at most +25%).
//    run.invariants.trace_events is 0 in every configuration: the checker's cost, without the
//    ring of recent trace events for violation reports (its cost: docs/performance.md).
// 2. Memory: the same number of touched pages in a 64 GiB and a 1 TiB guest (all of it private,
//    with a guest_memfd and an attribute range over it): peak RSS must not grow with the guest's
//    size. Reported as bytes per touched page.
//
// SystemC elaborates once per process, so every measurement is a child process (this program
// with --child); each configuration runs `reps` times and the medians are reported.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <systemc>
#include <vector>

#include "sim/config/loader.h"
#include "sim/platform/run.h"

extern "C" int sc_main(int, char**) {
  return 0;
}

namespace {

struct Config {
  const char* name;
  const char* attr_store;
  uint64_t guest_bytes;
  uint64_t ops;
  const char* kind;  // "convert" or "uniform" (memory test: stores over touched pages)
  uint64_t footprint;
  const char* invariants = "incremental";  // run.invariants.mode
};

std::string scenario_json(const Config& c) {
  char buf[1600];
  std::snprintf(buf, sizeof buf, R"({
    "name": "bench_conversion_%s",
    "platform": {"memory": {"size": "2TiB", "mode": "%s"}, "kvm": {"attr_store": "%s"}},
    "vms": [{"name": "vm0", "type": "sw_protected", "memory": [{"gpa": 0, "size": %llu, "private": true}]}],
    "run": {"invariants": {"mode": "%s", "trace_events": 0}},
    "workloads": [{"vm": "vm0", "kind": "%s", "base": 0, "footprint": %llu, "access_size": 8, "ops": %llu,
                   "read_fraction": 0}]
  })",
                c.name, std::strcmp(c.kind, "convert") == 0 ? "data" : "metadata", c.attr_store,
                static_cast<unsigned long long>(c.guest_bytes), c.invariants, c.kind,
                static_cast<unsigned long long>(c.footprint),
                static_cast<unsigned long long>(c.ops));
  return buf;
}

int child(const Config& c) {
  setenv("SYSTEMC_DISABLE_COPYRIGHT_MESSAGE", "1", 1);
  auto s = cvmsim::config::load_scenario_text(scenario_json(c), "<bench>", ".", {});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cvmsim::run_scenario(s, {});
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  for (const auto& p : r.problems) std::fprintf(stderr, "bench_conversion: %s\n", p.c_str());
  std::printf("wall=%.6f maxrss_kb=%ld problems=%zu\n", wall, ru.ru_maxrss, r.problems.size());
  return r.problems.empty() ? 0 : 1;
}

struct Sample {
  double wall = 0;
  long rss_kb = 0;
};

bool run_child(const char* self, size_t index, Sample& out) {
  char cmd[512];
  std::snprintf(cmd, sizeof cmd, "%s --child %zu", self, index);
  FILE* p = popen(cmd, "r");
  if (!p) return false;
  char line[256] = {0};
  bool ok = false;
  size_t problems = 1;
  while (std::fgets(line, sizeof line, p))
    if (std::sscanf(line, "wall=%lf maxrss_kb=%ld problems=%zu", &out.wall, &out.rss_kb,
                    &problems) == 3)
      ok = true;
  const int st = pclose(p);
  return ok && problems == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

template <class T>
T median(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kRoundTrips = 200'000;
constexpr uint64_t kTouchedPages = 65'536;

const Config kConfigs[] = {
    {"xarray", "xarray", 64 * kGiB / 1024, kRoundTrips, "convert", 4 << 20},
    {"range", "range", 64 * kGiB / 1024, kRoundTrips, "convert", 4 << 20},
    {"mem_64GiB", "range", 64 * kGiB, kTouchedPages * 4, "uniform", kTouchedPages * 4096},
    {"mem_1TiB", "range", 1024 * kGiB, kTouchedPages * 4, "uniform", kTouchedPages * 4096},
    {"mem_1TiB_4x", "range", 1024 * kGiB, kTouchedPages * 16, "uniform", kTouchedPages * 4 * 4096},
    {"xarray_nocheck", "xarray", 64 * kGiB / 1024, kRoundTrips, "convert", 4 << 20, "off"},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--child") == 0) {
    const size_t i = std::strtoul(argv[2], nullptr, 10);
    if (i >= std::size(kConfigs)) return 2;
    return child(kConfigs[i]);
  }
  unsigned reps = 5;
  if (argc == 3 && std::strcmp(argv[1], "--reps") == 0)
    reps = static_cast<unsigned>(std::max(1, std::atoi(argv[2])));
  else if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--reps N]\n", argv[0]);
    return 2;
  }
  std::string load;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char b[128] = {0};
    if (std::fgets(b, sizeof b, f)) load = b;
    std::fclose(f);
    if (!load.empty() && load.back() == '\n') load.pop_back();
  }
  std::printf("cvmsim bench_conversion\ncommand:  %s%s\nload average before the run: %s\n", argv[0],
              argc == 3 ? (std::string(" --reps ") + argv[2]).c_str() : "", load.c_str());
  std::printf("each configuration runs %u times as a child process; medians reported\n\n", reps);

  // Repetitions are interleaved across configurations, so that a burst of load on this shared
  // machine hits every configuration alike and the ratios stay meaningful.
  std::vector<Sample> med(std::size(kConfigs));
  std::vector<std::vector<double>> walls(std::size(kConfigs));
  std::vector<std::vector<long>> rss(std::size(kConfigs));
  for (unsigned r = 0; r < reps; ++r) {
    for (size_t i = 0; i < std::size(kConfigs); ++i) {
      Sample s;
      if (!run_child(argv[0], i, s)) {
        std::printf("FAIL  configuration %s did not run cleanly\n", kConfigs[i].name);
        return 1;
      }
      walls[i].push_back(s.wall);
      rss[i].push_back(s.rss_kb);
    }
  }
  for (size_t i = 0; i < std::size(kConfigs); ++i)
    med[i] = Sample{median(walls[i]), median(rss[i])};

  bool all = true;
  std::printf(
      "conversion round trips (sw_protected, 4 KiB, shared->private->shared, VMM discards the "
      "other side)\n");
  for (size_t i = 0; i < 2; ++i) {
    const double rate = static_cast<double>(kConfigs[i].ops) / med[i].wall;
    std::printf("  %-7s attribute store: %" PRIu64 " round trips in %.3f s = %8.0f round trips/s\n",
                kConfigs[i].attr_store, kConfigs[i].ops, med[i].wall, rate);
    const bool ok = rate >= 250'000;
    all = all && ok;
    std::printf("%s  %s store: >= 250,000 round trips/s\n", ok ? "PASS" : "FAIL",
                kConfigs[i].attr_store);
  }
  {
    const double on = med[0].wall, off = med[5].wall;
    const double overhead = on / off - 1.0;
    std::printf("  invariant checking: incremental %.3f s vs off %.3f s (xarray store): %+.1f%%\n",
                on, off, 100.0 * overhead);
    const bool ok = overhead <= 0.25;
    all = all && ok;
    std::printf(
        "%s  incremental invariant checking adds at most 25%% to the conversion benchmark\n",
        ok ? "PASS" : "FAIL");
  }
  std::printf("\nhost memory vs guest size (%" PRIu64
              " touched pages, uniform stores, metadata-only memory)\n",
              kTouchedPages);
  const double b64 = static_cast<double>(med[2].rss_kb) * 1024.0,
               b1t = static_cast<double>(med[3].rss_kb) * 1024.0;
  std::printf("  64 GiB guest: peak RSS %.1f MiB\n", b64 / (1 << 20));
  std::printf("  1 TiB guest:  peak RSS %.1f MiB\n", b1t / (1 << 20));
  std::printf("  difference: %.1f MiB for 16x the guest physical address space\n",
              (b1t - b64) / (1 << 20));
  // The run touches (up to) kTouchedPages guest pages; bytes per touched page of the whole process.
  const double b4x = static_cast<double>(med[4].rss_kb) * 1024.0;
  std::printf("  1 TiB guest, 4x the touched pages: peak RSS %.1f MiB\n", b4x / (1 << 20));
  // Marginal cost: what the extra touched pages added (whole process, all models).
  std::printf("  marginal host bytes per touched 4 KiB page: %.1f\n",
              (b4x - b1t) / static_cast<double>(3 * kTouchedPages));
  const bool flat = b1t <= b64 * 1.10 + 4.0 * (1 << 20);
  all = all && flat;
  std::printf("%s  peak RSS does not grow with guest size (1 TiB within 10%% + 4 MiB of 64 GiB)\n",
              flat ? "PASS" : "FAIL");
  std::printf(all ? "\nall targets met\n"
                  : "\n!!! a target was MISSED: see the FAIL lines above !!!\n");
  return 0;
}
