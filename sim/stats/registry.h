// Statistics of a run: every component registers its counters under its hierarchical name
// (the module path, e.g. "platform.vm0.cpu0.tlb.hits"); at the end the registry snapshots them
// and writes stats.json and stats.csv. Host figures (wall time, rates) are kept apart so that
// determinism checks can leave them out.
#pragma once

#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "hw/base/stat_visitor.h"

namespace cvmsim {

struct StatEntry {
  std::string name;
  std::variant<uint64_t, double> value;
  std::string unit;
  std::string description;
};

class StatsRegistry {
 public:
  using Describe = std::function<void(StatVisitor&)>;
  // `describe` is called at snapshot time and names each statistic relative to `prefix`.
  void add(std::string prefix, Describe describe);
  void add_host(std::string name, double value, std::string unit, std::string description);

  std::vector<StatEntry> snapshot() const;
  const std::vector<StatEntry>& host() const { return host_; }

  // stats.json: {"run": {...}, "stats": {name: {value, unit, description}}, "host": {...}}
  std::string to_json(const std::vector<std::pair<std::string, std::string>>& run_info) const;
  // stats.csv: section,name,value,unit,description
  std::string to_csv() const;

 private:
  std::vector<std::pair<std::string, Describe>> groups_;
  std::vector<StatEntry> host_;
};

}  // namespace cvmsim
