// The ownership graph (issue "Isolation invariants", item 2; docs/ownership-graph.md): who can
// reach which frame, built with Boost.Graph from the real state of hw and models (KVM's VMs,
// memslots and guest_memfd files, the stage-2 tables, the host processes' address spaces, the
// frames' secret labels), never from a copy kept on the side.
//
// Vertices: principals (the host kernel, host processes, each VM, and whoever a frame's label
// names), guest_memfd files, memslots, GFN ranges, frame ranges and host VMAs. GFN ranges and
// frame ranges are coalesced (contiguous GFNs with contiguous frames and the same kind form one
// vertex), so the graph of a 64 MiB guest stays readable.
//
// Edges are either access edges (a mapping path: whoever reaches a frame through them can read
// or write it, or can make KVM map it) or information edges (a frame holds a principal's data,
// a file was created for a VM, a process created a VM). Reachability queries follow access
// edges only.
//
// Backends: each VM's KvmBackend::describe_ownership (models/kvm/ownership.h) reports the
// hardware ownership structures beyond stage 2 (a TD: the S-EPT leaves, the PAMT owners, the
// module as the firmware principal); the core turns them into kPrivateRoot/kPrivateLeaf/
// kFirmwareOwner/kFirmwareManaged edges, coalesced like the stage-2 ones, without knowing the
// backend. Further structures can be added through BuildOptions::extensions, a list of callbacks
// that run before frame ranges are formed; see GraphBuilder. The core never switches on the
// backend.
//
// Pure C++ (no SystemC).
#pragma once

#include <boost/graph/adjacency_list.hpp>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/principal.h"
#include "hw/memory/phys_mem.h"
#include "models/kvm/invariant.h"
#include "models/kvm/kvm.h"

namespace cvmsim::invariants {

enum class VertexKind : uint8_t {
  kHostKernel,  // the host kernel (principal)
  kProcess,     // a host process, e.g. the VMM (principal: host userspace)
  kVm,          // a VM (principal)
  kPrincipal,   // another principal a label names: host user data, firmware, a device, a gone VM
  kGmem,        // a guest_memfd file
  kMemslot,     // a memslot of a VM
  kGfnRange,    // GFNs of one VM mapped by stage-2 leaves to contiguous frames
  kFrameRange,  // contiguous host frames used by the same objects and holding the same label
  kVma,         // a host userspace mapping (VMA) of a process
  kExtension,   // anything a backend extension adds (a PAMT entry, an RMP range, a firmware)
};

enum class EdgeKind : uint8_t {
  kStage2Root,     // VM -> GFN range: the VM's stage-2 tables translate these GFNs (access)
  kStage2Leaf,     // GFN range -> frame range: stage-2 leaves (access)
  kMemslot,        // VM -> memslot (access: the VM faults through its slots)
  kGmemBinding,    // memslot -> guest_memfd, with the file offset (access)
  kSharedBacking,  // memslot -> host VMA: the slot's userspace_addr (access)
  kPageCache,      // guest_memfd -> frame range: its folios (access)
  kVmaOwner,       // process -> VMA (access)
  kHostPages,      // VMA -> frame range: present host pages (access)
  kHoldsData,      // frame range -> principal: the frames hold that principal's data (information)
  kCreatedFor,     // guest_memfd -> VM: the VM the file was created for and pins (information)
  kCreatedBy,      // process -> VM: the process whose mm the VM was created in (information)
  kExtension,      // an extension's edge; its `access` flag says whether reachability follows it
  // From KvmBackend::describe_ownership (models/kvm/ownership.h; a TD: the S-EPT and the PAMT):
  kPrivateRoot,      // VM -> GFN range: the firmware's private table translates these GFNs (access)
  kPrivateLeaf,      // GFN range -> frame range: its leaves (access if the state lets the VM reach
                     // them)
  kFirmwareOwner,    // VM -> frame range: the firmware records the VM as the frames' owner
                     // (information)
  kFirmwareManaged,  // firmware -> frame range: its control structures for the VM (access)
};

struct VertexProps {
  VertexKind kind = VertexKind::kPrincipal;
  std::string name;    // short, unique within its kind: "vm0", "memslot vm0/0", "gmem ino 2"
  std::string detail;  // second line for the picture (sizes, flags)
  Principal principal = kNobody;  // kVm, kHostKernel, kPrincipal; kProcess: its mm's owner
  // kGfnRange: [first, first + count) GFNs of vm; kFrameRange: [first, first + count) PFNs.
  uint64_t first = 0, count = 0;
  bool is_private = false;       // kGfnRange: private attribute; kFrameRange: a guest_memfd folio
  const void* object = nullptr;  // the model object (Vm, GmemFile, Memslot, Process), or null
};

struct EdgeProps {
  EdgeKind kind = EdgeKind::kExtension;
  std::string label;
  bool access = true;
};

using OwnershipGraphT =
    boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, VertexProps, EdgeProps>;
using Vertex = OwnershipGraphT::vertex_descriptor;

class GraphBuilder;

struct BuildOptions {
  // Extension point for backends with more hardware structures (a PAMT, an SNP RMP, pKVM
  // ownership): each callback runs after the core vertices exist and before frame ranges are
  // formed, so frames it names through GraphBuilder::use_frames share vertices with the rest.
  std::vector<std::function<void(GraphBuilder&)>> extensions;
};

// The built graph and its queries.
class OwnershipGraph {
 public:
  const OwnershipGraphT& graph() const { return g_; }
  size_t num_vertices() const { return boost::num_vertices(g_); }
  size_t num_edges() const { return boost::num_edges(g_); }
  size_t count(VertexKind k) const;
  size_t count(EdgeKind k) const;
  // The vertex of a VM / guest_memfd file / process (by model object), if in the graph.
  std::optional<Vertex> vertex_of(const void* object) const;
  // The frame-range vertex holding frame f, if any object uses f.
  std::optional<Vertex> frame_vertex(Pfn f) const;
  // Principal vertices (host kernel, processes, VMs, other principals) from which frame f is
  // reachable along access edges, in vertex order. Empty if nothing uses f.
  std::vector<Vertex> principals_reaching(Pfn f) const;
  std::vector<Vertex> principals_reaching_vertex(Vertex frames) const;
  // The display name of a vertex.
  const std::string& name(Vertex v) const { return g_[v].name; }

  // The graph form of ISO-1/ISO-7: every guest_memfd folio is reachable by at most one VM, the
  // one its file was created for, and by no host process. (At most, not exactly: a folio
  // fallocated before its memslot exists, or after the slot is deleted, is reachable by none.)
  std::vector<kvm::Violation> check_private_frames() const;

  // DOT (Graphviz) via boost::write_graphviz: labels, shapes and colours by vertex kind, edge
  // labels. Deterministic: the same state gives the same text.
  void write_dot(std::ostream& os, const std::string& title = "") const;
  std::string dot(const std::string& title = "") const;

 private:
  friend class GraphBuilder;
  OwnershipGraphT g_;
  std::map<const void*, Vertex> by_object_;
  std::map<uint64_t, Vertex> frames_by_start_;  // first PFN -> frame-range vertex
};

// Builds the graph. The core calls it from build_ownership_graph; extensions receive it.
class GraphBuilder {
 public:
  GraphBuilder(const kvm::Kvm& kvm, const PhysMem& mem);
  const kvm::Kvm& kvm() const { return kvm_; }
  const PhysMem& mem() const { return mem_; }
  Vertex add_vertex(VertexProps p);
  void add_edge(Vertex from, Vertex to, EdgeProps e);
  // The principal vertex for p: a VM's vertex for its principal, the host kernel, or a vertex
  // made on first use (host user data, firmware, device, a VM that is gone).
  Vertex principal(Principal p);
  // The vertex of a firmware principal by name (e.g. the SEAM module), made on first use; the first
  // one also stands for the kFirmware label.
  Vertex firmware(const std::string& name, const std::string& detail);
  std::optional<Vertex> vertex_of(const void* object) const;
  // `from` uses frames [first, first + count): an edge from `from` to every frame-range vertex
  // covering them, formed when the graph is finished.
  void use_frames(Vertex from, Pfn first, uint64_t count, EdgeKind kind, std::string label,
                  bool access = true);
  OwnershipGraph finish();

 private:
  struct Use {
    Vertex from;
    uint64_t first, count;
    EdgeKind kind;
    std::string label;
    bool access;
  };
  const kvm::Kvm& kvm_;
  const PhysMem& mem_;
  OwnershipGraph out_;
  std::map<uint32_t, Vertex> principals_;
  std::map<std::string, Vertex> firmware_;
  std::vector<Use> uses_;
};

OwnershipGraph build_ownership_graph(const kvm::Kvm& kvm, const PhysMem& mem,
                                     const BuildOptions& opts = {});

const char* kind_name(VertexKind k);
const char* kind_name(EdgeKind k);

// An InvariantDef ("GRAPH-1") running check_private_frames over a graph built from the checked
// state. It cannot restrict itself to what changed, so it runs in full checks only.
kvm::InvariantDef graph_invariant();

}  // namespace cvmsim::invariants
