#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "sim/config/loader.h"
#include "sim/version.h"

namespace cvmsim::config {

void MemRegionConfig::validate(const std::string& ptr) const {
  const uint64_t align = bytes_of(page_size);
  if (gpa % align != 0)
    throw ConfigError(ptr + "/gpa", "value " + std::to_string(gpa) +
                                        " is not aligned to the region's page_size " +
                                        format_size(align));
  if (size % align != 0)
    throw ConfigError(ptr + "/size", "value " + std::to_string(size) +
                                         " is not a multiple of the region's page_size " +
                                         format_size(align));
  if (gpa + size < gpa) throw ConfigError(ptr + "/size", "region wraps around the address space");
}

SectionSet platform_sections() {
  SectionSet set;
  for (const backend::Descriptor* d : backend::all())
    if (d->platform_options) set.add(d->name, d->platform_options_doc, d->platform_options());
  return set;
}

SectionSet vm_sections() {
  SectionSet set;
  for (const backend::Descriptor* d : backend::all())
    if (d->vm_options) set.add(d->name, d->vm_options_doc, d->vm_options());
  return set;
}

std::string_view vm_type_doc() {
  static const std::string doc = [] {
    std::string s = "KVM VM type:";
    const auto& all = backend::all();
    for (size_t i = 0; i < all.size(); ++i)
      s += (i ? i + 1 == all.size() ? " or " : ", " : " ") + all[i]->name + " (" + all[i]->summary +
           ")";
    return s;
  }();
  return doc;
}

namespace {

backend::VmView view_of(const VmConfig& vm) {
  backend::VmView v;
  v.name = vm.name;
  v.type = vm.type;
  for (const auto& r : vm.memory) v.memory.push_back({Gpa(r.gpa), r.size, r.is_private});
  return v;
}

// The first field of `given` that differs from `defaults` (both written by JsonWriter), as a
// JSON pointer suffix, or "".
std::string first_difference(const Json& given, const Json& defaults, const std::string& at) {
  if (given == defaults) return "";
  if (given.is_object() && defaults.is_object())
    for (auto it = given.begin(); it != given.end(); ++it) {
      const auto d = defaults.find(it.key());
      if (d == defaults.end()) return pointer_join(at, it.key());
      if (std::string p = first_difference(it.value(), *d, pointer_join(at, it.key())); !p.empty())
        return p;
    }
  return at;
}

}  // namespace

void validate_backend_sections(const VmConfig& vm, const std::string& vp) {
  // Each backend's per-VM options apply to VMs of its type only: options of another backend
  // left at their defaults are harmless, set ones are a mistake worth naming.
  const SectionSet defaults = vm_sections();
  for (size_t k = 0; k < vm.backends.items.size(); ++k) {
    const NamedSection& n = vm.backends.items[k];
    const backend::Descriptor* d = backend::find(n.name);
    if (d && d->vm_type == vm.type) {
      if (d->validate_vm) d->validate_vm(view_of(vm), *n.section, vp + "/" + n.name);
      continue;
    }
    const std::string at =
        first_difference(n.section->write(), defaults.items[k].section->write(), vp + "/" + n.name);
    if (!at.empty())
      throw ConfigError(at, "set, but this is an option of backend \"" + n.name +
                                "\": it needs a VM of type \"" + n.name + "\" (this VM is \"" +
                                backend::name_of(vm.type) + "\")");
  }
}

backend::GuestSide::Range declared_bounce_buffer(const VmConfig& vm) {
  const backend::Descriptor* d = backend::find(vm.type);
  if (!d || !d->declared_bounce_buffer) return {};
  const Section* s = vm.backends.find(d->name);
  return s ? d->declared_bounce_buffer(*s) : backend::GuestSide::Range{};
}

void ScenarioConfig::validate(const std::string& ptr) const {
  const unsigned gpa_bits = input_bits_of(platform.mmu.format);
  const uint64_t gpa_limit = uint64_t{1} << gpa_bits;
  uint64_t total_guest = 0;
  for (size_t i = 0; i < vms.size(); ++i) {
    const std::string vp = ptr + "/vms/" + std::to_string(i);
    for (size_t j = 0; j < i; ++j)
      if (vms[j].name == vms[i].name)
        throw ConfigError(vp + "/name", "duplicate VM name \"" + vms[i].name + "\" (also /vms/" +
                                            std::to_string(j) + ")");
    const auto& regs = vms[i].memory;
    for (size_t r = 0; r < regs.size(); ++r) {
      const std::string rp = vp + "/memory/" + std::to_string(r);
      if (regs[r].gpa + regs[r].size > gpa_limit)
        throw ConfigError(rp + "/size", "region ends beyond the " + std::to_string(gpa_bits) +
                                            "-bit guest physical address space of " +
                                            std::string(name_of(platform.mmu.format)));
      for (size_t q = 0; q < r; ++q) {
        const bool overlap =
            regs[r].gpa < regs[q].gpa + regs[q].size && regs[q].gpa < regs[r].gpa + regs[r].size;
        if (overlap) throw ConfigError(rp, "overlaps " + vp + "/memory/" + std::to_string(q));
      }
      if (const backend::Descriptor* d = backend::find(vms[i].type);
          regs[r].is_private && d && !d->has_private_mem) {
        std::string with;
        for (const backend::Descriptor* o : backend::all())
          if (o->has_private_mem) with += (with.empty() ? "\"" : ", \"") + o->name + "\"";
        throw ConfigError(rp + "/private",
                          "VM type \"" + d->name +
                              "\" has no private memory "
                              "(KVM_CAP_MEMORY_ATTRIBUTES is 0 for it); use type " +
                              with);
      }
      total_guest += regs[r].size;
    }
    validate_backend_sections(vms[i], vp);
  }
  if (total_guest > platform.memory.size)
    throw ConfigError(ptr + "/vms",
                      "guest memory (" + format_size(total_guest) +
                          " in all) does not fit in host memory (/platform/memory/size = " +
                          format_size(platform.memory.size) + ")");

  std::vector<std::pair<size_t, uint64_t>> used;  // (vm index, vcpu)
  for (size_t w = 0; w < workloads.size(); ++w) {
    const auto& wl = workloads[w];
    const std::string wp = ptr + "/workloads/" + std::to_string(w);
    auto it =
        std::find_if(vms.begin(), vms.end(), [&](const VmConfig& vm) { return vm.name == wl.vm; });
    if (it == vms.end())
      throw ConfigError(wp + "/vm", "no VM named \"" + wl.vm + "\" is declared in /vms");
    const size_t vm_index = static_cast<size_t>(it - vms.begin());
    if (wl.vcpu >= it->vcpus)
      throw ConfigError(wp + "/vcpu", "VM \"" + wl.vm + "\" has " + std::to_string(it->vcpus) +
                                          " vCPU(s); index " + std::to_string(wl.vcpu) +
                                          " is out of range");
    for (const auto& u : used)
      if (u.first == vm_index && u.second == wl.vcpu)
        throw ConfigError(wp + "/vcpu", "vCPU " + std::to_string(wl.vcpu) + " of VM \"" + wl.vm +
                                            "\" already runs another workload");
    used.emplace_back(vm_index, wl.vcpu);
    if (wl.kind != WorkloadKind::kTrace && wl.access_size > wl.footprint)
      throw ConfigError(wp + "/access_size", "access_size " + std::to_string(wl.access_size) +
                                                 " is larger than footprint " +
                                                 std::to_string(wl.footprint));
    if (wl.base + wl.footprint < wl.base || wl.base + wl.footprint > gpa_limit)
      throw ConfigError(wp + "/footprint",
                        "footprint runs beyond the guest physical address space");
    if (wl.kind == WorkloadKind::kTrace && wl.trace.empty())
      throw ConfigError(wp + "/trace", "a trace workload needs the path of a trace file");
    if (wl.kind != WorkloadKind::kTrace && wl.ops == 0)
      throw ConfigError(wp + "/ops", "must be at least 1 for generated workloads");
    if (wl.verify_loads && platform.memory.mode == MemMode::kMetadataOnly)
      throw ConfigError(
          wp + "/verify_loads",
          "cannot verify loads when /platform/memory/mode is \"metadata\" (no bytes are stored)");
  }
  validate_steps(ptr, used);
}

void ScenarioConfig::validate_steps(
    const std::string& ptr, const std::vector<std::pair<size_t, uint64_t>>& workload_cpus) const {
  // Names steps can refer to: declared VMs, VMs created by create_vm, guest_memfds created by
  // create_guest_memfd (and each VM's own, <vm>.mem<i>), mappings made by gmem_mmap.
  std::set<std::string> vm_names, gmems, maps;
  for (const auto& vm : vms) {
    vm_names.insert(vm.name);
    for (size_t r = 0; r < vm.memory.size(); ++r)
      if (vm.memory[r].is_private) gmems.insert(vm.name + ".mem" + std::to_string(r));
  }
  auto find_vm = [&](const std::string& n) -> const VmConfig* {
    for (const auto& vm : vms)
      if (vm.name == n) return &vm;
    return nullptr;
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    const StepConfig& st = steps[i];
    const std::string sp = ptr + "/steps/" + std::to_string(i);
    if (st.actor != "vmm" && st.actor != "host") {
      const auto dot = st.actor.rfind(".cpu");
      const std::string vmn = st.actor.substr(0, dot);
      const VmConfig* vm = find_vm(vmn);
      if (!vm)
        throw ConfigError(
            sp + "/actor",
            "no VM named \"" + vmn + "\" is declared in /vms (vCPU actors are <vm>.cpu<i>)");
      const uint64_t cpu = std::stoull(st.actor.substr(dot + 4));
      if (cpu >= vm->vcpus)
        throw ConfigError(sp + "/actor", "VM \"" + vmn + "\" has " + std::to_string(vm->vcpus) +
                                             " vCPU(s); " + st.actor + " does not exist");
      const size_t vm_index = static_cast<size_t>(vm - vms.data());
      if (st.op == StepOp::kGuestIo) {
        const backend::GuestSide::Range bb = declared_bounce_buffer(*vm);
        if (!bb.size)
          throw ConfigError(sp, "guest_io needs a bounce buffer: VM \"" + vmn +
                                    "\" declares none (its backend's bounce_buffer option)");
        if (st.offset + st.size > bb.size)
          throw ConfigError(sp + "/size", "offset + size (" + std::to_string(st.offset + st.size) +
                                              ") exceeds VM \"" + vmn + "\"'s bounce buffer (" +
                                              std::to_string(bb.size) + " bytes)");
        const bool inside =
            std::any_of(vm->memory.begin(), vm->memory.end(), [&](const MemRegionConfig& m) {
              return m.is_private && st.gpa >= m.gpa && st.gpa + st.size <= m.gpa + m.size;
            });
        if (!inside)
          throw ConfigError(sp + "/gpa",
                            "guest_io reads private memory: [gpa, gpa+size) must lie in one "
                            "private region of VM \"" +
                                vmn + "\"");
      }
      for (const auto& u : workload_cpus)
        if (u.first == vm_index && u.second == cpu)
          throw ConfigError(
              sp + "/actor",
              st.actor + " runs a workload already; a vCPU runs either a workload or steps");
    }
    if (st.has("to_vm") && !vm_names.count(st.to_vm))
      throw ConfigError(sp + "/to_vm",
                        "no VM named \"" + st.to_vm +
                            "\" (declared in /vms or created by an earlier create_vm step)");
    if (st.has("vm") && !vm_names.count(st.vm))
      throw ConfigError(sp + "/vm",
                        "no VM named \"" + st.vm +
                            "\" (declared in /vms or created by an earlier create_vm step)");
    if (!st.has("vm") && st.actor == "vmm" && vms.size() > 1 && st.op != StepOp::kCheckExtension &&
        st.op != StepOp::kCreateVm && st.op != StepOp::kFallocate && st.op != StepOp::kClose &&
        st.op != StepOp::kGmemRead && st.op != StepOp::kGmemWrite &&
        st.op != StepOp::kGmemTruncate && st.op != StepOp::kGmemFstat && st.op != StepOp::kWait &&
        st.op != StepOp::kBarrier)
      throw ConfigError(sp, "several VMs are declared: say which one with \"vm\"");
    if (st.has("vm") && st.op == StepOp::kPreFaultMemory) {
      const VmConfig* vm = find_vm(st.vm);
      if (vm && st.vcpu >= vm->vcpus)
        throw ConfigError(sp + "/vcpu",
                          "VM \"" + st.vm + "\" has no vCPU " + std::to_string(st.vcpu));
    }
    if (st.has("guest_memfd") && !gmems.count(st.guest_memfd))
      throw ConfigError(sp + "/guest_memfd",
                        "no guest_memfd named \"" + st.guest_memfd +
                            "\" (created by an earlier create_guest_memfd step with that `as`, or "
                            "<vm>.mem<i> for a private region)");
    if ((st.op == StepOp::kGmemMunmap || st.op == StepOp::kMapRead || st.op == StepOp::kMapWrite) &&
        !maps.count(st.as))
      throw ConfigError(sp + "/as",
                        "no mapping named \"" + st.as + "\" (made by an earlier gmem_mmap step)");
    if (st.op == StepOp::kCreateVm) {
      if (vm_names.count(st.as))
        throw ConfigError(sp + "/as", "a VM named \"" + st.as + "\" exists already");
      vm_names.insert(st.as);
    }
    if (st.op == StepOp::kCreateGuestMemfd) {
      if (gmems.count(st.as))
        throw ConfigError(sp + "/as", "a guest_memfd named \"" + st.as + "\" exists already");
      gmems.insert(st.as);
    }
    if (st.op == StepOp::kGmemMmap) maps.insert(st.as);
  }
  // Every actor at a barrier must reach it the same number of times, or someone waits forever.
  std::map<std::string, std::map<std::string, size_t>> uses;  // barrier -> actor -> count
  for (const auto& st : steps)
    if (st.op == StepOp::kBarrier) ++uses[st.barrier][st.actor];
  for (const auto& [b, actors] : uses) {
    if (actors.size() < 2)
      throw ConfigError(ptr + "/steps", "barrier \"" + b + "\" is used by one actor only (" +
                                            actors.begin()->first +
                                            "); a barrier orders two or more");
    for (const auto& [a, n] : actors)
      if (n != actors.begin()->second)
        throw ConfigError(ptr + "/steps", "barrier \"" + b + "\": " + a + " reaches it " +
                                              std::to_string(n) + " time(s) but " +
                                              actors.begin()->first + " " +
                                              std::to_string(actors.begin()->second));
  }
}

WorkloadSpec workload_spec(const WorkloadConfig& w) {
  WorkloadSpec s;
  s.kind = w.kind;
  s.base = Gpa(w.base);
  s.footprint_bytes = w.footprint;
  s.access_size = static_cast<uint32_t>(w.access_size);
  s.ops = w.ops;
  s.read_fraction = w.read_fraction;
  s.stride_bytes = w.stride;
  s.zipf_theta = w.zipf_exponent;
  s.hot_fraction = w.hot_fraction;
  s.hot_probability = w.hot_probability;
  s.compute_cycles_between = w.compute_cycles;
  s.store_pattern = w.pattern;
  s.store_value = w.value;
  s.verify_loads = w.verify_loads;
  s.trace_path = w.trace;
  s.trace_format = w.trace_format;
  s.trace_instr_fetches = w.trace_instructions;
  s.trace_repeat = w.trace_repeat;
  s.trace_validate = w.trace_validate;
  return s;
}

namespace {
// WorkloadSpec member names (in the generator's messages) -> scenario keys.
std::string workload_key(const std::string& member) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"footprint_bytes", "footprint"}, {"stride_bytes", "stride"},
      {"zipf_theta", "zipf_exponent"},  {"compute_cycles_between", "compute_cycles"},
      {"store_pattern", "pattern"},     {"store_value", "value"},
      {"trace_path", "trace"},          {"trace_instr_fetches", "trace_instructions"}};
  for (const auto& [m, k] : kMap)
    if (member == m) return k;
  return member;
}

// Runs the generator's own checks (and, for traces, parses the whole file) so that every problem
// is reported as bad input before the run starts.
void check_workload(const WorkloadConfig& w, const std::string& ptr, uint64_t seed) {
  auto made = make_workload(workload_spec(w), Rng(seed, "validate"));
  if (made.ok()) return;
  const std::string& e = made.error;
  const auto colon = e.find(':');
  if (colon != std::string::npos && colon < 40 && e.find(' ') > colon)
    throw ConfigError(ptr + "/" + workload_key(e.substr(0, colon)),
                      e.substr(colon + 1 + (e[colon + 1] == ' ')));
  throw ConfigError(ptr, e);
}
}  // namespace

const char* default_scenario_json() {
  return R"({
  "name": "default",
  "description": "Built-in default: one 2-vCPU VM with 256 MiB of guest memory mapped by a 4-level EPT at 4 KiB; vCPU 0 runs a Zipf workload over 64 MiB, vCPU 1 a sequential sweep over 128 MiB.",
  "vms": [ { "name": "vm0", "vcpus": 2, "memory": [ { "gpa": 0, "size": "256MiB", "page_size": "4K" } ] } ],
  "workloads": [
    { "vm": "vm0", "vcpu": 0, "kind": "zipf", "footprint": "64MiB", "ops": 200000, "read_fraction": 0.7 },
    { "vm": "vm0", "vcpu": 1, "kind": "sequential", "base": "128MiB", "footprint": "128MiB", "access_size": 64, "ops": 200000, "read_fraction": 0.5 }
  ]
})";
}

LoadedScenario load_scenario_text(const std::string& text, const std::string& source_name,
                                  const std::string& base_dir, const LoadOptions& opts) {
  Json doc;
  try {
    doc = Json::parse(text, nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const Json::parse_error& e) {
    // nlohmann's message already says "at line L, column C".
    std::string what = e.what();
    const auto p = what.find("parse error");
    throw ConfigError(source_name,
                      "not valid JSON: " + (p == std::string::npos ? what : what.substr(p)));
  }
  for (const auto& o : opts.overrides) apply_override(doc, o);
  if (opts.seed) doc["seed"] = *opts.seed;
  LoadedScenario s;
  s.source = source_name;
  s.base_dir = base_dir;
  read_object(doc, "", s.config);
  // Resolve and check trace files now, so a missing file is bad input, not a failed run.
  for (size_t w = 0; w < s.config.workloads.size(); ++w) {
    auto& wl = s.config.workloads[w];
    if (wl.kind != WorkloadKind::kTrace) continue;
    std::filesystem::path p(wl.trace);
    if (p.is_relative()) p = std::filesystem::path(base_dir) / p;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec))
      throw ConfigError("/workloads/" + std::to_string(w) + "/trace",
                        "no such file: " + p.string());
    wl.trace = p.lexically_normal().string();
  }
  for (size_t w = 0; w < s.config.workloads.size(); ++w)
    check_workload(s.config.workloads[w], "/workloads/" + std::to_string(w), s.config.seed);
  return s;
}

LoadedScenario load_scenario(const std::string& path, const LoadOptions& opts) {
  if (path.empty())
    return load_scenario_text(default_scenario_json(), "<built-in default>", ".", opts);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw ConfigError(path, "no such scenario file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "cannot open the scenario file");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return load_scenario_text(ss.str(), path, dir.empty() ? "." : dir, opts);
}

Json effective_config(const LoadedScenario& s) {
  Json j;
  j["cvmsim_version"] = std::string(kVersion) + " (" + kGitDescribe + ")";
  j["source"] = s.source;
  j["scenario"] = JsonWriter::write_object(const_cast<ScenarioConfig&>(s.config));
  return j;
}

}  // namespace cvmsim::config
