// The guest kernel of a TD (models/guest), as far as memory acceptance and conversions go
// (tdx-snp.md A8; L-coco-tdx tdx_accept_memory, set_memory_decrypted/encrypted). It implements
// the TdxGuestSide hooks the KVM TDX glue declares (models/tdx/kvm_tdx.h) and issues its TDCALLs
// through the glue's TdxGuestAbi, so it calls downward only (ARCHITECTURE.md principle 2).
//
// Acceptance policy (scenario vms[].tdx.accept):
//   boot  every private range is accepted when the TD boots (before the workload): for each
//         2 MiB-aligned 2 MiB chunk ACCEPT(2M) first (the module zeroes 4 KiB at a time with its
//         resumable ACCEPT_COUNTER; an interrupted accept is re-issued), and on
//         TDX_PAGE_SIZE_MISMATCH (KVM mapped 4 KiB leaves) ACCEPT(4K) for each page; ragged
//         heads and tails at 4 KiB. TDX_PAGE_ALREADY_ACCEPTED counts as done. Each ACCEPT of a
//         FREE entry exits to KVM, which AUGs (the lazy-AUG path) and the TDCALL is re-issued.
//   lazy  nothing at boot; the first access to a page is an EPT violation KVM answers with AUG,
//         the next one finds it PENDING and the module injects #VE (SEPT_VE_DISABLE clear is
//         required; with it set KVM kills the TD, see kvm_tdx.h), whose handler accepts: 2 MiB
//         when the chunk is whole private memory (4 KiB after a PAGE_SIZE_MISMATCH in that
//         chunk), else 4 KiB.
// Conversions (both policies): private->shared is MapGPA(gpa|S) only, after which the guest
// uses the shared alias; shared->private is MapGPA(gpa), then ACCEPT of every page as above
// (2 MiB where aligned, falling back to 4 KiB).
// The bounce buffer (vms[].tdx.bounce_buffer) is shared memory the kernel never accepts; I/O
// copies private data into it on purpose (scenario step guest_io).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/stat_visitor.h"
#include "hw/cpu/guest_op.h"
#include "models/tdx/kvm_tdx.h"

namespace cvmsim::guest {

enum class AcceptPolicy : uint8_t { kBoot, kLazy };
std::string_view name_of(AcceptPolicy p);

struct GpaRange {
  Gpa start{};
  uint64_t size = 0;
  bool contains(Gpa g) const {
    return g.value() >= start.value() && g.value() - start.value() < size;
  }
};

struct TdxGuestKernelConfig {
  AcceptPolicy accept = AcceptPolicy::kBoot;
  std::vector<GpaRange> private_ranges;  // the TD's private memory at boot (no S bit)
  GpaRange bounce_buffer;                // shared; size 0: none
  // How often one ACCEPT is re-issued after TDX_OPERAND_BUSY / BUSY_HOST_PRIORITY before the
  // guest gives up on it (a modelling parameter; TDVF uses 3, docs/tdx-model.md).
  unsigned busy_retry_limit = 64;
};

class TdxGuestKernel final : public tdx::TdxGuestSide {
 public:
  explicit TdxGuestKernel(TdxGuestKernelConfig cfg) : cfg_(std::move(cfg)) {}

  // Boot on vCPU `vcpu`: with policy boot, accept every private range (minus pages the initial
  // image already holds MAPPED: those answer ALREADY_ACCEPTED). Returns "" or what failed.
  std::string boot(tdx::TdxGuestAbi& abi, unsigned vcpu);

  bool on_ve(tdx::TdxGuestAbi& abi, unsigned vcpu, Gpa gpa) override;
  void on_map_gpa_done(tdx::TdxGuestAbi& abi, unsigned vcpu, Gpa gpa, uint64_t size,
                       bool to_private, uint64_t ret) override;

  // Accepts [gpa, gpa + size) (4 KiB aligned): 2 MiB chunks where aligned, falling back to 4 KiB
  // on PAGE_SIZE_MISMATCH; ALREADY_ACCEPTED is success. Returns the pages that failed.
  uint64_t accept_range(tdx::TdxGuestAbi& abi, unsigned vcpu, Gpa gpa, uint64_t size);

  // The guest's view: GFNs it converted to shared (and has not converted back).
  bool is_shared(Gfn g) const { return shared_.count(g.value()) != 0; }
  const TdxGuestKernelConfig& config() const { return cfg_; }

  struct Stats {
    uint64_t accepts_2m = 0;        // successful ACCEPT(2M)
    uint64_t accepts_4k = 0;        // successful ACCEPT(4K)
    uint64_t size_mismatch = 0;     // ACCEPT(2M) answered PAGE_SIZE_MISMATCH: 4 KiB fallback
    uint64_t already_accepted = 0;  // ACCEPT answered PAGE_ALREADY_ACCEPTED
    uint64_t busy_retries = 0;      // ACCEPTs re-issued after BUSY (a host SEAMCALL held the entry)
    uint64_t busy_gave_up = 0;      // ACCEPTs still BUSY after busy_retry_limit re-issues
    uint64_t ve_access_retried = 0;    // #VEs returned without accepting: the access re-executes
    uint64_t accept_errors = 0;        // ACCEPTs that failed otherwise
    uint64_t ves_handled = 0;          // #VE for a PENDING page accepted by the handler
    uint64_t boot_bytes_accepted = 0;  // bytes accepted at boot
    uint64_t map_gpa_to_shared = 0;    // completed MapGPA(gpa|S)
    uint64_t map_gpa_to_private = 0;   // completed MapGPA(gpa), followed by ACCEPTs
    uint64_t map_gpa_failed = 0;       // MapGPA the host answered with an error (nothing accepted)
  };
  const Stats& stats() const { return stats_; }
  void describe_stats(StatVisitor& v) const;

 private:
  // ACCEPT of one page or chunk (BUSY re-issued up to busy_retry_limit times): 0 ok/already,
  // 1 size mismatch, 2 error, 3 still BUSY, 4 its exit to KVM went to userspace.
  int accept_one(tdx::TdxGuestAbi& abi, unsigned vcpu, Gpa gpa, PageSize size);
  // The 2 MiB chunk around gpa is whole private memory of the guest (not shared, not bounce).
  bool chunk_is_private(Gpa head) const;

  TdxGuestKernelConfig cfg_;
  std::set<uint64_t> shared_;        // GFNs converted to shared
  std::set<uint64_t> small_chunks_;  // 2 MiB chunks (head GFN) that answered PAGE_SIZE_MISMATCH
  Stats stats_;
};

}  // namespace cvmsim::guest
