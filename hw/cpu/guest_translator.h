// The one translate path of a vCPU core (hw/cpu), shared by the timed VcpuModule and the untimed
// FunctionalCpu: TLB lookup, stage-2 walk through the page-walk cache (of the root the backend's
// GuestAccessPolicy picks), the permission check, the policy's check chain on the translated
// frame, and on a fault the VM exit and the retry, up to a limit.
//
// What differs between the cores is what an event costs and where it is counted, so the path is
// a template over a sink the core supplies (no virtual call; the untimed core's empty methods
// vanish):
//   void tlb_hit()                         a lookup that granted the access (timed: its cycles)
//   void walked(const WalkResult&, bool private_root)   a walk done (timed: its references)
//   bool exit(const VmExit&)               deliver an exit; false: the core stops
//   void retried()                         the exit was handled; the access is tried again
//   void give_up(Gpa, unsigned attempts)   still faulting after max_fault_retries handled exits
// The timed core keeps its TLB-hit test inline in its own access path (principle 5) and calls
// translate_slow() with the entry it found; both come to the same result as translate().
#pragma once

#include <cstdint>

#include "hw/base/addr.h"
#include "hw/base/principal.h"
#include "hw/cpu/guest_access_policy.h"
#include "hw/cpu/vm_exit.h"
#include "hw/memory/key_config.h"
#include "hw/mmu/pwc.h"
#include "hw/mmu/stage2_table.h"
#include "hw/mmu/tlb.h"
#include "hw/mmu/walker.h"

namespace cvmsim {

struct TranslatorParams {
  unsigned vcpu = 0;        // index within the VM (checks see it)
  Principal who = kNobody;  // the VM's principal (checks see it)
  KeyId key = 0;            // the access key without a policy
  uint16_t asid = 1;        // TLB / PWC tag (VPID / ASID / VMID)
  unsigned tlb_sets = 128, tlb_ways = 12;
  unsigned pwc_entries = 32, pwc_ways = 4;
  unsigned max_fault_retries = 8;
};

// The translation of one 4 KiB piece.
struct Translation {
  Pfn pfn;
  // The TLB entry, when it maps exactly this 4 KiB frame (its host_ptr may then cache the
  // frame's DMI pointer). Valid until the next TLB fill or invalidation.
  TlbEntry* entry = nullptr;
};

class GuestTranslator {
 public:
  GuestTranslator(const TranslatorParams& p, const Stage2Table& stage2)
      : p_(p),
        stage2_(stage2),
        tlb_(TlbConfig{p.tlb_sets, p.tlb_ways}),
        pwc_(PwcConfig{p.pwc_entries, p.pwc_ways}),
        walker_(pwc_) {}
  GuestTranslator(const GuestTranslator&) = delete;
  GuestTranslator& operator=(const GuestTranslator&) = delete;

  // The backend's policy (models/kvm KvmBackend::guest_access_policy); nullptr: one root, the
  // params' key, no checks. Set before the core runs or between accesses (the layer above
  // flushes the TLB when what it says changes).
  void set_policy(const GuestAccessPolicy* p) { policy_ = p; }
  const GuestAccessPolicy* policy() const { return policy_; }
  bool has_private_root() const { return policy_ && policy_->has_private_root(); }
  // The key an access to gpa uses (the policy's route, else the params' key).
  KeyId key_for(Gpa gpa) const { return policy_ ? policy_->route(gpa).key : p_.key; }

  Tlb& tlb() { return tlb_; }
  const Tlb& tlb() const { return tlb_; }
  Pwc& pwc() { return pwc_; }
  const Pwc& pwc() const { return pwc_; }
  const Walker& walker() const { return walker_; }
  uint16_t asid() const { return p_.asid; }

  static Perms need_of(bool write) { return write ? kPermsW : kPermsR; }

  // The whole path: lookup, then translate_slow on a miss or a refused hit.
  template <class Sink>
  bool translate(Gpa gpa, bool write, Translation& out, Sink& sink) {
    TlbEntry* e = tlb_.lookup(p_.asid, gpa);
    if (e && e->perms.allows(need_of(write))) {
      sink.tlb_hit();
      out.pfn = e->pfn_for(gpa);
      out.entry = e->size == PageSize::k4K ? e : nullptr;
      return true;
    }
    return translate_slow(gpa, write, e, out, sink);
  }

  // Everything but a granting TLB hit. `hit` is the entry the caller's lookup found (nullptr on
  // a miss): that lookup is not repeated, nor counted again.
  template <class Sink>
  bool translate_slow(Gpa gpa, bool write, TlbEntry* hit, Translation& out, Sink& sink);

 private:
  // The exit a walk's fault, or a check's refusal of a walk that succeeded, starts from: a
  // stage-2 fault with what the walk found (a check then sets the reason and its bits).
  static VmExit fault_exit(Gpa gpa, bool write, const WalkResult& w, const GuestRoute& route) {
    VmExit e;
    e.gpa = gpa;
    e.write = write;
    e.present = w.present;
    e.private_access = route.private_access;
    e.level = w.level;
    if (w.present) e.leaf_perms = w.perms;
    return e;
  }

  void fill(Gpa gpa, const WalkResult& w, Perms granted, Translation& out) {
    TlbEntry* filled = tlb_.fill(p_.asid, gpa, w.pfn, w.size, granted, w.sw);
    out.pfn = w.pfn_for(gpa);
    out.entry = w.size == PageSize::k4K ? filled : nullptr;
  }
  // Hands a fault or refusal to the core; false: the core stops (given up after
  // max_fault_retries handled exits, or stopped by the handler).
  template <class Sink>
  bool deliver(const VmExit& e, unsigned attempt, Sink& sink) {
    if (attempt >= p_.max_fault_retries) {
      sink.give_up(e.gpa, attempt);
      return false;
    }
    if (!sink.exit(e)) return false;
    sink.retried();
    return true;
  }

  TranslatorParams p_;
  const Stage2Table& stage2_;
  const GuestAccessPolicy* policy_ = nullptr;
  Tlb tlb_;
  Pwc pwc_;
  Walker walker_;
};

template <class Sink>
bool GuestTranslator::translate_slow(Gpa gpa, bool write, TlbEntry* hit, Translation& out,
                                     Sink& sink) {
  const Perms need = need_of(write);
  for (unsigned attempt = 0;; ++attempt) {
    // The first lookup was the caller's; a retry after an exit looks again.
    TlbEntry* e = attempt == 0 ? hit : tlb_.lookup(p_.asid, gpa);
    if (e) {
      sink.tlb_hit();
      if (e->perms.allows(need)) {
        out.pfn = e->pfn_for(gpa);
        out.entry = e->size == PageSize::k4K ? e : nullptr;
        return true;
      }
      // A permission fault on a cached entry: drop it and walk, as hardware re-walks on a fault.
      tlb_.invalidate_addr(p_.asid, gpa);
    }
    const GuestRoute route = policy_ ? policy_->route(gpa) : GuestRoute{nullptr, p_.key, false};
    const WalkResult w = route.root ? walker_.walk(*route.root, gpa, p_.asid, need)
                                    : walker_.walk(stage2_, gpa, p_.asid, need);
    sink.walked(w, route.root != nullptr);
    if (w.fault == WalkFault::kNone) {
      if (!policy_ || !policy_->has_checks()) [[likely]] {
        fill(gpa, w, w.perms, out);
        return true;
      }
      VmExit refusal = fault_exit(gpa, write, w, route);
      const GuestAccess a{p_.vcpu, p_.asid, p_.who, gpa, w.pfn_for(gpa), w.size, write, route};
      if (policy_->run_checks(a, refusal)) {
        // The entry vouches only for what was checked (a write implies the read it would need).
        fill(gpa, w, w.perms & (write ? kPermsRW : kPermsR), out);
        return true;
      }
      if (!deliver(refusal, attempt, sink)) return false;
      continue;
    }
    if (!deliver(fault_exit(gpa, write, w, route), attempt, sink)) return false;
  }
}

}  // namespace cvmsim
