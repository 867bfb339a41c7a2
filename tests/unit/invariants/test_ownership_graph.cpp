// The ownership graph (sim/invariants/ownership_graph.h) over a small KVM state built through
// the uAPI facade: vertex and edge counts, coalescing, the reachability query on a correct and
// on a hand-broken state, the extension point, and the DOT text.
// Boost.Graph's named_graph reads a default-constructed boost::optional that GCC 12's flow
// analysis calls uninitialised once inlined (at -O1 with sanitizers): a false positive in a
// system header, silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <catch2/catch.hpp>

#include <sstream>

#include "../kvm/kvm_test_util.h"
#include "sim/invariants/invariants.h"
#include "sim/invariants/ownership_graph.h"

using namespace cvmsim;
using namespace cvmsim::kvm;
using namespace cvmsim::kvmtest;
using namespace cvmsim::invariants;

namespace {

constexpr uint64_t kShared = 16 << 20;

// A sw_protected VM: a 2 MiB guest_memfd, fully allocated, bound at GPA 0 (private); a 2 MiB
// shared slot at 16 MiB. Private GFNs 1 and 2 and shared GFN 0x1002 are faulted in by KVM.
struct World {
  KvmFixture f;
  int vm_fd, vcpu_fd, gmem_fd;
  explicit World(AttrStoreKind k) : f(k) {
    vm_fd = f.new_vm(kSwProt);
    vcpu_fd = f.new_vcpu(vm_fd);
    gmem_fd = f.new_gmem(vm_fd, k2M);
    REQUIRE(f.kvm.fallocate(f.proc, gmem_fd, FALLOC_FL_KEEP_SIZE, 0, k2M).ok());
    f.add_slot(vm_fd, 0, 0, k2M, gmem_fd);
    f.add_slot(vm_fd, 1, kShared, k2M);
    REQUIRE(f.set_attrs(vm_fd, 0, k2M, kPriv).ok());
    fault(0x1000);
    fault(0x2000);
    fault(kShared + 0x2000);
  }
  void fault(uint64_t gpa) {
    REQUIRE(f.vcpu(vcpu_fd).handle_exit(0, stage2_exit(gpa, true)).kind == ExitAction::kRetry);
  }
  Vm& vm() { return f.vm(vm_fd); }
  OwnershipGraph graph(const BuildOptions& o = {}) {
    return build_ownership_graph(f.kvm, f.mem, o);
  }
  // True if the guest_memfd's 512 folios are contiguous frames (the allocator hands them out in
  // order; the counts below depend on it).
  bool folios_contiguous() {
    const Pfn first = f.gmem_pfn(gmem_fd, 0);
    for (uint64_t i = 1; i < 512; ++i)
      if (f.gmem_pfn(gmem_fd, i) != first + i) return false;
    return true;
  }
};

std::vector<std::string> names(const OwnershipGraph& g, const std::vector<Vertex>& vs) {
  std::vector<std::string> out;
  for (Vertex v : vs) out.push_back(g.name(v));
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

TEST_CASE("ownership graph of a small known state: vertices and edges") {
  World w(any_store());
  REQUIRE(w.folios_contiguous());
  const OwnershipGraph g = w.graph();
  CHECK(g.count(VertexKind::kHostKernel) == 1);
  CHECK(g.count(VertexKind::kProcess) == 1);
  CHECK(g.count(VertexKind::kVm) == 1);
  CHECK(g.count(VertexKind::kGmem) == 1);
  CHECK(g.count(VertexKind::kMemslot) == 2);
  CHECK(g.count(VertexKind::kVma) == 2);  // the shared sides of both slots
  // Private GFNs 1-2 map consecutive folios: one range; the shared GFN another.
  CHECK(g.count(VertexKind::kGfnRange) == 2);
  // The page cache is cut where stage 2 maps it: folio 0, folios 1-2, folios 3-511; plus the
  // shared page.
  CHECK(g.count(VertexKind::kFrameRange) == 4);
  CHECK(g.count(VertexKind::kPrincipal) == 0);  // no frame holds anyone's data yet

  CHECK(g.count(EdgeKind::kCreatedBy) == 1);
  CHECK(g.count(EdgeKind::kCreatedFor) == 1);
  CHECK(g.count(EdgeKind::kMemslot) == 2);
  CHECK(g.count(EdgeKind::kGmemBinding) == 1);
  CHECK(g.count(EdgeKind::kSharedBacking) == 2);
  CHECK(g.count(EdgeKind::kVmaOwner) == 2);
  CHECK(g.count(EdgeKind::kHostPages) == 1);
  CHECK(g.count(EdgeKind::kPageCache) == 3);
  CHECK(g.count(EdgeKind::kStage2Root) == 2);
  CHECK(g.count(EdgeKind::kStage2Leaf) == 2);
  CHECK(g.count(EdgeKind::kHoldsData) == 0);
  CHECK(g.num_edges() == 17);
  CHECK(g.num_vertices() == 14);

  // The private range is the folios at index 1-2.
  const auto fv = g.frame_vertex(w.f.gmem_pfn(w.gmem_fd, 1));
  REQUIRE(fv);
  CHECK(g.graph()[*fv].count == 2);
  CHECK(g.graph()[*fv].is_private);
  CHECK(g.frame_vertex(w.f.gmem_pfn(w.gmem_fd, 2)) == fv);
  CHECK(g.frame_vertex(w.f.gmem_pfn(w.gmem_fd, 3)) != fv);
}

TEST_CASE("ownership graph coalesces contiguous GFNs and frames, and cuts at label changes") {
  World w(any_store());
  REQUIRE(w.folios_contiguous());
  for (uint64_t g = 3; g < 512; ++g) w.fault(g * kPage);
  w.fault(0);
  OwnershipGraph g = w.graph();
  // 512 4K leaves over 512 contiguous folios: one private GFN range and one frame range.
  size_t private_ranges = 0;
  for (auto [it, end] = boost::vertices(g.graph()); it != end; ++it) {
    const VertexProps& p = g.graph()[*it];
    if (p.kind == VertexKind::kGfnRange && p.is_private) {
      ++private_ranges;
      CHECK(p.first == 0);
      CHECK(p.count == 512);
    }
  }
  CHECK(private_ranges == 1);
  CHECK(g.count(VertexKind::kFrameRange) == 2);  // the private MiBs and the shared page

  // The VM's data in one frame splits the range in three and points that frame at the VM.
  const Pfn mid = w.f.gmem_pfn(w.gmem_fd, 100);
  w.f.mem.set_label(mid, w.vm().principal());
  g = w.graph();
  CHECK(g.count(VertexKind::kFrameRange) == 4);
  CHECK(g.count(VertexKind::kGfnRange) == 2);  // GFN ranges do not care about labels
  CHECK(g.count(EdgeKind::kHoldsData) == 1);
  const auto fv = g.frame_vertex(mid);
  REQUIRE(fv);
  CHECK(g.graph()[*fv].count == 1);
  bool to_vm = false;
  for (auto [it, end] = boost::out_edges(*fv, g.graph()); it != end; ++it)
    if (g.graph()[*it].kind == EdgeKind::kHoldsData)
      to_vm = g.name(boost::target(*it, g.graph())) == "vm0";
  CHECK(to_vm);
  // Host user data on a frame makes a "host user" principal vertex.
  w.f.mem.set_label(w.f.mapped_pfn(w.vm(), kShared + 0x2000), kHostUser);
  g = w.graph();
  CHECK(g.count(VertexKind::kPrincipal) == 1);
  CHECK(g.count(EdgeKind::kHoldsData) == 2);
}

TEST_CASE("principals_reaching on a correct state") {
  World w(any_store());
  const OwnershipGraph g = w.graph();
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  const auto p = names(g, g.principals_reaching(priv));
  CHECK(p == std::vector<std::string>{"vm0"});
  // A folio nobody mapped yet is still reachable by its VM through the memslot binding.
  CHECK(names(g, g.principals_reaching(w.f.gmem_pfn(w.gmem_fd, 300))) ==
        std::vector<std::string>{"vm0"});
  // The shared page: the VM through stage 2 and the slot, the VMM through its mapping.
  const auto s = names(g, g.principals_reaching(w.f.mapped_pfn(w.vm(), kShared + 0x2000)));
  CHECK(s.size() == 2);
  CHECK(contains(s, "vm0"));
  CHECK(contains(s, "vmm"));
  // A frame nobody uses is in no vertex.
  CHECK_FALSE(g.frame_vertex(Pfn(KvmFixture::kFrames - 1)));
  CHECK(g.principals_reaching(Pfn(KvmFixture::kFrames - 1)).empty());
  CHECK(g.check_private_frames().empty());
  // The InvariantDef form agrees, in a full check.
  std::vector<InvariantDef> defs{graph_invariant()};
  Checker c(w.f.kvm, w.f.mem, CheckMode::kFull, defs);
  CHECK(c.check().empty());
}

TEST_CASE("principals_reaching names both VMs when a private frame is mapped into a second VM") {
  World w(any_store());
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  const int evil = w.f.new_vm(kSwProt);
  w.f.add_slot(evil, 0, 0, k2M);
  // Behind KVM's back, as a buggy or hostile host kernel would.
  REQUIRE(w.f.vm(evil).stage2().map(Gpa(0x7000), priv, PageSize::k4K, kPermsRWX).ok());
  const OwnershipGraph g = w.graph();
  const auto p = names(g, g.principals_reaching(priv));
  CHECK(p.size() == 2);
  CHECK(contains(p, "vm0"));
  CHECK(contains(p, "vm1"));
  const auto v = g.check_private_frames();
  REQUIRE(v.size() == 1);
  CHECK(v[0].invariant == "GRAPH-1");
  CHECK(v[0].vm == "vm0");
  CHECK_THAT(v[0].message,
             Catch::Contains("vm0") && Catch::Contains("vm1") && Catch::Contains("2 VM(s)"));
  // Only the stolen frame: its neighbours are reachable by vm0 alone.
  CHECK(names(g, g.principals_reaching(w.f.mapped_pfn(w.vm(), 0x2000))) ==
        std::vector<std::string>{"vm0"});
  // The checker reports it in full mode, and leaves it to ISO-1/ISO-7 in incremental mode.
  std::vector<InvariantDef> defs{graph_invariant()};
  Checker full(w.f.kvm, w.f.mem, CheckMode::kFull, defs);
  const auto fv = full.check();
  REQUIRE(fv.size() == 1);
  CHECK(fv[0].invariant == "GRAPH-1");
  w.vm().note_changed({Gfn(0), Gfn(512)});
  Checker inc(w.f.kvm, w.f.mem, CheckMode::kIncremental, defs);
  CHECK(inc.check().empty());
}

TEST_CASE("extensions add vertices and frame uses that share frame ranges with the core") {
  World w(any_store());
  REQUIRE(w.folios_contiguous());
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  BuildOptions o;
  // What a TDX backend might add: the module as a principal, a PAMT entry naming one frame as
  // owned by the TD (information, not a mapping path).
  o.extensions.push_back([&](GraphBuilder& b) {
    const Vertex module = b.principal(kFirmware);
    VertexProps pamt;
    pamt.kind = VertexKind::kExtension;
    pamt.name = "PAMT entry";
    const Vertex pv = b.add_vertex(pamt);
    b.add_edge(module, pv, {EdgeKind::kExtension, "manages", false});
    b.use_frames(pv, priv, 1, EdgeKind::kExtension, "PT_REG", false);
  });
  const OwnershipGraph g = w.graph(o);
  CHECK(g.count(VertexKind::kExtension) == 1);
  CHECK(g.count(VertexKind::kPrincipal) == 1);  // firmware
  // Folios 1-2 were one range; the PAMT entry covers folio 1 only, so the range is cut.
  CHECK(g.count(VertexKind::kFrameRange) == 5);
  const auto fv = g.frame_vertex(priv);
  REQUIRE(fv);
  CHECK(g.graph()[*fv].count == 1);
  // Information edges are not mapping paths: the firmware does not reach the frame.
  CHECK(names(g, g.principals_reaching(priv)) == std::vector<std::string>{"vm0"});
}

TEST_CASE("ownership graph DOT output names the objects and is deterministic") {
  World w(any_store());
  const OwnershipGraph g = w.graph();
  const std::string dot = g.dot("test title");
  CHECK(dot.rfind("digraph G {", 0) == 0);
  CHECK_THAT(dot, Catch::Contains("test title"));
  CHECK_THAT(dot, Catch::Contains("vm0"));
  CHECK_THAT(dot, Catch::Contains("sw_protected VM"));
  CHECK_THAT(dot, Catch::Contains("guest_memfd ino "));
  CHECK_THAT(dot, Catch::Contains("vm0 memslot 0"));
  CHECK_THAT(dot, Catch::Contains("vm0 gfn 0x1-0x2"));
  CHECK_THAT(dot, Catch::Contains("shape=doubleoctagon"));
  CHECK_THAT(dot, Catch::Contains("binds at offset 0x0"));
  // One node line per vertex, one edge line per edge.
  std::istringstream in(dot);
  size_t nodes = 0, edges = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("->") != std::string::npos)
      ++edges;
    else if (line.find("[label=") != std::string::npos)
      ++nodes;
  }
  CHECK(nodes == g.num_vertices());
  CHECK(edges == g.num_edges());
  CHECK(w.graph().dot("test title") == dot);
}
