// The cvmsim command (sim/cli). Exit status: 0 success, 1 expectations not met, 2 bad input,
// 3 internal error (a bug: please report it). `explore`: 0 no violation, 1 a violation found, 2 bad
// usage, 3 its reproducer did not replay (docs/explore.md).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "models/backend/registry.h"
#include "sim/cli/coverage_cmd.h"
#include "sim/cli/explore.h"
#include "sim/cli/graph.h"
#include "sim/cli/list.h"
#include "sim/config/loader.h"
#include "sim/coverage/coverage.h"
#include "sim/platform/run.h"
#include "sim/version.h"

namespace fs = std::filesystem;
using namespace cvmsim;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitExpectations = 1;
constexpr int kExitBadInput = 2;

const char* kOutputs[] = {"effective_config.json", "stats.json", "stats.csv",
                          "coverage.json",         "trace.txt",  "violations.txt"};

// Writes `text` to dir/name through a temporary file and a rename, so that a file that exists is
// always complete.
void write_atomically(const fs::path& dir, const std::string& name, const std::string& text) {
  const fs::path tmp = dir / ("." + name + ".tmp");
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    if (!o) throw std::runtime_error("cannot write " + tmp.string());
    o << text;
    if (!o.flush()) throw std::runtime_error("cannot write " + tmp.string());
  }
  fs::rename(tmp, dir / name);
}

// "cvmsim: error: FILE: POINTER: reason"; errors about the file itself name it once.
void report(const std::string& scenario, const config::ConfigError& e) {
  const std::string file = scenario.empty() ? "<built-in default>" : scenario;
  if (e.pointer() == file || e.pointer().rfind("--set", 0) == 0)
    std::fprintf(stderr, "cvmsim: error: %s\n", e.what());
  else
    std::fprintf(stderr, "cvmsim: error: %s: %s\n", file.c_str(), e.what());
}

int do_run(const std::string& scenario, const std::string& out, std::optional<uint64_t> seed,
           const std::vector<std::string>& sets, bool quiet, bool check = false) {
  config::LoadOptions lo;
  lo.overrides = sets;
  lo.seed = seed;
  config::LoadedScenario s;
  try {
    s = config::load_scenario(scenario, lo);
  } catch (const config::ConfigError& e) {
    report(scenario, e);
    return kExitBadInput;
  }
  fs::path dir;
  RunOptions ro;
  ro.progress = !quiet && isatty(STDERR_FILENO);
  if (!out.empty()) {
    dir = out;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) {
      std::fprintf(stderr, "cvmsim: error: --out %s: cannot create the output directory (%s)\n",
                   out.c_str(), ec ? ec.message().c_str() : "not a directory");
      return kExitBadInput;
    }
    // Remove results of an earlier run first, so that a failed run never leaves old files that
    // look like its own.
    for (const char* f : kOutputs) fs::remove(dir / f, ec);
    if (s.config.run.trace) ro.trace_path = (dir / "trace.txt").string();
  }
  sm::Coverage transitions;  // the run's coverage: read after the run, teardown included
  ro.coverage = &transitions;
  RunReport r;
  try {
    r = run_scenario(s, ro);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cvmsim: internal error: %s\n", e.what());
    return 3;
  }
  // Transition coverage (docs/coverage.md): the run's platform is gone by now, so its teardown
  // transitions are counted too.
  const std::string coverage_line = coverage::summary_line(transitions);
  if (!out.empty()) {
    write_atomically(dir, "effective_config.json", config::effective_config(s).dump(2) + "\n");
    write_atomically(dir, "stats.csv", r.stats_csv);
    if (!r.violations_report.empty()) write_atomically(dir, "violations.txt", r.violations_report);
    write_atomically(dir, "coverage.json", coverage::to_json(transitions).dump(2) + "\n");
    write_atomically(dir, "stats.json", r.stats_json);  // last: its presence marks a complete run
  }
  if (check) {
    // cvmsim check: every expectation, then the verdict.
    for (const auto& f : r.expectation_failures) std::printf("FAIL %s\n", f.c_str());
    for (const auto& p : r.problems)
      if (p.rfind("expectation not met: ", 0) != 0) std::printf("FAIL %s\n", p.c_str());
    const size_t failed = r.problems.size();
    std::printf("%s: %zu expectation(s) checked, %s\n",
                scenario.empty() ? "<built-in default>" : scenario.c_str(), r.expectations,
                failed ? (std::to_string(failed) + " problem(s)").c_str() : "all met");
    std::printf("%s\n", coverage_line.c_str());
    return failed ? kExitExpectations : kExitOk;
  }
  if (!quiet) std::fputs(r.summary.c_str(), stdout);
  if (!quiet) std::printf("  %s\n", coverage_line.c_str());
  for (const auto& p : r.problems) std::fprintf(stderr, "cvmsim: %s\n", p.c_str());
  return r.problems.empty() ? kExitOk : kExitExpectations;
}

int do_validate(const std::string& scenario, const std::vector<std::string>& sets) {
  config::LoadOptions lo;
  lo.overrides = sets;
  try {
    auto s = config::load_scenario(scenario, lo);
    std::printf("%s: valid (%zu VM(s), %zu workload(s))\n", scenario.c_str(), s.config.vms.size(),
                s.config.workloads.size());
    return kExitOk;
  } catch (const config::ConfigError& e) {
    report(scenario, e);
    return kExitBadInput;
  }
}

}  // namespace

// libsystemc references sc_main; cvmsim drives the kernel from its own main instead, so that it
// can parse its command line and silence the banner before SystemC starts.
extern "C" int sc_main(int, char**) {
  return 0;
}

int main(int argc, char** argv) {
  setenv("SYSTEMC_DISABLE_COPYRIGHT_MESSAGE", "1", 1);  // keep stdout for our summary
  CLI::App app{"cvmsim: a full-system simulator of confidential-VM memory isolation"};
  app.set_version_flag("--version", std::string(kVersion) + " (" + kGitDescribe + ")");
  app.require_subcommand(1);

  std::string scenario, out;
  std::optional<uint64_t> seed;
  std::vector<std::string> sets;
  bool quiet = false;
  auto* run =
      app.add_subcommand("run", "simulate a scenario (the built-in default if none is given)");
  run->add_option("scenario", scenario, "scenario JSON file");
  run->add_option("--out,-o", out,
                  "directory for stats.json, stats.csv, effective_config.json (and trace.txt)");
  run->add_option("--seed", seed, "master seed (overrides the scenario's)");
  run->add_option("--set", sets, "override a field: --set platform.mmu.tlb.ways=8 (repeatable)")
      ->take_all();
  run->add_flag("--quiet,-q", quiet, "print nothing but errors");

  bool markdown = false;
  auto* list = app.add_subcommand("list",
                                  "list components and every scenario parameter with its default "
                                  "(--steps: the step operations)");
  list->add_flag("--markdown", markdown, "print the scenario field reference as Markdown tables");
  bool steps = false, invs = false, list_machines = false;
  list->add_flag("--steps", steps, "list the scenario step operations instead");
  list->add_flag("--machines", list_machines,
                 "list the declared state machines and their transitions (docs/coverage.md)");
  list->add_flag("--invariants", invs, "with --markdown: the invariant catalogue as a table");

  std::string cscenario, cout_dir;
  std::optional<uint64_t> cseed;
  std::vector<std::string> csets;
  auto* check = app.add_subcommand(
      "check", "run a scenario and check its expectations: exit 0 if all hold, 1 otherwise");
  check->add_option("scenario", cscenario, "scenario JSON file")->required();
  check->add_option("--out,-o", cout_dir, "also write the outputs into this directory");
  check->add_option("--seed", cseed, "master seed (overrides the scenario's)");
  check->add_option("--set", csets, "override a field (repeatable)")->take_all();

  std::string vscenario;
  std::vector<std::string> vsets;
  auto* validate = app.add_subcommand("validate", "check a scenario file without running it");
  validate->add_option("scenario", vscenario, "scenario JSON file")->required();
  validate->add_option("--set", vsets, "override a field (repeatable)")->take_all();

  std::string gscenario, gout;
  std::optional<uint64_t> gseed;
  std::optional<size_t> gstep;
  std::vector<std::string> gsets;
  auto* graph = app.add_subcommand(
      "graph",
      "run a scenario and write its ownership graph (who can reach which frame) in Graphviz DOT");
  graph->add_option("scenario", gscenario, "scenario JSON file")->required();
  graph->add_option("--at-step", gstep,
                    "snapshot right after this step (0-based) completes; default: at the end");
  graph->add_option(
      "--out,-o", gout,
      "FILE.dot, or FILE.svg / FILE.png to render with Graphviz (default: DOT on stdout)");
  graph->add_option("--seed", gseed, "master seed (overrides the scenario's)");
  graph->add_option("--set", gsets, "override a field (repeatable)")->take_all();

  explore::Options eo;
  std::string eout;
  bool elist = false, eno_shrink = false, equiet = false;
  auto* explore_cmd = app.add_subcommand(
      "explore",
      "random operations from every actor, invariants checked after each; a violation is shrunk to "
      "a "
      "reproducer scenario (exit 0: none found, 1: found, 2: bad usage; docs/explore.md)");
  explore_cmd->add_option("--backend", eo.backend, "VM type of the two VMs: " + backend::names())
      ->check(CLI::IsMember([] {
        std::vector<std::string> names;
        for (const backend::Descriptor* d : backend::all()) names.push_back(d->name);
        return names;
      }()));
  explore_cmd
      ->add_option("--policy", eo.policies,
                   "NAME[=VALUE]: a policy knob (NAME alone: its unsafe value); repeatable")
      ->take_all();
  explore_cmd->add_option("--seed", eo.seed, "seed of the operation stream");
  explore_cmd->add_option("--ops", eo.ops, "operations to run at most")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  explore_cmd->add_option("--out,-o", eout, "write the shrunk reproducer scenario to FILE");
  explore_cmd
      ->add_option("--check-every", eo.check_every,
                   "check invariants at the boundaries of every K-th operation")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  explore_cmd->add_option("--max-shrink-runs", eo.max_shrink_runs,
                          "re-runs the shrinker may spend");
  explore_cmd->add_flag("--no-shrink", eno_shrink, "write the explored sequence as it is");
  explore_cmd->add_flag("--list-policies", elist, "list the policy knobs and exit");
  bool emarkdown = false;
  explore_cmd->add_flag("--markdown", emarkdown, "with --list-policies: as a Markdown table");
  explore_cmd->add_flag("--quiet,-q", equiet, "print only the violation");
  CoverageOptions copt;
  auto* cov = app.add_subcommand("coverage",
                                 "run scenarios (default: ./scenarios) and report which "
                                 "state-machine transitions they exercised");
  cov->add_option(
      "paths", copt.paths,
      "scenario files, directories of them (recursive), or coverage.json files to merge");
  cov->add_option("--jobs,-j", copt.jobs, "scenarios run in parallel (default 1)");
  cov->add_option("--dot", copt.dot_machine,
                  "write machine MACHINE as Graphviz DOT, coloured by the coverage");
  cov->add_flag("--plain", copt.plain,
                "with --dot: the declared machine only, no runs, no colours");
  cov->add_flag("--refusals", copt.refusals,
                "also list never-exercised refusals / draw refusal self-loops");
  cov->add_flag("--quiet,-q", copt.quiet, "do not list skipped scenarios");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitBadInput;
  }
  if (*run) return do_run(scenario, out, seed, sets, quiet);
  if (*check) return do_run(cscenario, cout_dir, cseed, csets, true, true);
  if (*cov) {
    std::error_code ec;
    const std::string self = fs::read_symlink("/proc/self/exe", ec).string();
    return run_coverage(copt, self.empty() ? argv[0] : self.c_str());
  }
  if (*list && list_machines) return print_machines();
  if (*list)
    return steps                ? print_steps(markdown)
           : (invs && markdown) ? print_invariants_markdown()
                                : print_list(markdown);
  if (*validate) return do_validate(vscenario, vsets);
  if (*explore_cmd) {
    if (elist) return print_policies(emarkdown);
    eo.shrink = !eno_shrink;
    return run_explore(eo, eout, equiet);
  }
  if (*graph) {
    config::LoadOptions lo;
    lo.overrides = gsets;
    lo.seed = gseed;
    config::LoadedScenario s;
    try {
      s = config::load_scenario(gscenario, lo);
    } catch (const config::ConfigError& e) {
      report(gscenario, e);
      return kExitBadInput;
    }
    return run_graph(s, gstep, gout);
  }
  return kExitBadInput;
}
