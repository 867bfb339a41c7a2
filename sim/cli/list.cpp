#include "sim/cli/list.h"

#include <cstdio>
#include <string>

#include "hw/base/schema_json.h"
#include "models/backend/registry.h"
#include "models/kvm/backend.h"
#include "models/sw_protected/sw_protected_backend.h"
#include "sim/config/scenario_config.h"
#include "sim/invariants/invariants.h"

namespace cvmsim {

namespace {
struct Component {
  const char* path;
  const char* what;
};
constexpr Component kComponents[] = {
    {"platform.memory",
     "DRAM: TLM target over sparse physical frames with key, integrity and label metadata "
     "(hw/memory)"},
    {"platform.router",
     "interconnect: address map, latency, DMI pass-through and invalidation broadcast "
     "(hw/platform)"},
    {"platform.host.page_allocator",
     "host page allocator for guest memory and page-table frames (models/host)"},
    {"platform.kvm",
     "the simulated KVM module: /dev/kvm, VM/vCPU/guest_memfd files, uAPI with Linux errno "
     "(models/kvm)"},
    {"platform.<vm>.kvm",
     "a KVM VM: memslots, memory attributes, the KVM MMU (fault path, zaps, TLB flushes) "
     "(models/kvm)"},
    {"platform.<vm>.kvm.stage2",
     "the VM's stage-2 page table: EPT, NPT or Arm stage-2, in real frames (hw/mmu)"},
    {"platform.<vm>.vmm",
     "the userspace VMM: RAM set-up, KVM_RUN exit handling, conversion policy (models/vmm)"},
    {"platform.<vm>.vmm.mm",
     "the VMM's address space: anonymous shared backing, MMU notifiers (models/host)"},
    {"platform.<vm>.cpu<N>",
     "vCPU: runs a guest program, loosely timed with a quantum keeper (hw/cpu)"},
    {"platform.<vm>.cpu<N>.tlb",
     "per-vCPU set-associative TLB tagged by address-space id (hw/mmu)"},
    {"platform.<vm>.cpu<N>.walker", "stage-2 walker with page-walk cache (hw/mmu)"},
    {"platform.<vm>.cpu<N>.kvm",
     "KVM's side of the vCPU: exits it handled, exits to userspace (models/kvm)"},
    {"steps",
     "scenario actors (vmm, host, <vm>.cpu<N>) running the scenario's steps with expectations "
     "(sim/scenario)"},
};

std::string md_escape(const std::string& s) {
  std::string o;
  for (char c : s) o += (c == '|') ? std::string("\\|") : std::string(1, c);
  return o;
}
}  // namespace

// The invariant catalogue: the generic ones and every registered backend's.
std::vector<kvm::InvariantDef> all_invariants() {
  auto defs = invariants::generic_invariants();
  for (const backend::Descriptor* d : backend::all())
    if (d->invariants)
      for (auto& inv : d->invariants()) defs.push_back(std::move(inv));
  return defs;
}

int print_invariants_markdown() {
  std::printf("| Id | Invariant | Source | Backends |\n|---|---|---|---|\n");
  for (const auto& d : all_invariants()) {
    std::string b;
    for (const auto& x : d.backends) b += (b.empty() ? "" : ", ") + x;
    std::printf("| %s | %s | %s | %s |\n", d.id.c_str(), md_escape(d.statement).c_str(),
                md_escape(d.source).c_str(), b.c_str());
  }
  return 0;
}

int print_steps(bool markdown) {
  const char* kinds[] = {"", "vmm", "host", "", "vCPU", "", "", "any"};
  if (markdown)
    std::printf(
        "| Operation | Actor | Required fields | Optional fields | What it does "
        "|\n|---|---|---|---|---|\n");
  else
    std::printf("Step operations (actor: required fields [optional fields]):\n");
  for (const auto& op : config::step_ops()) {
    const char* who = kinds[static_cast<unsigned>(op.actors)];
    if (markdown)
      std::printf("| `%s` | %s | %s | %s | %s |\n", std::string(op.name).c_str(), who,
                  std::string(op.required).c_str(), std::string(op.optional).c_str(),
                  md_escape(std::string(op.description)).c_str());
    else
      std::printf("  %-24s %-5s %s [%s]\n      %s\n", std::string(op.name).c_str(), who,
                  std::string(op.required).c_str(), std::string(op.optional).c_str(),
                  std::string(op.description).c_str());
  }
  return 0;
}

int print_list(bool markdown) {
  config::ScenarioConfig sc;
  const auto rows = config::Lister::list(sc);
  if (markdown) {
    std::printf("| Field | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n");
    for (const auto& r : rows)
      std::printf("| `%s` | %s | %s | %s | %s |\n", r.path.c_str(), r.type.c_str(),
                  r.default_value.empty() ? "" : ("`" + md_escape(r.default_value) + "`").c_str(),
                  md_escape(r.constraints).c_str(), md_escape(r.description).c_str());
    return 0;
  }
  std::printf("Components:\n");
  for (const auto& c : kComponents) std::printf("  %-30s %s\n", c.path, c.what);
  std::printf("\nScenario parameters (path = default; --set PATH=VALUE overrides any of them):\n");
  for (const auto& r : rows) {
    if (r.type == "object") continue;
    std::printf("  %-42s = %-14s %s%s%s\n", r.path.c_str(), r.default_value.c_str(),
                r.description.c_str(), r.constraints.empty() ? "" : "  [",
                r.constraints.empty() ? "" : (r.constraints + "]").c_str());
  }
  std::printf("\nIsolation invariants (run.invariants; docs/invariants.md):\n");
  for (const auto& d : all_invariants()) {
    std::string b;
    for (const auto& x : d.backends) b += (b.empty() ? "" : ", ") + x;
    std::printf("  %-6s %s\n         source: %s\n         backends: %s\n", d.id.c_str(),
                d.statement.c_str(), d.source.c_str(), b.c_str());
  }
  return 0;
}

}  // namespace cvmsim
