// Loading a scenario: file -> JSON (with comments allowed) -> overrides -> typed, validated
// ScenarioConfig. Every failure is a ConfigError naming a JSON pointer (or the file) and why.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "hw/base/schema_json.h"
#include "sim/config/scenario_config.h"

namespace cvmsim::config {

struct LoadOptions {
  std::vector<std::string> overrides;  // --set k=v, in order
  std::optional<uint64_t> seed;        // --seed
};

struct LoadedScenario {
  ScenarioConfig config;
  std::string source;    // file path, or "<built-in default>"
  std::string base_dir;  // directory relative paths in the scenario resolve against
};

// Throws ConfigError. `path` empty means the built-in default scenario.
LoadedScenario load_scenario(const std::string& path, const LoadOptions& opts);
LoadedScenario load_scenario_text(const std::string& text, const std::string& source_name,
                                  const std::string& base_dir, const LoadOptions& opts);

// The built-in default scenario (what `cvmsim run` with no argument simulates).
const char* default_scenario_json();

// The workload generator's spec for a validated workload entry.
WorkloadSpec workload_spec(const WorkloadConfig& w);

// effective_config.json: every field with defaults resolved, plus provenance.
Json effective_config(const LoadedScenario& s);

}  // namespace cvmsim::config
