#include "models/guest/tdx_guest_kernel.h"

#include <cinttypes>
#include <cstdio>

namespace cvmsim::guest {

std::string_view name_of(AcceptPolicy p) {
  return p == AcceptPolicy::kBoot ? "boot" : "lazy";
}

namespace {
constexpr uint64_t k2MBytes = uint64_t{1} << 21;
}

int TdxGuestKernel::accept_one(tdx::TdxGuestAbi& abi, unsigned vcpu, Gpa gpa, PageSize size) {
  tdx::TdxResult r = abi.guest_accept(vcpu, gpa, size);
  // A5: TDX_OPERAND_BUSY / BUSY_HOST_PRIORITY: a host SEAMCALL (BLOCK, DEMOTE, REMOVE) holds or
  // won the S-EPT entry. The guest re-issues the TDCALL (each attempt takes the call's time, so
  // the host's call retires meanwhile), a bounded number of times (TDVF bounds it too,
  // TDX_ACCEPTPAGE_MAX_RETRIED; the bound here is a modelling parameter, docs/tdx-model.md).
  for (unsigned tries = 0; tdx::is_busy_class(r.status) && tries < cfg_.busy_retry_limit; ++tries) {
    ++stats_.busy_retries;
    r = abi.guest_accept(vcpu, gpa, size);
  }
  if (tdx::is_busy_class(r.status)) {
    ++stats_.busy_gave_up;
    return 3;
  }
  const uint64_t code = r.code();
  if (r.ok() && r.outcome != tdx::GuestOutcome::kTdExit) {
    ++(size == PageSize::k2M ? stats_.accepts_2m : stats_.accepts_4k);
    return 0;
  }
  // The ACCEPT exited to KVM and KVM could not map the page itself (it went to userspace, e.g.
  // KVM_EXIT_MEMORY_FAULT for a page the host converted to shared meanwhile): the TDCALL is
  // re-executed when the vCPU re-enters, after the VMM acted.
  if (r.outcome == tdx::GuestOutcome::kTdExit) return 4;
  // A8: TDX_PAGE_ALREADY_ACCEPTED (warning class): the page (or a larger leaf) is accepted.
  if (code == tdx::status::kPageAlreadyAccepted) {
    ++stats_.already_accepted;
    return 0;
  }
  // A8: requested 2 MiB, mapped as 4 KiB: the guest retries at 4 KiB.
  if (code == tdx::status::kPageSizeMismatch) {
    ++stats_.size_mismatch;
    return 1;
  }
  ++stats_.accept_errors;
  return 2;
}

bool TdxGuestKernel::chunk_is_private(Gpa head) const {
  bool inside = false;
  for (const auto& r : cfg_.private_ranges)
    if (r.contains(head) && r.contains(Gpa(head.value() + k2MBytes - 1))) inside = true;
  if (!inside) return false;
  if (cfg_.bounce_buffer.size &&
      head.value() < cfg_.bounce_buffer.start.value() + cfg_.bounce_buffer.size &&
      cfg_.bounce_buffer.start.value() < head.value() + k2MBytes)
    return false;
  const uint64_t g = gpa_to_gfn(head).value();
  auto it = shared_.lower_bound(g);
  return it == shared_.end() || *it >= g + kEntriesPerTable;
}

uint64_t TdxGuestKernel::accept_range(tdx::TdxGuestAbi& abi, unsigned vcpu, Gpa gpa,
                                      uint64_t size) {
  uint64_t failed = 0;
  uint64_t a = gpa.value() & ~(kPageBytes - 1);
  const uint64_t end = gpa.value() + size;
  while (a < end) {
    // tdx_accept_memory: the largest size the chunk allows, 2 MiB then 4 KiB (1 GiB is not
    // accepted by TDX 1.5, A8).
    if ((a & (k2MBytes - 1)) == 0 && a + k2MBytes <= end) {
      const int r = accept_one(abi, vcpu, Gpa(a), PageSize::k2M);
      if (r == 0) {
        a += k2MBytes;
        continue;
      }
      if (r >= 2) {
        failed += kEntriesPerTable;
        a += k2MBytes;
        continue;
      }
      small_chunks_.insert(gpa_to_gfn(Gpa(a)).value());
      for (uint64_t p = a; p < a + k2MBytes; p += kPageBytes)
        if (accept_one(abi, vcpu, Gpa(p), PageSize::k4K) != 0) ++failed;
      a += k2MBytes;
      continue;
    }
    if (accept_one(abi, vcpu, Gpa(a), PageSize::k4K) != 0) ++failed;
    a += kPageBytes;
  }
  return failed;
}

std::string TdxGuestKernel::boot(tdx::TdxGuestAbi& abi, unsigned vcpu) {
  if (cfg_.accept != AcceptPolicy::kBoot) return {};
  uint64_t failed = 0;
  for (const auto& r : cfg_.private_ranges) {
    failed += accept_range(abi, vcpu, r.start, r.size);
    stats_.boot_bytes_accepted += r.size;
  }
  if (!failed) return {};
  return std::to_string(failed) + " pages could not be accepted at boot";
}

bool TdxGuestKernel::on_ve(tdx::TdxGuestAbi& abi, unsigned vcpu, Gpa gpa) {
  // The #VE handler (after TDG.VP.VEINFO.GET): accept the page, 2 MiB when the chunk is whole
  // private memory and has not shown 4 KiB leaves before.
  const Gpa head(gpa.value() & ~(k2MBytes - 1));
  if (chunk_is_private(head) && !small_chunks_.count(gpa_to_gfn(head).value())) {
    const int r = accept_one(abi, vcpu, head, PageSize::k2M);
    if (r == 0) {
      ++stats_.ves_handled;
      return true;
    }
    if (r == 1) small_chunks_.insert(gpa_to_gfn(head).value());
    if (r >= 3) {  // still BUSY, or an exit to userspace: the access re-executes (see below)
      ++stats_.ve_access_retried;
      return true;
    }
  }
  const int r = accept_one(abi, vcpu, gpa, PageSize::k4K);
  if (r == 0) {
    ++stats_.ves_handled;
    return true;
  }
  // Still BUSY after the retries, or the ACCEPT's exit needed userspace: the handler returns and
  // the access re-executes (a PENDING page #VEs again; a page the host removed meanwhile faults
  // to KVM, which maps a new one or asks the VMM to convert it back first).
  if (r >= 3) {
    ++stats_.ve_access_retried;
    return true;
  }
  return false;
}

void TdxGuestKernel::on_map_gpa_done(tdx::TdxGuestAbi& abi, unsigned vcpu, Gpa gpa, uint64_t size,
                                     bool to_private, uint64_t ret) {
  if (ret != 0) {
    ++stats_.map_gpa_failed;  // the range keeps its type; nothing to accept
    return;
  }
  const uint64_t g0 = gpa_to_gfn(gpa).value(), n = size >> kPageShift;
  // The mappings of the range are gone: a 2 MiB chunk may be mapped huge again.
  for (uint64_t g = g0 & ~uint64_t{kEntriesPerTable - 1}; g < g0 + n; g += kEntriesPerTable)
    small_chunks_.erase(g);
  if (!to_private) {
    // private->shared: MapGPA(gpa|S) is all; the guest now uses the shared alias.
    for (uint64_t g = g0; g < g0 + n; ++g) shared_.insert(g);
    ++stats_.map_gpa_to_shared;
    return;
  }
  // shared->private: MapGPA(gpa), then ACCEPT every page (set_memory_encrypted).
  for (uint64_t g = g0; g < g0 + n; ++g) shared_.erase(g);
  ++stats_.map_gpa_to_private;
  (void)accept_range(abi, vcpu, gpa, size);
}

void TdxGuestKernel::describe_stats(StatVisitor& v) const {
  v.counter("accepts_2m", stats_.accepts_2m, "calls",
            "successful TDG.MEM.PAGE.ACCEPT at 2 MiB issued by the guest kernel");
  v.counter("accepts_4k", stats_.accepts_4k, "calls",
            "successful TDG.MEM.PAGE.ACCEPT at 4 KiB issued by the guest kernel");
  v.counter(
      "size_mismatch", stats_.size_mismatch, "calls",
      "ACCEPT(2M) answered TDX_PAGE_SIZE_MISMATCH (4 KiB leaves): the guest fell back to 4 KiB");
  v.counter("already_accepted", stats_.already_accepted, "calls",
            "ACCEPT answered TDX_PAGE_ALREADY_ACCEPTED (counted as done)");
  v.counter("busy_retries", stats_.busy_retries, "calls",
            "ACCEPTs re-issued after TDX_OPERAND_BUSY / BUSY_HOST_PRIORITY (a host SEAMCALL held "
            "the S-EPT entry)");
  v.counter("ve_access_retried", stats_.ve_access_retried, "count",
            "#VEs whose handler returned without accepting (ACCEPT still BUSY, or its exit to KVM "
            "went to userspace): the access re-executes");
  v.counter("busy_gave_up", stats_.busy_gave_up, "calls",
            "ACCEPTs still BUSY after busy_retry_limit re-issues (the #VE handler returns and the "
            "access re-executes; elsewhere a failed page)");
  v.counter("accept_errors", stats_.accept_errors, "calls", "ACCEPTs that failed otherwise");
  v.counter("ves_handled", stats_.ves_handled, "count",
            "#VE for a PENDING page answered by the guest's handler with an ACCEPT (accept: lazy)");
  v.counter("boot_bytes_accepted", stats_.boot_bytes_accepted, "bytes",
            "private memory accepted at boot (accept: boot)");
  v.counter("map_gpa_to_shared", stats_.map_gpa_to_shared, "calls",
            "completed MapGPA(gpa|S): private->shared conversions");
  v.counter("map_gpa_to_private", stats_.map_gpa_to_private, "calls",
            "completed MapGPA(gpa): shared->private conversions, each followed by ACCEPTs");
  v.counter("map_gpa_failed", stats_.map_gpa_failed, "calls",
            "MapGPA the host answered with an error (the guest accepted nothing)");
}

}  // namespace cvmsim::guest
