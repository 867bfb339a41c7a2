// How a backend describes its hardware ownership structures (the TDX S-EPT and PAMT, later the
// SNP RMP and pKVM's page ownership) to whoever draws or checks the ownership graph
// (sim/invariants/ownership_graph.h, docs/ownership-graph.md "TDX"). KvmBackend::describe_ownership
// calls the visitor with what the firmware's real state says; the graph turns the calls into
// vertices and edges without knowing which backend made them.
//
// Pure C++ (no SystemC); no dependency on sim/.
#pragma once

#include <cstdint>
#include <string_view>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"

namespace cvmsim::kvm {

// A leaf of a private translation structure that is not KVM's stage-2 table (the TDX S-EPT):
// gfn (shared bit stripped) -> pfn at `size`, in firmware state `state` (e.g. "MAPPED").
struct PrivateLeafInfo {
  Gfn gfn;
  Pfn pfn;
  PageSize size = PageSize::k4K;
  std::string_view state;  // the firmware's name of the leaf state; must outlive the call
  std::string_view table =
      "private table";  // the structure's name ("S-EPT"); must outlive the call
  // Whether the VM reaches the frame through this leaf without the host's help: mapped, or
  // waiting for the guest's own accept (TDX PENDING). False: blocked, removed, exported.
  bool access = true;
};

// Frames the firmware records as assigned (the TDX PAMT, tdx-snp.md A7): `count` frames from
// `first`, of firmware page type `type` (e.g. "PT_REG", "PT_EPT"), owned by the VM described.
struct OwnedFramesInfo {
  Pfn first;
  uint64_t count = 1;
  std::string_view type;  // must outlive the call
  std::string_view role;  // what the frames are for ("TD private page", "S-EPT page"); may be empty
  bool control = false;   // a firmware control structure (TDR, TDCS, TDVPR, S-EPT), not guest data
};

class OwnershipVisitor {
 public:
  virtual ~OwnershipVisitor() = default;
  // The firmware principal guarding this VM's private memory ("TDX module"); called once, first.
  virtual void firmware(std::string_view name, std::string_view detail) = 0;
  virtual void private_leaf(const PrivateLeafInfo&) = 0;
  virtual void owned_frames(const OwnedFramesInfo&) = 0;
};

}  // namespace cvmsim::kvm
