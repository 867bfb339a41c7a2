#include "sim/cli/coverage_cmd.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/coverage/coverage.h"

extern char** environ;

namespace fs = std::filesystem;

namespace cvmsim {

namespace {

// A coverage file is a JSON object with a "machines" array (what `cvmsim run --out` writes as
// coverage.json); anything else is taken for a scenario.
bool is_coverage_file(const fs::path& p, nlohmann::json* out) {
  std::ifstream in(p);
  try {
    *out = nlohmann::json::parse(in);
  } catch (const std::exception&) {
    return false;
  }
  return out->is_object() && out->contains("machines");
}

struct Job {
  std::string scenario;
  fs::path out;
  pid_t pid = -1;
  int rc = -1;
};

pid_t spawn_check(const char* self, const Job& j) {
  std::vector<std::string> args{self, "check", j.scenario, "--out", j.out.string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // The child's own report goes to files in its output directory, not to our stdout.
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, (j.out / "check.out").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, (j.out / "check.err").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int e = posix_spawn(&pid, self, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return e == 0 ? pid : -1;
}

std::string first_line(const fs::path& p) {
  std::ifstream in(p);
  std::string l;
  std::getline(in, l);
  return l;
}

}  // namespace

int run_coverage(const CoverageOptions& o, const char* self) {
  using coverage::machines;
  if (!o.dot_machine.empty() && !coverage::find_machine(o.dot_machine)) {
    std::string names;
    for (const auto* m : machines()) names += " " + m->name();
    std::fprintf(stderr, "cvmsim: error: --dot %s: no such machine (machines:%s)\n",
                 o.dot_machine.c_str(), names.c_str());
    return 2;
  }
  if (o.plain) {
    if (o.dot_machine.empty()) {
      std::fprintf(stderr, "cvmsim: error: --plain needs --dot MACHINE\n");
      return 2;
    }
    std::fputs(sm::to_dot(*coverage::find_machine(o.dot_machine), nullptr, o.refusals).c_str(),
               stdout);
    return 0;
  }
  // Collect scenarios and coverage files, sorted, so that the report does not depend on the
  // order of the directory listing.
  std::vector<std::string> paths = o.paths;
  if (paths.empty()) paths.push_back("scenarios");
  std::vector<std::string> scenarios, files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(p, ec))
        if (e.is_regular_file() && e.path().extension() == ".json")
          found.push_back(e.path().string());
      std::sort(found.begin(), found.end());
      for (const auto& f : found) {
        nlohmann::json j;
        (is_coverage_file(f, &j) ? files : scenarios).push_back(f);
      }
    } else if (fs::is_regular_file(p, ec)) {
      nlohmann::json j;
      (is_coverage_file(p, &j) ? files : scenarios).push_back(p);
    } else {
      std::fprintf(stderr, "cvmsim: error: %s: no such file or directory%s\n", p.c_str(),
                   o.paths.empty() ? " (the default; name the scenario directory)" : "");
      return 2;
    }
  }
  // Run the scenarios, `jobs` at a time, each into its own temporary output directory.
  char tmpl[] = "/tmp/cvmsim-coverage-XXXXXX";
  const char* tmp = scenarios.empty() ? nullptr : mkdtemp(tmpl);
  if (!scenarios.empty() && !tmp) {
    std::fprintf(stderr, "cvmsim: error: cannot create a temporary directory\n");
    return 2;
  }
  std::vector<Job> jobs;
  for (size_t i = 0; i < scenarios.size(); ++i) {
    Job j;
    j.scenario = scenarios[i];
    j.out = fs::path(tmp) / std::to_string(i);
    fs::create_directories(j.out);
    jobs.push_back(j);
  }
  size_t next = 0, running = 0;
  const unsigned width = std::max(1u, o.jobs);
  while (next < jobs.size() || running) {
    while (next < jobs.size() && running < width) {
      jobs[next].pid = spawn_check(self, jobs[next]);
      if (jobs[next].pid < 0) {
        jobs[next].rc = 3;
      } else {
        ++running;
      }
      ++next;
    }
    if (!running) continue;
    int st = 0;
    const pid_t pid = wait(&st);
    if (pid < 0) break;
    for (Job& j : jobs)
      if (j.pid == pid) j.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 3;
    --running;
  }
  unsigned ran = 0, skipped = 0, failed = 0, crashed = 0;
  std::string notes;
  sm::Coverage suite;  // every run's coverage, merged
  try {
    for (const Job& j : jobs) {
      const fs::path cj = j.out / "coverage.json";
      if (j.rc != 2 && !fs::exists(cj)) {
        // An internal error (exit 3) or a signal: the suite's coverage would be incomplete.
        ++crashed;
        notes += "  FAILED to run " + j.scenario + " (exit " + std::to_string(j.rc) + ": " +
                 first_line(j.out / "check.err") + ")\n";
        continue;
      }
      if (j.rc == 2) {
        ++skipped;
        if (!o.quiet)
          notes += "  skipped " + j.scenario + " (exit " + std::to_string(j.rc) + ": " +
                   first_line(j.out / "check.err") + ")\n";
        continue;
      }
      std::ifstream in(cj);
      coverage::merge_json(suite, nlohmann::json::parse(in), cj.string());
      ++ran;
      if (j.rc != 0) {
        ++failed;
        notes += "  " + j.scenario + ": exit " + std::to_string(j.rc) +
                 " (expectations not met; its coverage counts)\n";
      }
    }
    for (const std::string& f : files) {
      std::ifstream in(f);
      coverage::merge_json(suite, nlohmann::json::parse(in), f);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cvmsim: error: %s\n", e.what());
    if (tmp) fs::remove_all(tmp);
    return 2;
  }
  if (tmp) fs::remove_all(tmp);
  if (!o.dot_machine.empty()) {
    const sm::Machine& m = *coverage::find_machine(o.dot_machine);
    std::fputs(sm::to_dot(m, &suite.of(m), o.refusals).c_str(), stdout);
  } else {
    std::printf(
        "%u scenario(s) run, %u skipped (bad input), %u with unmet expectations, %u failed to run; "
        "%zu coverage "
        "file(s) merged\n",
        ran, skipped, failed, crashed, files.size());
    if (!notes.empty()) std::fputs(notes.c_str(), stdout);
    std::fputs(coverage::report(suite, o.refusals).c_str(), stdout);
  }
  return coverage::undeclared_total(suite) || crashed ? 1 : 0;
}

int print_machines() {
  for (const sm::Machine* m : coverage::machines()) {
    std::printf("%s  (%s; backends %s)\n", m->name().c_str(), m->title().c_str(),
                m->backends().c_str());
    std::string s;
    for (const auto& x : m->states()) s += " " + x;
    std::printf("  states:%s\n", s.c_str());
    s.clear();
    for (const auto& x : m->ops()) s += " " + x;
    std::printf("  operations:%s\n", s.c_str());
    s.clear();
    for (const auto& x : m->outcomes()) s += " " + x;
    std::printf("  outcomes:%s\n", s.c_str());
    std::printf("  %zu declared transitions:\n", m->transitions().size());
    for (const auto& t : m->transitions())
      std::printf("    %s   [%s]\n", m->describe(t).c_str(), std::string(t.cite).c_str());
    for (const auto& e : m->errors()) std::printf("  ERROR %s\n", e.c_str());
  }
  return 0;
}

}  // namespace cvmsim
