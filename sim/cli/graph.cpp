// Boost.Graph's named_graph reads a default-constructed boost::optional that GCC 12's flow
// analysis calls uninitialised once inlined (at -O1 with sanitizers): a false positive in a
// system header, silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "sim/cli/graph.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sim/invariants/ownership_graph.h"
#include "sim/platform/run.h"

extern char** environ;

namespace fs = std::filesystem;

namespace cvmsim {

namespace {

// The path of `prog` on PATH, or empty.
std::string on_path(const std::string& prog) {
  const char* path = std::getenv("PATH");
  if (!path) return {};
  std::stringstream in(path);
  for (std::string dir; std::getline(in, dir, ':');) {
    const fs::path p = fs::path(dir.empty() ? "." : dir) / prog;
    if (::access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p)) return p.string();
  }
  return {};
}

// dot -T<fmt> in -o out; true on success.
bool render(const std::string& dot, const std::string& fmt, const std::string& in,
            const std::string& out) {
  std::string t = "-T" + fmt;
  std::string o = "-o";
  std::vector<char*> argv{const_cast<char*>(dot.c_str()), t.data(),
                          const_cast<char*>(in.c_str()),  o.data(),
                          const_cast<char*>(out.c_str()), nullptr};
  pid_t pid;
  if (posix_spawn(&pid, dot.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return false;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int run_graph(const config::LoadedScenario& s, std::optional<size_t> at_step,
              const std::string& out) {
  const auto& steps = s.config.steps;
  if (at_step && *at_step >= steps.size()) {
    std::fprintf(stderr, "cvmsim: error: --at-step %zu: the scenario has %s\n", *at_step,
                 steps.empty() ? "no steps"
                               : (std::to_string(steps.size()) + " steps (0-" +
                                  std::to_string(steps.size() - 1) + ")")
                                     .c_str());
    return 2;
  }
  // What to write: FILE.dot, or FILE.svg / FILE.png with FILE.dot next to it.
  std::string dot_path, image_fmt;
  if (!out.empty()) {
    const std::string ext = fs::path(out).extension().string();
    if (ext == ".dot" || ext == ".gv")
      dot_path = out;
    else if (ext == ".svg" || ext == ".png") {
      dot_path = fs::path(out).replace_extension(".dot").string();
      image_fmt = ext.substr(1);
    } else {
      std::fprintf(stderr,
                   "cvmsim: error: --out %s: the file name must end in .dot, .svg or .png\n",
                   out.c_str());
      return 2;
    }
    const fs::path dir = fs::path(out).parent_path();
    if (!dir.empty() && !fs::is_directory(dir)) {
      std::fprintf(stderr, "cvmsim: error: --out %s: no such directory %s\n", out.c_str(),
                   dir.string().c_str());
      return 2;
    }
  }

  std::string dot_text, when;
  std::vector<kvm::Violation> graph_violations;
  RunOptions ro;
  ro.snapshot_step = at_step;
  ro.snapshot = [&](const kvm::Kvm& kvm, const PhysMem& mem, const std::string& w) {
    const invariants::OwnershipGraph g = invariants::build_ownership_graph(kvm, mem);
    when = w;
    std::string title = "cvmsim ownership graph: scenario \"" + s.config.name + "\", " + w;
    if (at_step && w.rfind("after step", 0) == 0) {
      const auto& st = steps[*at_step];
      title += " (" + st.actor + " " + std::string(config::step_op_info(st.op).name) +
               (st.label.empty() ? "" : ": " + st.label) + ")";
    }
    dot_text = g.dot(title);
    graph_violations = g.check_private_frames();
  };
  RunReport r;
  try {
    r = run_scenario(s, ro);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cvmsim: internal error: %s\n", e.what());
    return 3;
  }
  // The run's own problems do not make the picture wrong: they are notes.
  for (const auto& p : r.problems) std::fprintf(stderr, "cvmsim: note: %s\n", p.c_str());
  if (at_step && when.rfind("after step", 0) != 0)
    std::fprintf(stderr, "cvmsim: note: step %zu never completed; the graph shows the state %s\n",
                 *at_step, when.c_str());
  for (const auto& v : graph_violations)
    std::fprintf(stderr, "cvmsim: the graph shows a violation of %s: %s\n", v.invariant.c_str(),
                 v.message.c_str());
  if (dot_path.empty()) {
    std::fputs(dot_text.c_str(), stdout);
    return 0;
  }
  {
    std::ofstream o(dot_path, std::ios::binary | std::ios::trunc);
    o << dot_text;
    if (!o.flush()) {
      std::fprintf(stderr, "cvmsim: error: cannot write %s\n", dot_path.c_str());
      return 2;
    }
  }
  if (image_fmt.empty()) return 0;
  const std::string dot = on_path("dot");
  if (dot.empty()) {
    std::fprintf(
        stderr,
        "cvmsim: note: Graphviz's dot is not on PATH: wrote %s only (render it with dot -T%s)\n",
        dot_path.c_str(), image_fmt.c_str());
    return 0;
  }
  if (!render(dot, image_fmt, dot_path, out)) {
    std::fprintf(stderr, "cvmsim: error: %s -T%s %s failed\n", dot.c_str(), image_fmt.c_str(),
                 dot_path.c_str());
    return 3;
  }
  return 0;
}

}  // namespace cvmsim
