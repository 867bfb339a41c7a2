#include "sim/stats/registry.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace cvmsim {

namespace {
class Collector final : public StatVisitor {
 public:
  Collector(const std::string& prefix, std::vector<StatEntry>* out) : prefix_(prefix), out_(out) {}
  void counter(std::string_view n, const uint64_t& v, std::string_view u,
               std::string_view d) override {
    out_->push_back({name(n), v, std::string(u), std::string(d)});
  }
  void value(std::string_view n, const double& v, std::string_view u, std::string_view d) override {
    out_->push_back({name(n), v, std::string(u), std::string(d)});
  }

 private:
  std::string name(std::string_view n) const {
    return prefix_.empty() ? std::string(n) : prefix_ + "." + std::string(n);
  }
  const std::string& prefix_;
  std::vector<StatEntry>* out_;
};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

std::string value_text(const StatEntry& e) {
  if (std::holds_alternative<uint64_t>(e.value)) return std::to_string(std::get<uint64_t>(e.value));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", std::get<double>(e.value));
  return buf;
}

nlohmann::ordered_json entry_json(const StatEntry& e) {
  nlohmann::ordered_json j;
  if (std::holds_alternative<uint64_t>(e.value))
    j["value"] = std::get<uint64_t>(e.value);
  else
    j["value"] = std::get<double>(e.value);
  j["unit"] = e.unit;
  j["description"] = e.description;
  return j;
}
}  // namespace

void StatsRegistry::add(std::string prefix, Describe describe) {
  groups_.emplace_back(std::move(prefix), std::move(describe));
}

void StatsRegistry::add_host(std::string name, double value, std::string unit,
                             std::string description) {
  host_.push_back({std::move(name), value, std::move(unit), std::move(description)});
}

std::vector<StatEntry> StatsRegistry::snapshot() const {
  std::vector<StatEntry> out;
  for (const auto& [prefix, describe] : groups_) {
    Collector c(prefix, &out);
    describe(c);
  }
  return out;
}

std::string StatsRegistry::to_json(
    const std::vector<std::pair<std::string, std::string>>& run_info) const {
  nlohmann::ordered_json j;
  auto& run = j["run"];
  run = nlohmann::ordered_json::object();
  for (const auto& [k, v] : run_info) run[k] = v;
  auto& stats = j["stats"];
  stats = nlohmann::ordered_json::object();
  for (const auto& e : snapshot()) stats[e.name] = entry_json(e);
  auto& host = j["host"];
  host = nlohmann::ordered_json::object();
  for (const auto& e : host_) host[e.name] = entry_json(e);
  return j.dump(2) + "\n";
}

std::string StatsRegistry::to_csv() const {
  std::string out = "section,name,value,unit,description\n";
  auto row = [&](const char* section, const StatEntry& e) {
    out += std::string(section) + "," + csv_field(e.name) + "," + value_text(e) + "," +
           csv_field(e.unit) + "," + csv_field(e.description) + "\n";
  };
  for (const auto& e : snapshot()) row("stats", e);
  for (const auto& e : host_) row("host", e);
  return out;
}

}  // namespace cvmsim
