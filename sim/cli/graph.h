#pragma once
#include <cstddef>
#include <optional>
#include <string>

#include "sim/config/loader.h"

namespace cvmsim {
// `cvmsim graph`: runs the scenario, snapshots the ownership graph after step `at_step` (or at
// the end) and writes it as DOT to `out` (stdout if empty); an `out` ending in .svg or .png is
// rendered with Graphviz's dot, the .dot written next to it. Returns the exit status.
int run_graph(const config::LoadedScenario& s, std::optional<size_t> at_step,
              const std::string& out);
}  // namespace cvmsim
