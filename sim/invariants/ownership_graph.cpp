// Boost.Graph's named_graph reads a default-constructed boost::optional that GCC 12's flow
// analysis calls uninitialised once inlined (at -O1 with sanitizers): a false positive in a
// system header, silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "sim/invariants/ownership_graph.h"

#include "models/kvm/backend.h"
#include "models/kvm/vm.h"

#include <algorithm>
#include <boost/graph/graphviz.hpp>
#include <cinttypes>
#include <cstdio>
#include <deque>
#include <set>
#include <sstream>

namespace cvmsim::invariants {

using namespace cvmsim::kvm;

namespace {

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

// "0x100" for one item, "0x100-0x1ff" for several (inclusive, as people read ranges).
std::string span(uint64_t first, uint64_t count) {
  return count <= 1 ? hex(first) : hex(first) + "-" + hex(first + count - 1);
}

std::string bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (u < 4 && b >= 1024 && b % 1024 == 0) {
    b /= 1024;
    ++u;
  }
  return std::to_string(b) + " " + units[u];
}

std::string perms_text(Perms p) {
  std::string s;
  s += p.read() ? 'R' : '-';
  s += p.write() ? 'W' : '-';
  s += p.exec() ? 'X' : '-';
  return s;
}

bool is_principal_kind(VertexKind k) {
  return k == VertexKind::kHostKernel || k == VertexKind::kProcess || k == VertexKind::kVm ||
         k == VertexKind::kPrincipal;
}

std::string principal_text(Principal p) {
  if (p == kNobody) return "nobody";
  if (p == kHostKernel) return "host kernel";
  if (p == kHostUser) return "host user";
  if (p == kFirmware) return "firmware";
  if (p == kDevice) return "device";
  return "VM #" + std::to_string(p.id - kFirstVmPrincipal);
}

}  // namespace

namespace {

// KvmBackend::describe_ownership -> vertices and edges (models/kvm/ownership.h). Leaves are
// coalesced like the stage-2 ones (contiguous GFNs and frames, the same state, size and table);
// PAMT-like entries into runs of contiguous frames of the same type and role.
class GraphOwnershipVisitor final : public OwnershipVisitor {
 public:
  GraphOwnershipVisitor(GraphBuilder& b, const Vm& vm, Vertex vmv) : b_(b), vm_(vm), vmv_(vmv) {}
  ~GraphOwnershipVisitor() override { flush(); }

  void firmware(std::string_view name, std::string_view detail) override {
    fw_ = b_.firmware(std::string(name), std::string(detail));
  }
  void private_leaf(const PrivateLeafInfo& l) override {
    flush_frames();
    const uint64_t n = frames_of(l.size);
    if (leaf_.n && l.gfn.value() == leaf_.gfn + leaf_.n && l.pfn.value() == leaf_.pfn + leaf_.n &&
        l.size == leaf_.size && l.state == leaf_.state && l.access == leaf_.access &&
        l.table == leaf_.table) {
      leaf_.n += n;
      return;
    }
    flush_leaf();
    leaf_ = {l.gfn.value(),        l.pfn.value(),        n,       l.size,
             std::string(l.state), std::string(l.table), l.access};
  }
  void owned_frames(const OwnedFramesInfo& o) override {
    flush_leaf();
    if (own_.n && o.first.value() == own_.first + own_.n && o.type == own_.type &&
        o.role == own_.role && o.control == own_.control) {
      own_.n += o.count;
      return;
    }
    flush_frames();
    own_ = {o.first.value(), o.count, std::string(o.type), std::string(o.role), o.control};
  }
  void flush() {
    flush_leaf();
    flush_frames();
  }

 private:
  void flush_leaf() {
    if (!leaf_.n) return;
    VertexProps vp;
    vp.kind = VertexKind::kGfnRange;
    vp.name = vm_.name() + " private gfn " + span(leaf_.gfn, leaf_.n);
    vp.detail =
        leaf_.table + ", " + leaf_.state + ", " + std::string(name_of(leaf_.size)) + " leaves";
    vp.first = leaf_.gfn;
    vp.count = leaf_.n;
    vp.is_private = true;
    const Vertex gv = b_.add_vertex(std::move(vp));
    b_.add_edge(vmv_, gv, {EdgeKind::kPrivateRoot, leaf_.table, true});
    b_.use_frames(gv, Pfn(leaf_.pfn), leaf_.n, EdgeKind::kPrivateLeaf,
                  leaf_.table + " " + leaf_.state, leaf_.access);
    leaf_.n = 0;
  }
  void flush_frames() {
    if (!own_.n) return;
    b_.use_frames(vmv_, Pfn(own_.first), own_.n, EdgeKind::kFirmwareOwner, "owner: " + own_.type,
                  false);
    if (own_.control && fw_)
      b_.use_frames(*fw_, Pfn(own_.first), own_.n, EdgeKind::kFirmwareManaged,
                    own_.role.empty() ? own_.type : own_.role + " of " + vm_.name());
    own_.n = 0;
  }

  struct Leaf {
    uint64_t gfn = 0, pfn = 0, n = 0;
    PageSize size = PageSize::k4K;
    std::string state, table;
    bool access = true;
  };
  struct Owned {
    uint64_t first = 0, n = 0;
    std::string type, role;
    bool control = false;
  };
  GraphBuilder& b_;
  const Vm& vm_;
  const Vertex vmv_;
  std::optional<Vertex> fw_;
  Leaf leaf_;
  Owned own_;
};

void describe_backend(GraphBuilder& b, const Vm& vm, Vertex vmv) {
  GraphOwnershipVisitor v(b, vm, vmv);
  vm.backend().describe_ownership(vm, v);
  v.flush();
}

}  // namespace

const char* kind_name(VertexKind k) {
  switch (k) {
    case VertexKind::kHostKernel:
      return "host_kernel";
    case VertexKind::kProcess:
      return "process";
    case VertexKind::kVm:
      return "vm";
    case VertexKind::kPrincipal:
      return "principal";
    case VertexKind::kGmem:
      return "guest_memfd";
    case VertexKind::kMemslot:
      return "memslot";
    case VertexKind::kGfnRange:
      return "gfn_range";
    case VertexKind::kFrameRange:
      return "frame_range";
    case VertexKind::kVma:
      return "vma";
    case VertexKind::kExtension:
      return "extension";
  }
  return "?";
}

const char* kind_name(EdgeKind k) {
  switch (k) {
    case EdgeKind::kStage2Root:
      return "stage2_root";
    case EdgeKind::kStage2Leaf:
      return "stage2_leaf";
    case EdgeKind::kMemslot:
      return "memslot";
    case EdgeKind::kGmemBinding:
      return "gmem_binding";
    case EdgeKind::kSharedBacking:
      return "shared_backing";
    case EdgeKind::kPageCache:
      return "page_cache";
    case EdgeKind::kVmaOwner:
      return "vma_owner";
    case EdgeKind::kHostPages:
      return "host_pages";
    case EdgeKind::kHoldsData:
      return "holds_data";
    case EdgeKind::kCreatedFor:
      return "created_for";
    case EdgeKind::kCreatedBy:
      return "created_by";
    case EdgeKind::kExtension:
      return "extension";
    case EdgeKind::kPrivateRoot:
      return "private_root";
    case EdgeKind::kPrivateLeaf:
      return "private_leaf";
    case EdgeKind::kFirmwareOwner:
      return "firmware_owner";
    case EdgeKind::kFirmwareManaged:
      return "firmware_managed";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// OwnershipGraph

size_t OwnershipGraph::count(VertexKind k) const {
  size_t n = 0;
  for (auto [it, end] = boost::vertices(g_); it != end; ++it) n += g_[*it].kind == k;
  return n;
}

size_t OwnershipGraph::count(EdgeKind k) const {
  size_t n = 0;
  for (auto [it, end] = boost::edges(g_); it != end; ++it) n += g_[*it].kind == k;
  return n;
}

std::optional<Vertex> OwnershipGraph::vertex_of(const void* object) const {
  auto it = by_object_.find(object);
  if (it == by_object_.end()) return std::nullopt;
  return it->second;
}

std::optional<Vertex> OwnershipGraph::frame_vertex(Pfn f) const {
  auto it = frames_by_start_.upper_bound(f.value());
  if (it == frames_by_start_.begin()) return std::nullopt;
  --it;
  const VertexProps& p = g_[it->second];
  if (f.value() < p.first + p.count) return it->second;
  return std::nullopt;
}

std::vector<Vertex> OwnershipGraph::principals_reaching_vertex(Vertex frames) const {
  // Backwards along access edges: everything that has a mapping path to the frames.
  std::vector<char> seen(boost::num_vertices(g_), 0);
  std::deque<Vertex> todo{frames};
  seen[frames] = 1;
  std::vector<Vertex> out;
  while (!todo.empty()) {
    const Vertex v = todo.front();
    todo.pop_front();
    if (v != frames && is_principal_kind(g_[v].kind)) out.push_back(v);
    for (auto [it, end] = boost::in_edges(v, g_); it != end; ++it) {
      if (!g_[*it].access) continue;
      const Vertex u = boost::source(*it, g_);
      if (!seen[u]) {
        seen[u] = 1;
        todo.push_back(u);
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Vertex> OwnershipGraph::principals_reaching(Pfn f) const {
  const auto v = frame_vertex(f);
  if (!v) return {};
  return principals_reaching_vertex(*v);
}

std::vector<Violation> OwnershipGraph::check_private_frames() const {
  std::vector<Violation> out;
  for (const auto& [first, fv] : frames_by_start_) {
    const VertexProps& fp = g_[fv];
    if (!fp.is_private) continue;
    // The VM the owning guest_memfd was created for.
    std::optional<Vertex> owner;
    std::string file;
    for (auto [it, end] = boost::in_edges(fv, g_); it != end; ++it) {
      if (g_[*it].kind != EdgeKind::kPageCache) continue;
      const Vertex gv = boost::source(*it, g_);
      file = g_[gv].name;
      for (auto [o, oend] = boost::out_edges(gv, g_); o != oend; ++o)
        if (g_[*o].kind == EdgeKind::kCreatedFor) owner = boost::target(*o, g_);
    }
    std::vector<std::string> vms, procs;
    bool foreign_vm = false;
    for (Vertex p : principals_reaching_vertex(fv)) {
      if (g_[p].kind == VertexKind::kVm) {
        vms.push_back(g_[p].name);
        if (!owner || p != *owner) foreign_vm = true;
      } else if (g_[p].kind == VertexKind::kProcess) {
        procs.push_back(g_[p].name);
      }
    }
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
      return s;
    };
    const std::string what = "private frames " + span(fp.first, fp.count) + " (" + file +
                             (owner ? ", created for " + g_[*owner].name : std::string()) + ")";
    const std::string vm = owner ? g_[*owner].name : std::string();
    if (vms.size() > 1 || foreign_vm)
      out.push_back(
          {"GRAPH-1",
           what + " are reachable by " + std::to_string(vms.size()) + " VM(s): " + join(vms),
           vm,
           {},
           {Pfn(fp.first)}});
    if (!procs.empty())
      out.push_back({"GRAPH-1",
                     what + " are reachable by host process(es): " + join(procs),
                     vm,
                     {},
                     {Pfn(fp.first)}});
  }
  return out;
}

namespace {

std::string dot_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

struct Style {
  const char* shape;
  const char* fill;
};

Style style_of(const VertexProps& p) {
  switch (p.kind) {
    case VertexKind::kHostKernel:
      return {"ellipse", "#fdae6b"};
    case VertexKind::kProcess:
      return {"house", "#fdd0a2"};
    case VertexKind::kVm:
      return {"doubleoctagon", "#9ecae1"};
    case VertexKind::kPrincipal:
      return {"ellipse", "#fee6ce"};
    case VertexKind::kGmem:
      return {"folder", "#a1d99b"};
    case VertexKind::kMemslot:
      return {"box", "#e5f5e0"};
    case VertexKind::kGfnRange:
      return {"box", p.is_private ? "#c6dbef" : "#fff7bc"};
    case VertexKind::kFrameRange:
      return {"box3d", p.is_private ? "#fcbba1" : "#f0f0f0"};
    case VertexKind::kVma:
      return {"component", "#fee6ce"};
    case VertexKind::kExtension:
      return {"hexagon", "#dadaeb"};
  }
  return {"box", "white"};
}

struct VertexWriter {
  const OwnershipGraphT& g;
  void operator()(std::ostream& os, Vertex v) const {
    const VertexProps& p = g[v];
    const Style st = style_of(p);
    std::string label = dot_escape(p.name);
    if (!p.detail.empty()) label += "\\n" + dot_escape(p.detail);
    os << "[label=\"" << label << "\", shape=" << st.shape << ", style=\""
       << (p.kind == VertexKind::kGfnRange ? "rounded,filled" : "filled") << "\", fillcolor=\""
       << st.fill << "\", tooltip=\"" << kind_name(p.kind) << "\"]";
  }
};

struct EdgeWriter {
  const OwnershipGraphT& g;
  void operator()(std::ostream& os, OwnershipGraphT::edge_descriptor e) const {
    const EdgeProps& p = g[e];
    const char* color = "black";
    const char* style = "solid";
    switch (p.kind) {
      case EdgeKind::kStage2Leaf:
        color = p.label.rfind("private", 0) == 0 ? "#cb181d" : "#2171b5";
        break;
      case EdgeKind::kPrivateLeaf:
        color = "#cb181d";
        style = p.access ? "bold" : "dashed";
        break;
      case EdgeKind::kFirmwareOwner:
        color = "#6a51a3";
        style = "dashed";
        break;
      case EdgeKind::kFirmwareManaged:
        color = "#6a51a3";
        break;
      case EdgeKind::kPageCache:
        color = "#238b45";
        break;
      case EdgeKind::kHostPages:
        color = "#d94801";
        break;
      case EdgeKind::kHoldsData:
        color = "#737373";
        style = "dashed";
        break;
      case EdgeKind::kCreatedFor:
      case EdgeKind::kCreatedBy:
        color = "#737373";
        style = "dotted";
        break;
      default:
        break;
    }
    if (!p.access && p.kind == EdgeKind::kExtension) style = "dashed";
    // Arrows pointing back at a principal do not pull the layout (left to right: who -> what).
    const bool back = p.kind == EdgeKind::kHoldsData || p.kind == EdgeKind::kCreatedFor ||
                      p.kind == EdgeKind::kFirmwareOwner;
    os << "[label=\"" << dot_escape(p.label) << "\", color=\"" << color << "\", fontcolor=\""
       << color << "\", style=" << style << (back ? ", constraint=false" : "") << "]";
  }
};

struct GraphWriter {
  std::string title;
  void operator()(std::ostream& os) const {
    os << "rankdir=LR;\n";
    os << "node [fontname=\"Helvetica\", fontsize=10];\n";
    os << "edge [fontname=\"Helvetica\", fontsize=9];\n";
    if (!title.empty()) os << "labelloc=t;\nlabel=\"" << dot_escape(title) << "\";\n";
  }
};

}  // namespace

void OwnershipGraph::write_dot(std::ostream& os, const std::string& title) const {
  boost::write_graphviz(os, g_, VertexWriter{g_}, EdgeWriter{g_}, GraphWriter{title});
}

std::string OwnershipGraph::dot(const std::string& title) const {
  std::ostringstream os;
  write_dot(os, title);
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// GraphBuilder

GraphBuilder::GraphBuilder(const Kvm& kvm, const PhysMem& mem) : kvm_(kvm), mem_(mem) {}

Vertex GraphBuilder::add_vertex(VertexProps p) {
  const void* obj = p.object;
  const bool vm = p.kind == VertexKind::kVm;
  const Principal who = p.principal;
  const Vertex v = boost::add_vertex(std::move(p), out_.g_);
  if (obj) out_.by_object_.emplace(obj, v);
  // A label naming a VM's principal points at the VM's own vertex.
  if (vm) principals_.emplace(who.id, v);
  return v;
}

void GraphBuilder::add_edge(Vertex from, Vertex to, EdgeProps e) {
  boost::add_edge(from, to, std::move(e), out_.g_);
}

std::optional<Vertex> GraphBuilder::vertex_of(const void* object) const {
  return out_.vertex_of(object);
}

Vertex GraphBuilder::principal(Principal p) {
  if (auto it = principals_.find(p.id); it != principals_.end()) return it->second;
  VertexProps vp;
  vp.kind = p == kHostKernel ? VertexKind::kHostKernel : VertexKind::kPrincipal;
  vp.principal = p;
  vp.name = principal_text(p);
  if (p == kHostUser)
    vp.detail = "host userspace data";
  else if (is_vm(p))
    vp.detail = "no such VM any more";
  const Vertex v = add_vertex(std::move(vp));
  principals_[p.id] = v;
  return v;
}

Vertex GraphBuilder::firmware(const std::string& name, const std::string& detail) {
  if (auto it = firmware_.find(name); it != firmware_.end()) return it->second;
  VertexProps vp;
  vp.kind = VertexKind::kPrincipal;
  vp.principal = kFirmware;
  vp.name = name;
  vp.detail = detail;
  const Vertex v = add_vertex(std::move(vp));
  firmware_[name] = v;
  principals_.emplace(kFirmware.id, v);  // a kFirmware label points at the first firmware
  return v;
}

void GraphBuilder::use_frames(Vertex from, Pfn first, uint64_t count, EdgeKind kind,
                              std::string label, bool access) {
  if (count) uses_.push_back({from, first.value(), count, kind, std::move(label), access});
}

OwnershipGraph GraphBuilder::finish() {
  // Frame ranges: cut the frames at every use's ends and wherever the secret label changes,
  // then join neighbouring pieces that have the same users and the same label.
  std::map<uint64_t, std::vector<std::pair<bool, size_t>>> events;  // pfn -> (starts?, use)
  for (size_t i = 0; i < uses_.size(); ++i) {
    events[uses_[i].first].push_back({true, i});
    events[uses_[i].first + uses_[i].count].push_back({false, i});
  }
  struct Piece {
    uint64_t first, end;
    Principal label;
    std::vector<size_t> users;
  };
  std::vector<Piece> pieces;
  std::set<size_t> active;
  for (auto it = events.begin(); it != events.end(); ++it) {
    for (const auto& [start, u] : it->second) {
      if (start)
        active.insert(u);
      else
        active.erase(u);
    }
    auto next = std::next(it);
    if (active.empty() || next == events.end()) continue;
    const std::vector<size_t> users(active.begin(), active.end());
    for (uint64_t f = it->first; f < next->first;) {
      const Principal lab = mem_.meta(Pfn(f)).label;
      uint64_t e = f + 1;
      while (e < next->first && mem_.meta(Pfn(e)).label == lab) ++e;
      if (!pieces.empty() && pieces.back().end == f && pieces.back().label == lab &&
          pieces.back().users == users)
        pieces.back().end = e;
      else
        pieces.push_back({f, e, lab, users});
      f = e;
    }
  }
  for (const Piece& pc : pieces) {
    VertexProps vp;
    vp.kind = VertexKind::kFrameRange;
    vp.first = pc.first;
    vp.count = pc.end - pc.first;
    for (size_t u : pc.users)
      vp.is_private = vp.is_private || uses_[u].kind == EdgeKind::kPageCache;
    vp.name = "frames " + span(vp.first, vp.count);
    vp.detail = std::to_string(vp.count) + (vp.count == 1 ? " frame" : " frames") + " (" +
                bytes(vp.count * kPageBytes) + ")" + (vp.is_private ? ", guest_memfd" : "");
    // What the firmware records for them (the PAMT type), once.
    std::set<std::string> owned;
    for (size_t u : pc.users)
      if (uses_[u].kind == EdgeKind::kFirmwareOwner) owned.insert(uses_[u].label);
    for (const std::string& o : owned) vp.detail += ", " + o;
    const Vertex v = add_vertex(std::move(vp));
    out_.frames_by_start_[pc.first] = v;
    if (pc.label != kNobody)
      add_edge(v, principal(pc.label), {EdgeKind::kHoldsData, "holds data of", false});
  }
  // Edges from each user to the frame ranges it covers (pieces never straddle a use's ends).
  for (const Use& u : uses_) {
    for (auto it = out_.frames_by_start_.lower_bound(u.first);
         it != out_.frames_by_start_.end() && it->first < u.first + u.count; ++it)
      add_edge(u.from, it->second, {u.kind, u.label, u.access});
  }
  uses_.clear();
  return std::move(out_);
}

// ---------------------------------------------------------------------------------------------
// The core: KVM, guest_memfd, the stage-2 tables, the host address spaces, the labels.

OwnershipGraph build_ownership_graph(const Kvm& kvm, const PhysMem& mem, const BuildOptions& opts) {
  GraphBuilder b(kvm, mem);
  b.principal(kHostKernel);

  // Host processes and their address spaces.
  std::map<const HostMm*, Vertex> mm_owner;
  std::vector<const HostMm*> mms;
  for (const Process* p : kvm.processes()) {
    VertexProps vp;
    vp.kind = VertexKind::kProcess;
    vp.name = p->name();
    vp.detail = "host process";
    vp.principal = p->mm().owner();
    vp.object = p;
    const Vertex v = b.add_vertex(std::move(vp));
    if (!mm_owner.count(&p->mm())) {
      mm_owner[&p->mm()] = v;
      mms.push_back(&p->mm());
    }
  }

  // VMs (the principals whose data guests hold).
  std::map<const GmemVm*, Vertex> vm_vertex;
  for (const auto& vmp : kvm.vms()) {
    Vm& vm = *vmp;
    VertexProps vp;
    vp.kind = VertexKind::kVm;
    vp.name = vm.name();
    vp.detail = std::string(vm.backend().name()) + " VM" + (vm.dead() ? ", dead" : "");
    vp.principal = vm.principal();
    vp.object = &vm;
    const Vertex v = b.add_vertex(std::move(vp));
    vm_vertex[static_cast<const GmemVm*>(&vm)] = v;
    if (auto it = mm_owner.find(&vm.mm()); it != mm_owner.end())
      b.add_edge(it->second, v, {EdgeKind::kCreatedBy, "created", false});
    if (std::find(mms.begin(), mms.end(), &vm.mm()) == mms.end()) mms.push_back(&vm.mm());
  }
  // Host VMAs and their present pages.
  std::map<std::pair<const HostMm*, uint64_t>, Vertex> vma_vertex;
  for (const HostMm* mm : mms) {
    auto owner = mm_owner.find(mm);
    mm->for_each_vma([&](const HostMm::VmaView& vma) {
      VertexProps vp;
      vp.kind = VertexKind::kVma;
      vp.name = "vma " + hex(vma.start.value()) + "-" + hex(vma.start.value() + vma.len - 1);
      vp.detail = bytes(vma.len) + ", " + std::string(name_of(vma.page)) + " pages, " +
                  std::to_string(vma.pages.size()) + " present";
      vp.first = vma.start.value();
      vp.count = vma.len;
      const Vertex v = b.add_vertex(std::move(vp));
      vma_vertex[{mm, vma.start.value()}] = v;
      if (owner != mm_owner.end())
        b.add_edge(owner->second, v, {EdgeKind::kVmaOwner, "maps", true});
      // Runs of present pages with contiguous frames.
      const uint64_t per = frames_of(vma.page);
      uint64_t run_idx = 0, run_pages = 0;
      Pfn run_pfn;
      auto flush = [&] {
        if (!run_pages) return;
        const uint64_t a = vma.start.value() + run_idx * bytes_of(vma.page);
        b.use_frames(v, run_pfn, run_pages * per, EdgeKind::kHostPages,
                     "hva " + span(a, run_pages * bytes_of(vma.page)));
        run_pages = 0;
      };
      for (const auto& [idx, pfn] : vma.pages) {
        if (run_pages && idx == run_idx + run_pages && pfn == run_pfn + run_pages * per) {
          ++run_pages;
          continue;
        }
        flush();
        run_idx = idx;
        run_pfn = pfn;
        run_pages = 1;
      }
      flush();
    });
  }

  // guest_memfd files and their page caches.
  std::map<const GmemFile*, Vertex> gmem_vertex;
  kvm.for_each_gmem([&](const GmemFile& g) {
    const GmemInode& ino = g.inode();
    VertexProps vp;
    vp.kind = VertexKind::kGmem;
    vp.name = "guest_memfd ino " + std::to_string(ino.ino());
    vp.detail = bytes(static_cast<uint64_t>(ino.size())) + ", " + std::to_string(ino.nr_folios()) +
                (ino.nr_folios() == 1 ? " folio" : " folios") +
                (ino.supports_mmap() ? ", mmap" : "") + (g.fd_open() ? "" : ", fd closed");
    vp.object = &g;
    const Vertex v = b.add_vertex(std::move(vp));
    gmem_vertex[&g] = v;
    if (auto it = vm_vertex.find(&g.vm()); it != vm_vertex.end())
      b.add_edge(v, it->second, {EdgeKind::kCreatedFor, "created for", false});
    uint64_t run_idx = 0, n = 0;
    Pfn run_pfn;
    auto flush = [&] {
      if (n) b.use_frames(v, run_pfn, n, EdgeKind::kPageCache, "index " + span(run_idx, n));
      n = 0;
    };
    ino.for_each_folio([&](GmemPgoff idx, const GmemFolio& f) {
      if (n && idx.value() == run_idx + n && f.pfn == run_pfn + n) {
        ++n;
        return;
      }
      flush();
      run_idx = idx.value();
      run_pfn = f.pfn;
      n = 1;
    });
    flush();
  });

  for (const auto& vmp : kvm.vms()) {
    Vm& vm = *vmp;
    const Vertex vmv = vm_vertex.at(static_cast<const GmemVm*>(&vm));
    // Memslots: the VM -> slot -> guest_memfd / shared backing paths.
    for (uint16_t as = 0; as < Vm::kAddressSpaces; ++as) {
      vm.memslots(as).for_each([&](const Memslot& s) {
        VertexProps vp;
        vp.kind = VertexKind::kMemslot;
        vp.name = vm.name() + " memslot " + (as ? std::to_string(as) + ":" : "") +
                  std::to_string(s.id.id);
        vp.detail = "gfn " + span(s.base_gfn.value(), s.npages) + " (" +
                    bytes(s.npages * kPageBytes) + ")" + (s.gmem_only ? ", gmem only" : "") +
                    (s.has_gmem() && !s.gmem.file ? ", dead (guest_memfd closed)" : "");
        vp.first = s.base_gfn.value();
        vp.count = s.npages;
        vp.object = &s;
        const Vertex sv = b.add_vertex(std::move(vp));
        b.add_edge(vmv, sv, {EdgeKind::kMemslot, "memslot", true});
        if (s.gmem.file)
          if (auto it = gmem_vertex.find(s.gmem.file); it != gmem_vertex.end())
            b.add_edge(sv, it->second,
                       {EdgeKind::kGmemBinding,
                        "binds at offset " + hex(s.gmem.pgoff.value() * kPageBytes), true});
        if (!s.gmem_only) {
          const uint64_t lo = s.userspace_addr.value(), hi = lo + s.npages * kPageBytes;
          vm.mm().for_each_vma([&](const HostMm::VmaView& vma) {
            const uint64_t vs = vma.start.value(), ve = vs + vma.len;
            if (vs < hi && lo < ve)
              b.add_edge(
                  sv, vma_vertex.at({&vm.mm(), vs}),
                  {EdgeKind::kSharedBacking, "shared side at hva " + hex(std::max(lo, vs)), true});
          });
        }
      });
    }
    // Stage-2 leaves, coalesced into GFN ranges: contiguous GFNs, contiguous frames, the same
    // attribute, permissions and leaf size.
    struct Run {
      uint64_t gfn = 0, pfn = 0, n = 0;
      bool priv = false;
      Perms perms;
      PageSize size = PageSize::k4K;
    } run;
    auto flush = [&] {
      if (!run.n) return;
      VertexProps vp;
      vp.kind = VertexKind::kGfnRange;
      vp.name = vm.name() + " gfn " + span(run.gfn, run.n);
      vp.detail = std::string(run.priv ? "private" : "shared") + ", " + perms_text(run.perms) +
                  ", " + std::string(name_of(run.size)) + " leaves";
      vp.first = run.gfn;
      vp.count = run.n;
      vp.is_private = run.priv;
      const Vertex gv = b.add_vertex(std::move(vp));
      b.add_edge(vmv, gv, {EdgeKind::kStage2Root, "stage-2", true});
      b.use_frames(gv, Pfn(run.pfn), run.n, EdgeKind::kStage2Leaf,
                   std::string(run.priv ? "private " : "shared ") + perms_text(run.perms));
      run.n = 0;
    };
    describe_backend(b, vm, vmv);
    vm.stage2().for_each_leaf([&](const Stage2Leaf& l) {
      if (!l.valid) return;
      const uint64_t g0 = gpa_to_gfn(l.gpa).value();
      for (uint64_t i = 0; i < frames_of(l.size); ++i) {
        const uint64_t g = g0 + i, f = l.pfn.value() + i;
        const bool priv = vm.mem_is_private(Gfn(g));
        if (run.n && g == run.gfn + run.n && f == run.pfn + run.n && priv == run.priv &&
            l.perms == run.perms && l.size == run.size) {
          ++run.n;
          continue;
        }
        flush();
        run = {g, f, 1, priv, l.perms, l.size};
      }
    });
    flush();
  }

  for (const auto& ext : opts.extensions) ext(b);
  return b.finish();
}

kvm::InvariantDef graph_invariant() {
  return {"GRAPH-1",
          "a guest_memfd frame is reachable, along the ownership graph's mapping paths, by at most "
          "one VM (the one its file "
          "was created for) and by no host process",
          "the graph form of ISO-1 and ISO-7 (docs/ownership-graph.md); kvm-guest-memfd.md §4, "
          "§13.3-§13.4",
          {"all"},
          [](const CheckScope& s, std::vector<Violation>& out) {
            if (!s.full) return;  // the whole graph, every time: full checks only
            for (auto& v : build_ownership_graph(s.kvm, s.mem).check_private_frames())
              out.push_back(std::move(v));
          }};
}

}  // namespace cvmsim::invariants
