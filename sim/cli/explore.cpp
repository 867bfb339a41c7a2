#include "sim/cli/explore.h"

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "sim/platform/run.h"

namespace cvmsim {

namespace {

std::string commas(uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::string describe(const explore::Op& op) {
  const config::StepConfig s = explore::to_step(op);
  return config::JsonWriter::write_object(const_cast<config::StepConfig&>(s)).dump();
}

}  // namespace

int print_policies(bool markdown) {
  if (markdown) {
    std::printf(
        "| Policy | Scenario field | Mainline | `--policy NAME` selects | What it changes "
        "|\n|---|---|---|---|---|\n");
    for (const auto& k : explore::policy_knobs())
      std::printf("| `%s` | %s | `%s` | `%s` | %s |\n", std::string(k.name).c_str(),
                  k.path.empty() ? "(explorer: the operation mix)"
                                 : ("`" + std::string(k.path) + "`").c_str(),
                  std::string(k.mainline).c_str(), std::string(k.unsafe).c_str(),
                  std::string(k.description).c_str());
    return 0;
  }
  std::printf("%-22s %-36s %-16s %-16s %s\n", "policy", "scenario field", "mainline",
              "--policy NAME", "what it changes");
  for (const auto& k : explore::policy_knobs())
    std::printf("%-22s %-36s %-16s %-16s %s\n", std::string(k.name).c_str(),
                k.path.empty() ? "(explorer: operation mix)" : std::string(k.path).c_str(),
                std::string(k.mainline).c_str(), std::string(k.unsafe).c_str(),
                std::string(k.description).c_str());
  return 0;
}

int run_explore(const explore::Options& o, const std::string& out, bool quiet) {
  explore::Result r;
  try {
    r = explore::explore(o);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "cvmsim: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cvmsim: internal error: %s\n", e.what());
    return 3;
  }
  std::string pol;
  for (const auto& p : o.policies) pol += (pol.empty() ? "" : " ") + p;
  if (!quiet) {
    std::printf("cvmsim explore: backend %s, policies %s, seed %" PRIu64 "\n", o.backend.c_str(),
                pol.empty() ? "mainline" : pol.c_str(), o.seed);
    std::printf(
        "  operations     %s executed (%s errno results, %s vCPU stops), checked every %" PRIu64
        "\n",
        commas(r.ops_executed).c_str(), commas(r.errnos).c_str(), commas(r.stops).c_str(),
        o.check_every ? o.check_every : 1);
    std::printf(
        "  rate           %s ops/s (%.3f s)\n",
        commas(static_cast<uint64_t>(r.seconds > 0 ? double(r.ops_executed) / r.seconds : 0))
            .c_str(),
        r.seconds);
  }
  if (!r.violation) {
    if (!quiet) std::printf("  violation      none\n");
    return 0;
  }
  std::printf("  violation      %s at operation %" PRIu64 ": %s\n", r.violation->invariant.c_str(),
              r.violation->op_index, r.violation->message.c_str());
  if (r.reproducer.empty()) {
    std::printf(
        "  shrunk         no replayable sequence (the explored one has steps a scenario cannot "
        "expect)\n");
    return 1;
  }
  std::printf("  shrunk         %zu -> %zu operations (%" PRIu64 " re-runs, %.2f s)\n",
              r.sequence.size(), r.shrunk.size(), r.shrink_runs, r.shrink_seconds);
  if (!quiet)
    for (size_t i = 0; i < r.shrunk.size(); ++i)
      std::printf("    %zu %s\n", i, describe(r.shrunk[i]).c_str());
  // Replay the reproducer on the SystemC platform, as `cvmsim check` does.
  config::LoadedScenario ls;
  try {
    ls = config::load_scenario_text(r.reproducer, out.empty() ? "<reproducer>" : out, ".", {});
  } catch (const config::ConfigError& e) {
    std::fprintf(stderr, "cvmsim: internal error: the reproducer does not load: %s\n", e.what());
    return 3;
  }
  if (!out.empty()) {
    std::ofstream f(out, std::ios::binary | std::ios::trunc);
    if (!f || !(f << r.reproducer) || !f.flush()) {
      std::fprintf(stderr, "cvmsim: error: --out %s: cannot write the reproducer\n", out.c_str());
      return 2;
    }
  }
  RunReport rep;
  try {
    rep = run_scenario(ls, RunOptions{});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cvmsim: internal error: replaying the reproducer: %s\n", e.what());
    return 3;
  }
  if (!rep.problems.empty()) {
    for (const auto& p : rep.problems) std::fprintf(stderr, "cvmsim: replay: %s\n", p.c_str());
    std::fprintf(
        stderr,
        "cvmsim: internal error: the reproducer does not replay on the platform (please report)\n");
    return 3;
  }
  std::printf("  reproducer     %s (replayed: %zu expectation(s) met)\n",
              out.empty() ? "not written (--out FILE writes it)" : out.c_str(), rep.expectations);
  return 1;
}

}  // namespace cvmsim
