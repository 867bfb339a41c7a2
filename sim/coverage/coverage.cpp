#include "sim/coverage/coverage.h"

#include <map>
#include <stdexcept>

#include "models/backend/registry.h"
#include "models/kvm/kvm_machines.h"

namespace cvmsim::coverage {

const std::vector<sm::Machine*>& machines() {
  // KVM's own machines, then every registered backend's, in registry order.
  static const std::vector<sm::Machine*> all = [] {
    std::vector<sm::Machine*> v{&kvm::gfn_machine(false), &kvm::gfn_machine(true)};
    for (const backend::Descriptor* d : backend::all())
      if (d->machines)
        for (sm::Machine* m : d->machines()) v.push_back(m);
    return v;
  }();
  return all;
}

sm::Machine* find_machine(const std::string& name) {
  for (sm::Machine* m : machines())
    if (m->name() == name) return m;
  return nullptr;
}

nlohmann::json to_json(const sm::Coverage& cov) {
  nlohmann::json out = nlohmann::json::object();
  nlohmann::json list = nlohmann::json::array();
  for (const sm::Machine* m : machines()) {
    const sm::Counts& c = cov.of(*m);
    nlohmann::json jm;
    jm["machine"] = m->name();
    jm["backends"] = m->backends();
    jm["declared"] = m->transitions().size();
    jm["exercised"] = c.exercised();
    nlohmann::json ts = nlohmann::json::array();
    for (size_t i = 0; i < m->transitions().size(); ++i) {
      if (!c.counts()[i]) continue;
      const sm::Transition& t = m->transitions()[i];
      ts.push_back({{"from", m->states()[t.from]},
                    {"op", m->ops()[t.op]},
                    {"outcome", m->outcomes()[t.outcome]},
                    {"to", m->states()[t.to]},
                    {"count", c.counts()[i]}});
    }
    jm["transitions"] = ts;
    nlohmann::json un = nlohmann::json::array();
    for (const auto& [what, n] : c.undeclared()) un.push_back({{"transition", what}, {"count", n}});
    jm["undeclared"] = un;
    list.push_back(jm);
  }
  out["machines"] = list;
  return out;
}

void merge_json(sm::Coverage& cov, const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("machines") || !j["machines"].is_array())
    throw std::runtime_error(where + ": not a coverage file (no \"machines\" array)");
  for (const auto& jm : j["machines"]) {
    const std::string name = jm.value("machine", "");
    sm::Machine* m = find_machine(name);
    if (!m) throw std::runtime_error(where + ": unknown machine \"" + name + "\"");
    sm::Counts& c = cov.of(*m);
    for (const auto& t : jm.value("transitions", nlohmann::json::array())) {
      const int f = m->state_index(t.value("from", "")), o = m->op_index(t.value("op", "")),
                oc = m->outcome_index(t.value("outcome", "")),
                to = m->state_index(t.value("to", ""));
      const int id = (f < 0 || o < 0 || oc < 0) ? sm::Machine::kNone : m->find(f, o, oc);
      if (id == sm::Machine::kNone || m->transitions()[id].to != to)
        throw std::runtime_error(where + ": machine " + name + " declares no transition " +
                                 t.dump());
      c.add_count(static_cast<unsigned>(id), t.value("count", uint64_t{0}));
    }
    for (const auto& u : jm.value("undeclared", nlohmann::json::array()))
      c.add_undeclared(u.value("transition", "?"), u.value("count", uint64_t{0}));
  }
}

uint64_t undeclared_total(const sm::Coverage& cov) {
  uint64_t n = 0;
  for (const sm::Machine* m : machines())
    for (const auto& [what, c] : cov.of(*m).undeclared()) n += c;
  return n;
}

std::string summary_line(const sm::Coverage& cov) {
  std::string s;
  for (const sm::Machine* m : machines()) {
    const sm::Counts& c = cov.of(*m);
    if (c.exercised() == 0 && c.undeclared().empty()) continue;
    s += (s.empty() ? "" : ", ") + m->name() + " " + std::to_string(c.exercised()) + "/" +
         std::to_string(m->transitions().size());
  }
  if (s.empty()) return "coverage: no transitions recorded";
  const uint64_t u = undeclared_total(cov);
  return "coverage: " + s + " transitions; " +
         (u ? std::to_string(u) + " undeclared (model/spec mismatch)" : "no undeclared");
}

std::string report(const sm::Coverage& cov, bool list_refusals) {
  std::string o;
  // Per backend: the machines its runs exercise.
  std::map<std::string, std::vector<const sm::Machine*>> by_backend;
  for (const sm::Machine* m : machines()) {
    size_t p = 0;
    const std::string& b = m->backends();
    while (p <= b.size()) {
      const size_t q = b.find(',', p);
      by_backend[b.substr(p, q == std::string::npos ? std::string::npos : q - p)].push_back(m);
      if (q == std::string::npos) break;
      p = q + 1;
    }
  }
  o += "Transition coverage per backend (exercised/declared):\n";
  for (const auto& [backend, ms] : by_backend) {
    o += "  " + backend + ":";
    for (const sm::Machine* m : ms)
      o += "  " + m->name() + " " + std::to_string(cov.of(*m).exercised()) + "/" +
           std::to_string(m->transitions().size());
    o += "\n";
  }
  for (const sm::Machine* m : machines()) {
    const sm::Counts& c = cov.of(*m);
    const size_t declared = m->transitions().size();
    const unsigned ex = c.exercised();
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f%%", declared ? 100.0 * ex / declared : 0.0);
    unsigned succ_decl = 0, succ_ex = 0;
    for (size_t i = 0; i < declared; ++i) {
      if (m->transitions()[i].outcome != 0) continue;
      ++succ_decl;
      succ_ex += c.counts()[i] != 0;
    }
    o += "\nmachine " + m->name() + " (" + m->title() + "; backends " + m->backends() + ")\n";
    o += "  exercised " + std::to_string(ex) + " of " + std::to_string(declared) +
         " declared transitions (" + pct + "); successful ones: " + std::to_string(succ_ex) +
         " of " + std::to_string(succ_decl) + "\n";
    std::string never;
    unsigned hidden = 0;
    for (size_t i = 0; i < declared; ++i) {
      if (c.counts()[i]) continue;
      const sm::Transition& t = m->transitions()[i];
      if (!list_refusals && t.outcome != 0) {
        ++hidden;
        continue;
      }
      never += "    " + m->describe(t) + "   [" + std::string(t.cite) + "]\n";
    }
    if (!never.empty() || hidden) {
      o += "  never exercised" + std::string(list_refusals ? "" : " (successful outcomes)") +
           ":\n" + never;
      if (hidden)
        o += "    ... and " + std::to_string(hidden) + " refusal(s) (--refusals lists them)\n";
    }
    if (!c.undeclared().empty()) {
      o += "  UNDECLARED (observed but not in the table: a model/spec mismatch):\n";
      for (const auto& [what, n] : c.undeclared())
        o += "    " + what + "  x" + std::to_string(n) + "\n";
    }
  }
  o += "\nundeclared transitions: " + std::to_string(undeclared_total(cov)) + "\n";
  return o;
}

}  // namespace cvmsim::coverage
