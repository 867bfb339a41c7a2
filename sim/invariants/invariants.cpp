#include "sim/invariants/invariants.h"

#include <bit>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <tuple>
#include <unordered_map>

#include "hw/base/principal.h"

namespace cvmsim::invariants {

using namespace cvmsim::kvm;

namespace {

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

// One stage-2 leaf as the checks see it.
struct Leaf {
  Gfn gfn;
  Pfn pfn;
  PageSize size;
  Perms perms;
};

// The valid leaves of vm inside `ranges`, read from the real table (lookups walk it as
// software would).
void leaves_in(const Vm& vm, const std::vector<GfnRange>& ranges, std::vector<Stage2Leaf>& out) {
  out.clear();
  const Stage2Table& t = vm.stage2();
  // Shared leaves sit at gfn | kvm_gfn_direct_bits (a shared bit); checks see the gfn.
  const uint64_t direct = gfn_to_gpa(Gfn(vm.backend().gfn_direct_bits(vm))).value();
  for (const GfnRange& r : ranges) {
    uint64_t a = gfn_to_gpa(r.start).value() | direct;
    const uint64_t end = gfn_to_gpa(r.end).value() | direct;
    while (a < end) {
      const Stage2Lookup lk = t.lookup(Gpa(a));
      if (lk.mapped() && !lk.pte.perms.none()) {
        Stage2Leaf l;
        l.gpa = Gpa(lk.base.value() & ~direct);
        l.pfn = lk.pte.pfn;
        l.size = lk.size();
        l.perms = lk.pte.perms;
        l.valid = true;
        out.push_back(l);
      }
      a = lk.base.value() + (kPageBytes << (9 * lk.level));
    }
  }
}

// f(const Leaf&) for the leaves the check must look at: the dirty ones, or all of them.
template <class F>
void for_each_leaf(const CheckScope& s, const Vm& vm, F&& f) {
  if (const std::vector<Stage2Leaf>* d = s.dirty_leaves ? s.dirty_leaves(vm) : nullptr) {
    for (const Stage2Leaf& l : *d) f(Leaf{gpa_to_gfn(l.gpa), l.pfn, l.size, l.perms});
    return;
  }
  const uint64_t direct = vm.backend().gfn_direct_bits(vm);
  vm.stage2().for_each_leaf([&](const Stage2Leaf& l) {
    if (l.valid) f(Leaf{Gfn(gpa_to_gfn(l.gpa).value() & ~direct), l.pfn, l.size, l.perms});
  });
}

const char* principal_name(Principal p) {
  static thread_local char buf[32];
  if (p == kNobody) return "nobody";
  if (p == kHostKernel) return "host kernel";
  if (p == kHostUser) return "host user";
  if (p == kFirmware) return "firmware";
  if (p == kDevice) return "device";
  std::snprintf(buf, sizeof buf, "VM #%u", static_cast<unsigned>(p.id - kFirstVmPrincipal));
  return buf;
}

// The chain of a leak (docs/invariants.md "Violation reports"): frame f's provenance log,
// oldest first, with VMs named; `last` (if not empty) is appended as the event being reported.
// A principal by name: a live VM's name, else principal_name.
std::string name_of(const CheckScope& s, Principal p) {
  for (const auto& vm : s.kvm.vms())
    if (vm->principal() == p) return vm->name();
  return principal_name(p);
}

std::vector<std::string> chain_of(const CheckScope& s, Pfn f, const std::string& last = {}) {
  auto name = [&](Principal p) { return name_of(s, p); };
  std::vector<std::string> out;
  uint64_t lost = 0;
  const auto ev = s.mem.history().events(f, &lost);
  if (ev.empty() && last.empty()) return out;
  const std::string frame = "frame " + hex(f.value()) + ": ";
  if (lost) out.push_back(frame + "(" + std::to_string(lost) + " older events dropped)");
  for (const FrameEvent& e : ev) out.push_back(frame + FrameHistory::describe(e, name));
  if (!last.empty()) out.push_back(frame + "now: " + last);
  return out;
}

}  // namespace

// The guest_memfd file (if any) whose page cache holds frame f.
const GmemFile* find_gmem_owner(const Kvm& kvm, Pfn f) {
  const GmemFile* owner = nullptr;
  kvm.for_each_gmem([&](const GmemFile& g) {
    if (!owner && g.inode().owns_frame(f)) owner = &g;
  });
  return owner;
}

namespace {

// ISO-1: a private frame is mapped into at most one VM, at one GFN, and belongs to that VM.
// Checked per mapping, which makes it incremental: a guest_memfd folio may be mapped only by
// its own VM, only at the GFN its binding gives it (so a second mapping of the frame, at any
// GFN of any VM, is caught when that mapping is checked), and never be a host page.
void check_iso1(const CheckScope& s, std::vector<Violation>& out) {
  for (const auto& vmp : s.kvm.vms()) {
    const Vm& vm = *vmp;
    for_each_leaf(s, vm, [&](const Leaf& l) {
      for (uint64_t i = 0; i < frames_of(l.size); ++i) {
        const Gfn g = l.gfn + i;
        const Pfn f = l.pfn + i;
        const GmemFile* owner = s.gmem_owner(f);
        if (!owner)
          continue;  // not private memory (ISO-3 flags a private GFN that maps such a frame)
        if (&owner->vm() != static_cast<const GmemVm*>(&vm)) {
          out.push_back({"ISO-1",
                         vm.name() + " maps frame " + hex(f.value()) + " at gfn " + hex(g.value()) +
                             ": the frame belongs to another VM's guest_memfd",
                         vm.name(),
                         {g},
                         {f}});
          continue;
        }
        const GfnFacts fx = s.facts(vm, g);
        const Memslot* slot = fx.slot;
        const bool gmem_side = fx.is_private || (slot && slot->gmem_only);
        const GmemFolio* folio = slot && slot->gmem.file == owner ? fx.folio : nullptr;
        if (!gmem_side || !folio || folio->pfn != f)
          out.push_back(
              {"ISO-1",
               vm.name() + " maps guest_memfd frame " + hex(f.value()) + " at gfn " +
                   hex(g.value()) +
                   (gmem_side ? ", which is not the GFN its binding gives it"
                              : ", a shared GFN: the private frame is mapped a second time"),
               vm.name(),
               {g},
               {f}});
        for (const Process* p : s.kvm.processes())
          if (p->mm().owns_frame(f))
            out.push_back({"ISO-1",
                           "guest_memfd frame " + hex(f.value()) + " of " + vm.name() +
                               " is also a page of process " + p->name(),
                           vm.name(),
                           {g},
                           {f}});
      }
    });
  }
}

// ISO-3: every private mapping in hardware structures is one KVM and guest_memfd know about.
void check_iso3(const CheckScope& s, std::vector<Violation>& out) {
  for (const auto& vmp : s.kvm.vms()) {
    const Vm& vm = *vmp;
    for_each_leaf(s, vm, [&](const Leaf& l) {
      for (uint64_t i = 0; i < frames_of(l.size); ++i) {
        const Gfn g = l.gfn + i;
        const GfnFacts fx = s.facts(vm, g);
        if (!fx.is_private) continue;
        const Memslot* slot = fx.slot;
        std::string why;
        if (!slot)
          why = "outside every memslot";
        else if (!slot->has_gmem())
          why = "in a memslot without guest_memfd";
        else if (!slot->gmem.file)
          why = "in a dead memslot (its guest_memfd was closed)";
        else {
          const GmemFolio* f = fx.folio;
          if (!f)
            why = "but guest_memfd has no folio at index " + hex(slot->gmem_index(g).value());
          else if (f->pfn != l.pfn + i)
            why = "but guest_memfd's folio is frame " + hex(f->pfn.value());
        }
        if (!why.empty())
          out.push_back({"ISO-3",
                         vm.name() + " maps private gfn " + hex(g.value()) + " to frame " +
                             hex((l.pfn + i).value()) + " " + why,
                         vm.name(),
                         {g},
                         {l.pfn + i}});
      }
    });
  }
}

// ISO-5: no TLB entry gives access the stage-2 table no longer grants.
void check_iso5(const CheckScope& s, std::vector<Violation>& out) {
  for (const auto& vmp : s.kvm.vms()) {
    const Vm& vm = *vmp;
    const std::vector<GfnRange>* dirty = s.dirty(vm);
    if (dirty && dirty->empty()) continue;  // nothing changed: the TLB was filled from this table
    vm.for_each_vcpu([&](const Vcpu& vc) {
      const Tlb* tlb = vc.tlb();
      if (!tlb) return;
      const KvmBackend& be = vm.backend();
      const uint64_t direct = gfn_to_gpa(Gfn(be.gfn_direct_bits(vm))).value();
      auto check_entry = [&](const TlbEntry& e) {
        // With a private root (a firmware-kept table) private GPAs are translated there, not by
        // stage-2.
        const Stage2Lookup lk = be.has_private_root() && be.translates_privately(vm, e.base())
                                    ? be.lookup_private(vm, e.base())
                                    : vm.stage2().lookup(e.base());
        const bool same =
            lk.mapped() && lk.pfn_for(e.base()) == e.pfn && lk.pte.perms.allows(e.perms);
        if (!same)
          out.push_back({"ISO-5",
                         vm.name() + " vCPU " + std::to_string(vc.id()) + " TLB still maps gfn " +
                             hex(e.gfn.value()) + " to frame " + hex(e.pfn.value()) +
                             ", which stage-2 " +
                             (lk.mapped() ? "now maps to frame " + hex(lk.pfn_for(e.base()).value())
                                          : std::string("no longer maps")),
                         vm.name(),
                         {e.gfn},
                         {e.pfn}});
      };
      // Incremental: look up the changed GFNs when that is cheaper than scanning the TLB.
      uint64_t pages = 0;
      if (dirty)
        for (const GfnRange& r : *dirty) pages += r.pages();
      if (dirty && pages <= tlb->occupancy()) {
        for (const GfnRange& r : *dirty)
          for (Gfn g = r.start; g < r.end; ++g) {
            if (const TlbEntry* e = tlb->peek(vm.asid(), gfn_to_gpa(g))) check_entry(*e);
            if (direct)
              if (const TlbEntry* e = tlb->peek(vm.asid(), Gpa(gfn_to_gpa(g).value() | direct)))
                check_entry(*e);
          }
      } else {
        tlb->for_each_occupied([&](const TlbEntry& e) {
          if (e.asid == vm.asid()) check_entry(e);
        });
      }
    });
  }
}

// ISO-6: a frame a VM can reach holds nobody else's data.
void check_iso6(const CheckScope& s, std::vector<Violation>& out) {
  for (const auto& vmp : s.kvm.vms()) {
    const Vm& vm = *vmp;
    for_each_leaf(s, vm, [&](const Leaf& l) {
      for (uint64_t i = 0; i < frames_of(l.size); ++i) {
        const Pfn f = l.pfn + i;
        const Principal lab = s.mem.meta(f).label;
        const bool priv = s.facts(vm, l.gfn + i).is_private;
        // Private memory may hold only the VM's own data; shared memory also what the host
        // put there on purpose (the VMM in userspace, or the host kernel, e.g. an in-kernel
        // device backend writing a shared buffer).
        const bool ok = lab == kNobody || lab == vm.principal() ||
                        (!priv && (lab == kHostUser || lab == kHostKernel));
        if (!ok) {
          out.push_back({"ISO-6",
                         vm.name() + " can reach frame " + hex(f.value()) + " at " +
                             (priv ? "private" : "shared") + " gfn " + hex((l.gfn + i).value()) +
                             ", which still holds data of " + principal_name(lab) +
                             " (not scrubbed when it changed hands)",
                         vm.name(),
                         {l.gfn + i},
                         {f}});
          out.back().chain =
              chain_of(s, f,
                       vm.name() + " can reach it at gfn " + hex((l.gfn + i).value()) +
                           " while it holds " + name_of(s, lab) + "'s data");
        }
      }
    });
  }
}

// ISO-7: guest_memfd memory only ever reaches the VM it was created for.
void check_iso7(const CheckScope& s, std::vector<Violation>& out) {
  for (const auto& vmp : s.kvm.vms()) {
    const Vm& vm = *vmp;
    for_each_leaf(s, vm, [&](const Leaf& l) {
      const GmemFile* owner = s.gmem_owner(l.pfn);
      if (owner && &owner->vm() != static_cast<const GmemVm*>(&vm))
        out.push_back({"ISO-7",
                       vm.name() + " maps frame " + hex(l.pfn.value()) + " (gfn " +
                           hex(l.gfn.value()) +
                           "), a folio of a guest_memfd created for another VM",
                       vm.name(),
                       {l.gfn},
                       {l.pfn}});
    });
  }
}

}  // namespace

namespace {

// ISO-2: nobody but the owning VM reads the plaintext of its private data. The memory system
// reports every read that returned a frame labelled with another principal (secret labels of
// hw/memory); a read is a leak when the frame is the holder VM's private memory (a guest_memfd
// folio of its file) and the reader is not that VM. Shared memory the VM wrote (a conversion to
// shared, a bounce buffer) is read by the host on purpose and is not flagged.
void check_iso2(const CheckScope& s, std::vector<Violation>& out) {
  if (!s.plaintext_reads) return;
  for (const PlaintextRead& r : *s.plaintext_reads) {
    const Vm* holder = nullptr;
    for (const auto& vm : s.kvm.vms())
      if (vm->principal() == r.holder) holder = vm.get();
    if (!holder) continue;  // host or firmware data: not a VM's secret
    const GmemFile* owner = s.gmem_owner(r.frame);
    if (!owner || &owner->vm() != static_cast<const GmemVm*>(holder))
      continue;  // not its private memory
    out.push_back({"ISO-2",
                   std::string(principal_name(r.reader)) + " read the plaintext of " +
                       holder->name() + "'s private frame " + hex(r.frame.value()),
                   holder->name(),
                   {},
                   {r.frame}});
    out.back().chain = chain_of(s, r.frame,
                                std::string(principal_name(r.reader)) + " read its plaintext (" +
                                    holder->name() + "'s private data)");
  }
}

// ISO-4: while a GFN stays private its frame does not change except through a conversion or a
// punch-hole, both of which go through KVM's invalidation (mmu_invalidate_seq advances). The
// check remembers, per private GFN it has seen mapped, the frame and the sequence number; a new
// frame under an unchanged sequence is a swap nobody asked for. (It sees the mappings of the
// stage-2 table; a backend with its own private root covers its tables with its invariants.)
struct Iso4State {
  struct Seen {
    uint64_t pfn;
    uint64_t seq;
  };
  std::map<const Vm*, std::unordered_map<uint64_t, Seen>> seen;
};

void check_iso4(Iso4State& st, const CheckScope& s, std::vector<Violation>& out) {
  // Forget VMs that are gone.
  for (auto it = st.seen.begin(); it != st.seen.end();) {
    bool alive = false;
    for (const auto& vm : s.kvm.vms()) alive = alive || vm.get() == it->first;
    it = alive ? std::next(it) : st.seen.erase(it);
  }
  for (const auto& vmp : s.kvm.vms()) {
    const Vm& vm = *vmp;
    auto& seen = st.seen[&vm];
    const uint64_t seq = vm.mmu_invalidate_seq();
    for_each_leaf(s, vm, [&](const Leaf& l) {
      for (uint64_t i = 0; i < frames_of(l.size); ++i) {
        const Gfn g = l.gfn + i;
        if (!s.facts(vm, g).is_private) {
          seen.erase(g.value());
          continue;
        }
        const uint64_t f = (l.pfn + i).value();
        auto [it, fresh] = seen.try_emplace(g.value(), Iso4State::Seen{f, seq});
        if (!fresh && it->second.pfn != f && it->second.seq == seq)
          out.push_back({"ISO-4",
                         vm.name() + " private gfn " + hex(g.value()) + " changed from frame " +
                             hex(it->second.pfn) + " to " + hex(f) +
                             " with no invalidation (no conversion or punch-hole) in between",
                         vm.name(),
                         {g},
                         {Pfn(it->second.pfn), Pfn(f)}});
        it->second = Iso4State::Seen{f, seq};
      }
    });
  }
}

// ISO-8: key hygiene. A key id (HKID, ASID) a VM holds is carried by no cache line or frame of
// another (earlier) owner. Reads the backends' current key assignments (KvmBackend::vm_key) and
// PhysMem's per-line key tags (LineState: cached lines and their writer, TD-owned lines and
// their key), so it needs no backend switch. The scan of the line state runs when the set of
// (VM, key) assignments changed since the last check (a full check always): a stale line can
// only meet a new owner when a key is handed out.
struct Iso8State {
  std::vector<std::tuple<const Vm*, KeyId, uint32_t>> last;
};

void check_iso8(Iso8State& st, const CheckScope& s, std::vector<Violation>& out) {
  // Unchanged assignments (the common case): compare in place, no allocation.
  size_t n = 0;
  bool same = true;
  for (const auto& vm : s.kvm.vms())
    if (auto k = vm->backend().vm_key(*vm)) {
      same = same && n < st.last.size() &&
             st.last[n] == std::make_tuple(vm.get(), *k, vm->principal().id);
      ++n;
    }
  if (!s.full && same && n == st.last.size()) return;
  std::vector<std::tuple<const Vm*, KeyId, uint32_t>> now;
  for (const auto& vm : s.kvm.vms())
    if (auto k = vm->backend().vm_key(*vm)) now.emplace_back(vm.get(), *k, vm->principal().id);
  st.last = now;
  if (now.empty()) return;
  std::map<KeyId, const Vm*> holder;
  for (const auto& [vm, k, p] : now) {
    auto [it, fresh] = holder.emplace(k, vm);
    if (!fresh)
      out.push_back(
          {"ISO-8",
           vm->name() + " and " + it->second->name() + " both hold key id " + std::to_string(k),
           vm->name(),
           {},
           {}});
  }
  struct Stale {
    uint64_t lines = 0;
    std::vector<Pfn> frames;
    Principal owner;
    bool cached = false;
  };
  std::map<std::pair<KeyId, uint32_t>, Stale>
      stale;  // (key, other owner) -> what still carries the key
  s.mem.for_each_line_state([&](Pfn f, const LineState& ls) {
    auto note = [&](KeyId k, Principal other, uint64_t lines, bool cached) {
      Stale& x = stale[{k, other.id}];
      x.lines += static_cast<uint64_t>(std::popcount(lines));
      if (x.frames.size() < 8) x.frames.push_back(f);
      x.owner = other;
      x.cached = x.cached || cached;
    };
    // Lines in a cache tagged with a key another principal now holds.
    if (ls.cached)
      if (auto it = holder.find(ls.cached_key);
          it != holder.end() && ls.cached_owner != it->second->principal())
        note(ls.cached_key, ls.cached_owner, ls.cached, true);
    // TD-owned lines encrypted under a key another VM now holds, with the earlier VM's data.
    if (ls.td_owner)
      if (auto it = holder.find(ls.private_key); it != holder.end()) {
        const Principal lab = s.mem.meta(f).label;
        if (is_vm(lab) && lab != it->second->principal())
          note(ls.private_key, lab, ls.td_owner, false);
      }
  });
  for (const auto& [key, x] : stale) {
    const Vm* vm = holder.at(key.first);
    out.push_back(
        {"ISO-8",
         vm->name() + " holds key id " + std::to_string(key.first) + " while " +
             std::to_string(x.lines) + " " +
             (x.cached ? "cache lines tagged with it still hold data of "
                       : "lines encrypted under it still hold data of ") +
             principal_name(x.owner) + " (first frame " + hex(x.frames.front().value()) +
             "): the key was reused without writing back and flushing the previous owner's lines",
         vm->name(),
         {},
         x.frames});
  }
}

}  // namespace

std::vector<InvariantDef> generic_invariants() {
  const std::vector<std::string> all{"all"};
  return {
      {"ISO-1",
       "a private frame is mapped into at most one VM, at one GFN, and belongs to that VM only",
       "guest_memfd design discussion (a private frame belongs to exactly one VM); "
       "kvm-guest-memfd.md §13.3-§13.4",
       all, check_iso1, true},
      {"ISO-2",
       "nobody but the owning VM reads the plaintext of its private data (host kernel, host user, "
       "another VM, a device)",
       "guest_memfd design discussion (neither host userspace nor the host kernel may access a "
       "private frame); docs/invariants.md (secret labels)",
       all, check_iso2},
      {"ISO-3",
       "every private mapping in the hardware's stage-2 tables is one KVM and guest_memfd know "
       "about (no orphans)",
       "kvm-guest-memfd.md §7 (private faults resolve only from the slot's guest_memfd), §6.2 "
       "(closing zaps)",
       all, check_iso3, true},
      {"ISO-4",
       "while a GFN stays private its frame does not change except through a conversion or a "
       "punch-hole",
       "docs/invariants.md (ISO-4); kvm-guest-memfd.md §5 (every change of a mapping goes through "
       "the invalidation protocol), §13.3",
       all,
       [st = std::make_shared<Iso4State>()](const CheckScope& s, std::vector<Violation>& out) {
         check_iso4(*st, s, out);
       },
       true},
      {"ISO-5",
       "no TLB entry gives an access that the stage-2 table no longer grants (after a zap, the "
       "flush happened)",
       "kvm-guest-memfd.md §5 (invalidation: unmap then flush before the range is reused)", all,
       check_iso5},
      {"ISO-6",
       "a frame a VM can reach holds no other principal's data: frames are scrubbed when they "
       "change hands",
       "kvm-guest-memfd.md §6.3 (zero on first hand-out), §13.6; guest_memfd design discussion",
       all, check_iso6, true},
      {"ISO-7", "guest_memfd memory only ever reaches the VM it was created for",
       "kvm-guest-memfd.md §4 (kvm_gmem_bind: another VM's file is EINVAL), §13.4", all, check_iso7,
       true},
      {"ISO-8",
       "key hygiene: a key id (HKID, ASID) a VM holds is carried by no cache line or frame of "
       "another or earlier owner "
       "(a key is reused only after its lines were written back and flushed)",
       "docs/invariants.md (ISO-8): a key id goes back to its allocator only after every cache "
       "line tagged with it was written back (the firmware enforces it: docs/reference)",
       all,
       [st = std::make_shared<Iso8State>()](const CheckScope& s, std::vector<Violation>& out) {
         check_iso8(*st, s, out);
       }},
  };
}

std::vector<InvariantDef> catalogue(const std::vector<const KvmBackend*>& backends) {
  std::vector<InvariantDef> defs = generic_invariants();
  for (const KvmBackend* b : backends)
    for (auto& d : b->invariants()) defs.push_back(std::move(d));
  return defs;
}

Checker::Checker(const Kvm& kvm, const PhysMem& mem, CheckMode mode, std::vector<InvariantDef> defs)
    : kvm_(kvm), mem_(mem), mode_(mode), defs_(std::move(defs)) {}

std::vector<Violation> Checker::check_at(const std::function<std::string()>& where) {
  std::vector<Violation> found;
  if (mode_ == CheckMode::kOff) return found;
  // Nothing changed since the last check: nothing to re-read (incremental mode).
  bool any = mode_ == CheckMode::kFull;
  for (const auto& vm : kvm_.vms()) any = any || vm->is_dirty();
  any = any || !reads_.empty();
  // A VM created or destroyed changes state no live VM's dirty ranges cover (key assignments,
  // a backend's teardown: ISO-8, T6).
  bool vms_changed = false;
  {
    const auto& vms = kvm_.vms();
    bool same = vms.size() == live_vms_.size();
    for (size_t i = 0; same && i < vms.size(); ++i) same = vms[i].get() == live_vms_[i];
    if (!same) {
      any = true;
      live_vms_.clear();
      for (const auto& vm : vms) live_vms_.push_back(vm.get());
    }
    vms_changed = !same;
  }
  if (!any) return found;
  ++checks_;
  // Take each VM's dirty ranges (the checker is their only consumer) and read the leaves in
  // them once, for every invariant. Buffers are reused from check to check.
  const auto& vms = kvm_.vms();
  if (work_.size() < vms.size()) work_.resize(vms.size());
  for (size_t i = 0; i < vms.size(); ++i) {
    Work& w = work_[i];
    w.vm = vms[i].get();
    const_cast<Vm&>(*w.vm).take_dirty(w.dirty);
    w.leaves.clear();
    if (mode_ != CheckMode::kFull && !w.dirty.all) leaves_in(*w.vm, w.dirty.ranges, w.leaves);
  }
  // The leaf-only invariants (InvariantDef::leaves_only) would visit nothing when no VM has a
  // changed leaf: skip them. Decided from the leaves just read from the real tables; a full
  // check, a VM created or destroyed, or a VM with untracked changes (dirty.all) runs them all.
  bool no_leaves = mode_ != CheckMode::kFull && !vms_changed;
  for (size_t i = 0; no_leaves && i < vms.size(); ++i)
    no_leaves = !work_[i].dirty.all && work_[i].leaves.empty();
  const size_t n = vms.size();
  auto find = [&](const Vm& vm) -> const Work* {
    for (size_t i = 0; i < n; ++i)
      if (work_[i].vm == &vm) return &work_[i];
    return nullptr;
  };
  static const std::vector<GfnRange> kNone;
  CheckScope scope{kvm_,
                   mem_,
                   mode_ == CheckMode::kFull,
                   [&](const Vm& vm) -> const std::vector<GfnRange>* {
                     if (mode_ == CheckMode::kFull) return nullptr;
                     const Work* w = find(vm);
                     if (!w) return &kNone;
                     return w->dirty.all ? nullptr : &w->dirty.ranges;
                   },
                   [&](const Vm& vm) -> const std::vector<Stage2Leaf>* {
                     if (mode_ == CheckMode::kFull) return nullptr;
                     const Work* w = find(vm);
                     return !w || w->dirty.all ? nullptr : &w->leaves;
                   },
                   [&](Pfn f) -> const GmemFile* {
                     for (const auto& [pfn, owner] : memo_)
                       if (pfn == f.value()) return owner;
                     const GmemFile* owner = find_gmem_owner(kvm_, f);
                     if (memo_.size() < 64) memo_.emplace_back(f.value(), owner);
                     return owner;
                   }};
  memo_.clear();
  facts_memo_.clear();
  scope.plaintext_reads = &reads_;
  scope.facts = [&](const Vm& vm, Gfn g) -> GfnFacts {
    for (const auto& e : facts_memo_)
      if (e.vm == &vm && e.gfn == g.value()) return e.facts;
    GfnFacts fx;
    fx.is_private = vm.mem_is_private(g);
    fx.slot = vm.memslots(0).find_gfn(g);
    if (fx.slot && fx.slot->gmem.file)
      fx.folio = fx.slot->gmem.file->inode().folio(fx.slot->gmem_index(g));
    if (facts_memo_.size() < 64) facts_memo_.push_back({&vm, g.value(), fx});
    return fx;
  };
  std::vector<Violation> v;
  std::vector<std::string> recent;
  std::string here;
  bool have_recent = false;
  for (const InvariantDef& d : defs_) {
    if (no_leaves && d.leaves_only) continue;
    v.clear();
    d.check(scope, v);
    for (auto& x : v) {
      if (x.invariant.empty()) x.invariant = d.id;
      // Report a lasting violation once, not at every later check.
      if (!reported_.insert(x.invariant + "|" + x.message).second) continue;
      if (!have_recent) {
        if (recent_trace_) recent = recent_trace_();
        here = where();
      }
      have_recent = true;
      x.where = here;
      x.recent_trace = recent;
      ++violations_;
      ++by_invariant_[x.invariant];
      found.push_back(x);
      all_.push_back(x);
    }
  }
  reads_.clear();
  return found;
}

std::string Checker::report() const {
  std::string r;
  size_t n = 0;
  for (const Violation& x : all_) {
    r += "violation " + std::to_string(++n) + ": " + x.invariant +
         (x.where.empty() ? "" : " at " + x.where) + "\n";
    r += "  " + x.message + "\n";
    if (!x.vm.empty()) r += "  vm: " + x.vm + "\n";
    if (!x.gfns.empty()) {
      r += "  gfns:";
      for (Gfn g : x.gfns) r += " " + hex(g.value());
      r += "\n";
    }
    if (!x.frames.empty()) {
      r += "  frames:";
      for (Pfn f : x.frames) r += " " + hex(f.value());
      r += "\n";
    }
    if (!x.chain.empty()) {
      r += "  chain (" + std::to_string(x.chain.size()) + " events, oldest first):\n";
      for (const auto& e : x.chain) r += "    " + e + "\n";
    }
    if (!x.recent_trace.empty()) {
      r += "  last " + std::to_string(x.recent_trace.size()) + " trace events:\n";
      for (const auto& e : x.recent_trace) r += "    " + e + "\n";
    }
  }
  return r;
}

void Checker::describe_stats(StatVisitor& v) const {
  v.counter("checks", checks_, "checks", "invariant checks run (at operation boundaries)");
  v.counter("violations", violations_, "violations", "distinct invariant violations found");
  for (const auto& d : defs_) {
    auto it = by_invariant_.find(d.id);
    const uint64_t n = it == by_invariant_.end() ? 0 : it->second;
    v.counter("violations_" + d.id, n, "violations", "violations of " + d.id + ": " + d.statement);
  }
}

}  // namespace cvmsim::invariants
