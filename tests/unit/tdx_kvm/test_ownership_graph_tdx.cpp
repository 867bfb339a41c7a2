// The ownership graph (sim/invariants/ownership_graph.h) of a TD built through KVM's uAPI: the
// TDX backend's describe_ownership puts the S-EPT leaves, the PAMT owners and the TDX module into
// the graph (docs/ownership-graph.md "TDX"); GRAPH-1 holds on the correct state and sees a
// TD-private frame mapped into a second VM behind KVM's back.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <catch2/catch.hpp>

#include "hw/mmu/pwc.h"
#include "lazy_td.h"
#include "models/guest/tdx_guest_kernel.h"
#include "models/tdx/kvm_tdx.h"
#include "sim/invariants/invariants.h"
#include "sim/invariants/ownership_graph.h"

namespace cvmsim::kvmtest {
namespace {

using invariants::EdgeKind;
using invariants::OwnershipGraph;
using invariants::Vertex;
using invariants::VertexKind;

// The TD of lazy_td.h, and its ownership graph.
struct Td : LazyTd {
  OwnershipGraph graph() { return invariants::build_ownership_graph(f.kvm, f.mem); }
};

// The edges of kind k into the frame-range vertex holding f.
std::vector<invariants::OwnershipGraphT::edge_descriptor> in_edges_of(const OwnershipGraph& g,
                                                                      Pfn f, EdgeKind k) {
  std::vector<invariants::OwnershipGraphT::edge_descriptor> out;
  const auto fv = g.frame_vertex(f);
  if (!fv) return out;
  for (auto [it, end] = boost::in_edges(*fv, g.graph()); it != end; ++it)
    if (g.graph()[*it].kind == k) out.push_back(*it);
  return out;
}

std::vector<std::string> names(const OwnershipGraph& g, const std::vector<Vertex>& vs) {
  std::vector<std::string> out;
  for (Vertex v : vs) out.push_back(g.name(v));
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST_CASE("TD ownership graph: S-EPT leaves, PAMT owners and the TDX module") {
  Td td;
  // 0x1000 and 0x2000: AUG (PENDING), then the guest's ACCEPT on #VE (MAPPED). 0x5000: AUG only.
  for (uint64_t gpa : {0x1000, 0x2000}) {
    REQUIRE(td.fault(gpa).kind == ExitAction::kRetry);
    REQUIRE(td.fault(gpa).kind == ExitAction::kRetry);
  }
  REQUIRE(td.fault(0x5000).kind == ExitAction::kRetry);
  REQUIRE(td.m().sept_lookup(td.be().tdr(), Gpa(0x1000)).entry.state == SeptState::kMapped);
  REQUIRE(td.m().sept_lookup(td.be().tdr(), Gpa(0x5000)).entry.state == SeptState::kPending);
  const OwnershipGraph g = td.graph();
  const auto& G = g.graph();
  const auto vmv = g.vertex_of(static_cast<const GmemVm*>(&td.vm()));
  REQUIRE(vmv);

  // The S-EPT leaf of each private page: VM -> "vm0 private gfn ..." -> the frame, an access edge.
  CHECK(g.count(EdgeKind::kPrivateLeaf) >= 2);
  for (uint64_t gpa : {0x1000, 0x2000, 0x5000}) {
    const Pfn p = td.pfn_of(gpa);
    const auto leaves = in_edges_of(g, p, EdgeKind::kPrivateLeaf);
    REQUIRE(leaves.size() == 1);
    CHECK(G[leaves[0]].access);
    const Vertex gv = boost::source(leaves[0], G);
    CHECK(G[gv].kind == VertexKind::kGfnRange);
    CHECK(G[gv].is_private);
    CHECK(G[gv].first <= gpa / kPage);
    CHECK(gpa / kPage < G[gv].first + G[gv].count);
    CHECK_THAT(G[leaves[0]].label,
               Catch::StartsWith(gpa == 0x5000 ? "S-EPT PENDING" : "S-EPT MAPPED"));
    bool rooted = false;
    for (auto [it, end] = boost::in_edges(gv, G); it != end; ++it)
      rooted = rooted || (G[*it].kind == EdgeKind::kPrivateRoot && boost::source(*it, G) == *vmv);
    CHECK(rooted);
    // The PAMT says the TD owns it (PT_REG): an information edge from the VM.
    const auto own = in_edges_of(g, p, EdgeKind::kFirmwareOwner);
    REQUIRE(own.size() == 1);
    CHECK(boost::source(own[0], G) == *vmv);
    CHECK(G[own[0]].label == "owner: PT_REG");
    CHECK_FALSE(G[own[0]].access);
    // Reachable by the TD only (through its memslot's guest_memfd and its S-EPT), not the module.
    CHECK(names(g, g.principals_reaching(p)) == std::vector<std::string>{"vm0"});
  }
  // 0x1000 and 0x2000 are MAPPED with contiguous GFNs; if their frames are contiguous too they
  // share one GFN range vertex.
  if (td.pfn_of(0x2000) == td.pfn_of(0x1000) + 1)
    CHECK(boost::source(in_edges_of(g, td.pfn_of(0x1000), EdgeKind::kPrivateLeaf)[0], G) ==
          boost::source(in_edges_of(g, td.pfn_of(0x2000), EdgeKind::kPrivateLeaf)[0], G));

  // The TDR: owned by the TD in the PAMT (PT_TDR) and managed by the TDX module, which reaches it.
  const Pfn tdr = hpa_to_pfn(td.be().tdr());
  const auto managed = in_edges_of(g, tdr, EdgeKind::kFirmwareManaged);
  REQUIRE(managed.size() == 1);
  CHECK(g.name(boost::source(managed[0], G)) == "TDX module");
  CHECK(G[managed[0]].access);
  REQUIRE(in_edges_of(g, tdr, EdgeKind::kFirmwareOwner).size() == 1);
  CHECK(G[in_edges_of(g, tdr, EdgeKind::kFirmwareOwner)[0]].label == "owner: PT_TDR");
  CHECK(contains(names(g, g.principals_reaching(tdr)), "TDX module"));
  // The S-EPT root (a TDCS page) and the S-EPT pages SEPT.ADD gave the module.
  const auto info = td.m().td_info(td.be().tdr());
  REQUIRE(info);
  const auto root = in_edges_of(g, hpa_to_pfn(info->sept_root), EdgeKind::kFirmwareManaged);
  REQUIRE(root.size() == 1);
  CHECK_THAT(G[root[0]].label, Catch::Contains("S-EPT root"));
  size_t sept_pages = 0, pamt_frames = 0;
  for (auto [it, end] = boost::edges(G); it != end; ++it) {
    if (G[*it].kind == EdgeKind::kFirmwareOwner) pamt_frames += G[boost::target(*it, G)].count;
    sept_pages += G[*it].kind == EdgeKind::kFirmwareOwner && G[*it].label == "owner: PT_EPT";
  }
  CHECK(sept_pages >= 1);
  // Every frame the PAMT gives the TD is in the graph: CHLDCNT 4 KiB-equivalents plus the TDR.
  CHECK(pamt_frames == info->chldcnt + 1);
  // One module vertex, whatever the number of TDs.
  size_t modules = 0;
  for (auto [it, end] = boost::vertices(G); it != end; ++it) modules += G[*it].name == "TDX module";
  CHECK(modules == 1);

  // GRAPH-1 holds on the correct state, as the graph query and as the full-mode invariant.
  CHECK(g.check_private_frames().empty());
  std::vector<InvariantDef> defs{invariants::graph_invariant()};
  invariants::Checker c(td.f.kvm, td.f.mem, invariants::CheckMode::kFull, defs);
  CHECK(c.check().empty());
  // Deterministic DOT.
  CHECK(g.dot() == td.graph().dot());
}

TEST_CASE("a BLOCKED S-EPT leaf is an information edge, not a path") {
  Td td;
  REQUIRE(td.fault(0x3000).kind == ExitAction::kRetry);
  REQUIRE(td.fault(0x3000).kind == ExitAction::kRetry);
  const Pfn p = td.pfn_of(0x3000);
  // TDH.MEM.RANGE.BLOCK, as the first step of KVM's zap (the rest never comes here).
  REQUIRE(td.m().mem_range_block(td.be().tdr(), Gpa(0x3000), 0).ok());
  REQUIRE(td.m().sept_lookup(td.be().tdr(), Gpa(0x3000)).entry.state == SeptState::kBlocked);
  const OwnershipGraph g = td.graph();
  const auto leaves = in_edges_of(g, p, EdgeKind::kPrivateLeaf);
  REQUIRE(leaves.size() == 1);
  CHECK_FALSE(g.graph()[leaves[0]].access);
  CHECK_THAT(g.graph()[leaves[0]].label, Catch::StartsWith("S-EPT BLOCKED"));
  CHECK_THAT(
      g.dot(),
      Catch::Contains("S-EPT BLOCKED\", color=\"#cb181d\", fontcolor=\"#cb181d\", style=dashed"));
  // Still the TD's: its guest_memfd binding reaches the folio; the PAMT still says PT_REG.
  CHECK(names(g, g.principals_reaching(p)) == std::vector<std::string>{"vm0"});
  REQUIRE(in_edges_of(g, p, EdgeKind::kFirmwareOwner).size() == 1);
  CHECK(g.check_private_frames().empty());
}

TEST_CASE("GRAPH-1 sees a TD-private frame mapped into a second VM") {
  Td td;
  REQUIRE(td.fault(0x1000).kind == ExitAction::kRetry);
  REQUIRE(td.fault(0x1000).kind == ExitAction::kRetry);
  const Pfn priv = td.pfn_of(0x1000);
  const int evil = td.f.new_vm(kDefault);
  td.f.add_slot(evil, 0, 0, k2M);
  // Behind KVM's back, as a hostile host kernel would
  // (scenarios/attacks/tdx_hostile_double_map.json).
  REQUIRE(td.f.vm(evil).stage2().map(Gpa(0x7000), priv, PageSize::k4K, kPermsRWX).ok());
  const OwnershipGraph g = td.graph();
  const auto p = names(g, g.principals_reaching(priv));
  CHECK(p.size() == 2);
  CHECK(contains(p, "vm0"));
  CHECK(contains(p, "vm1"));
  // The TD still reaches it through its S-EPT leaf.
  CHECK(in_edges_of(g, priv, EdgeKind::kPrivateLeaf).size() == 1);
  const auto v = g.check_private_frames();
  REQUIRE(v.size() == 1);
  CHECK(v[0].invariant == "GRAPH-1");
  CHECK(v[0].vm == "vm0");
  CHECK_THAT(v[0].message, Catch::Contains("2 VM(s): vm0, vm1"));
}

}  // namespace
}  // namespace cvmsim::kvmtest
