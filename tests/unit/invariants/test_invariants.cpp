// Each generic invariant holds on a correct state and fails on a hand-made broken one. Broken
// states are made by writing the hardware structures directly (as a buggy or hostile kernel
// would), behind KVM's back; full checks find them, and incremental checks find what KVM's own
// operations change.
#include <catch2/catch.hpp>

#include "../kvm/kvm_test_util.h"
#include "sim/invariants/invariants.h"
#include "sim/trace/ring_trace.h"

using namespace cvmsim;
using namespace cvmsim::kvm;
using namespace cvmsim::kvmtest;
using invariants::Checker;
using invariants::CheckMode;

namespace {

// A sw_protected VM with a private 2 MiB guest_memfd slot at 0 and a shared slot at 16 MiB,
// one private and one shared page faulted in through KVM.
struct World {
  KvmFixture f;
  int vm_fd, vcpu_fd, gmem_fd;
  World(AttrStoreKind k) : f(k) {
    vm_fd = f.new_vm(kSwProt);
    vcpu_fd = f.new_vcpu(vm_fd);
    gmem_fd = f.new_gmem(vm_fd, k2M);
    f.add_slot(vm_fd, 0, 0, k2M, gmem_fd);
    f.add_slot(vm_fd, 1, 16 << 20, k2M);
    REQUIRE(f.set_attrs(vm_fd, 0, k2M, kPriv).ok());
    REQUIRE(f.vcpu(vcpu_fd).handle_exit(0, stage2_exit(0x1000, true)).kind == ExitAction::kRetry);
    REQUIRE(f.vcpu(vcpu_fd).handle_exit(0, stage2_exit((16 << 20) + 0x2000, true)).kind ==
            ExitAction::kRetry);
    REQUIRE(f.mapped(vm(), 0x1000));
  }
  Vm& vm() { return f.vm(vm_fd); }
  Checker checker(CheckMode m) {
    return Checker(f.kvm, f.mem, m, invariants::generic_invariants());
  }
};

bool has(const std::vector<Violation>& v, const std::string& id) {
  for (const auto& x : v)
    if (x.invariant == id) return true;
  return false;
}

}  // namespace

TEST_CASE("invariants hold on a correct state, full and incremental") {
  World w(any_store());
  for (CheckMode m : {CheckMode::kFull, CheckMode::kIncremental}) {
    Checker c = w.checker(m);
    const auto v = c.check();
    INFO((v.empty() ? std::string() : v.front().message));
    CHECK(v.empty());
  }
  // A conversion through KVM (zap + flush) keeps them.
  REQUIRE(w.f.set_attrs(w.vm_fd, 0x1000, kPage, 0).ok());
  Checker c = w.checker(CheckMode::kIncremental);
  CHECK(c.check().empty());
}

TEST_CASE("ISO-1 catches a private frame mapped a second time") {
  World w(any_store());
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  // The same frame also at a shared GFN of the same VM, behind KVM's back.
  REQUIRE(w.vm().stage2().map(Gpa((16 << 20) + 0x5000), priv, PageSize::k4K, kPermsRWX).ok());
  Checker c = w.checker(CheckMode::kFull);
  const auto v = c.check();
  CHECK(has(v, "ISO-1"));
  CHECK_FALSE(has(v, "ISO-3"));  // the private mapping itself is the right one
}

TEST_CASE("ISO-1 and ISO-7 catch another VM's guest_memfd frame") {
  World w(any_store());
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  const int evil = w.f.new_vm(kSwProt);
  w.f.add_slot(evil, 0, 0, k2M);
  REQUIRE(w.f.vm(evil).stage2().map(Gpa(0x7000), priv, PageSize::k4K, kPermsRWX).ok());
  Checker c = w.checker(CheckMode::kFull);
  const auto v = c.check();
  CHECK(has(v, "ISO-1"));
  CHECK(has(v, "ISO-7"));
}

TEST_CASE("ISO-3 catches an orphan private mapping") {
  World w(any_store());
  // A private GFN mapped to a frame guest_memfd does not know.
  auto stray = w.f.frames.alloc(PageSize::k4K);
  REQUIRE(stray.ok());
  REQUIRE(w.vm().stage2().map(Gpa(0x9000), *stray, PageSize::k4K, kPermsRWX).ok());
  Checker c = w.checker(CheckMode::kFull);
  CHECK(has(c.check(), "ISO-3"));
}

TEST_CASE("ISO-3 catches a mapping left behind by a closed guest_memfd that was not zapped") {
  World w(any_store());
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  // Close the file (KVM zaps), then put the mapping back by hand: the slot is dead.
  REQUIRE(w.f.proc.close(w.gmem_fd).ok());
  REQUIRE_FALSE(w.f.mapped(w.vm(), 0x1000));
  REQUIRE(w.vm().stage2().map(Gpa(0x1000), priv, PageSize::k4K, kPermsRWX).ok());
  Checker c = w.checker(CheckMode::kFull);
  CHECK(has(c.check(), "ISO-3"));
}

TEST_CASE("ISO-5 catches a TLB entry that outlives its stage-2 mapping") {
  World w(any_store());
  Tlb tlb(TlbConfig{64, 4});
  Pwc pwc(PwcConfig{});
  w.f.vcpu(w.vcpu_fd).attach(&tlb, &pwc);
  DetachOnExit detach{w.f.vcpu(w.vcpu_fd)};
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  tlb.fill(w.vm().asid(), Gpa(0x1000), priv, PageSize::k4K, kPermsRWX);
  Checker c = w.checker(CheckMode::kIncremental);
  CHECK(c.check().empty());
  SECTION("KVM's own zap flushes: no violation") {
    REQUIRE(w.f.set_attrs(w.vm_fd, 0x1000, kPage, 0).ok());
    CHECK(c.check().empty());
    CHECK(tlb.peek(w.vm().asid(), Gpa(0x1000)) == nullptr);
  }
  SECTION("an unmap without a flush leaves a stale entry") {
    REQUIRE(w.vm().stage2().unmap(Gpa(0x1000), PageSize::k4K).ok());
    Checker full = w.checker(CheckMode::kFull);
    CHECK(has(full.check(), "ISO-5"));
  }
}

TEST_CASE("ISO-6 catches a frame that still holds another principal's data") {
  World w(any_store());
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  Checker ok = w.checker(CheckMode::kFull);
  REQUIRE(ok.check().empty());
  w.f.mem.set_label(priv, vm_principal(7));  // as if another VM's data was never scrubbed
  Checker c = w.checker(CheckMode::kFull);
  const auto v = c.check();
  CHECK(has(v, "ISO-6"));
  // The host user's data is fine on a shared page, not on a private one.
  w.f.mem.set_label(priv, kHostUser);
  Checker c2 = w.checker(CheckMode::kFull);
  CHECK(has(c2.check(), "ISO-6"));
  const Pfn shared = w.f.mapped_pfn(w.vm(), (16 << 20) + 0x2000);
  w.f.mem.set_label(priv, kNobody);
  w.f.mem.set_label(shared, kHostUser);
  Checker c3 = w.checker(CheckMode::kFull);
  CHECK(c3.check().empty());
}

TEST_CASE("ISO-2 flags a read of a VM's private plaintext by anyone else, and only that") {
  World w(any_store());
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  const Pfn shared = w.f.mapped_pfn(w.vm(), (16 << 20) + 0x2000);
  const Principal owner = w.vm().principal();
  SECTION("the host kernel reads the VM's private frame: a leak") {
    Checker c = w.checker(CheckMode::kIncremental);
    REQUIRE(c.check().empty());
    c.note_plaintext_read(PlaintextRead{priv, kHostKernel, owner});
    const auto v = c.check();
    REQUIRE(has(v, "ISO-2"));
    CHECK(v.front().frames == std::vector<Pfn>{priv});
    // Judged once: the next check does not report the same read again.
    CHECK_FALSE(has(c.check(), "ISO-2"));
  }
  SECTION("another VM reads it: a leak") {
    Checker c = w.checker(CheckMode::kFull);
    c.note_plaintext_read(PlaintextRead{priv, vm_principal(7), owner});
    CHECK(has(c.check(), "ISO-2"));
  }
  SECTION("the host reads the VM's data on a shared page (made shared on purpose): no leak") {
    Checker c = w.checker(CheckMode::kFull);
    c.note_plaintext_read(PlaintextRead{shared, kHostKernel, owner});
    CHECK_FALSE(has(c.check(), "ISO-2"));
  }
  SECTION("host data read by the host: no leak") {
    Checker c = w.checker(CheckMode::kFull);
    c.note_plaintext_read(PlaintextRead{priv, kHostKernel, kHostUser});
    CHECK_FALSE(has(c.check(), "ISO-2"));
  }
  SECTION("checking off: reads are not even recorded") {
    Checker c = w.checker(CheckMode::kOff);
    c.note_plaintext_read(PlaintextRead{priv, kHostKernel, owner});
    CHECK(c.check().empty());
  }
}

TEST_CASE("incremental checks re-read only what changed and report a violation once") {
  World w(any_store());
  Checker c = w.checker(CheckMode::kIncremental);
  CHECK(c.check().empty());
  // Break a frame's label, then let KVM remap it: the change marks the range, the check finds it.
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  w.f.mem.set_label(priv, vm_principal(9));
  CHECK(c.check().empty());  // nothing changed through KVM: not re-read
  REQUIRE(w.f.set_attrs(w.vm_fd, 0x1000, kPage, 0).ok());
  REQUIRE(w.f.set_attrs(w.vm_fd, 0x1000, kPage, kPriv).ok());
  REQUIRE(w.f.vcpu(w.vcpu_fd).handle_exit(0, stage2_exit(0x1000, false)).kind ==
          ExitAction::kRetry);
  const auto v = c.check();
  CHECK(has(v, "ISO-6"));
  CHECK(c.check().empty());  // already reported
  CHECK(c.violations().size() == v.size());
}

TEST_CASE("ISO-4 catches a private frame swapped without an invalidation") {
  World w(any_store());
  Checker c = w.checker(CheckMode::kIncremental);
  REQUIRE(c.check().empty());
  SECTION("a conversion and a punch-hole change the frame legitimately") {
    const Pfn before = w.f.mapped_pfn(w.vm(), 0x1000);
    REQUIRE(w.f.set_attrs(w.vm_fd, 0x1000, kPage, 0).ok());
    REQUIRE(w.f.kvm
                .fallocate(w.f.proc, w.gmem_fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0x1000,
                           kPage)
                .ok());
    auto hold = w.f.frames.alloc(PageSize::k4K);  // takes the freed frame: the refault gets another
    REQUIRE(hold.ok());
    REQUIRE(w.f.set_attrs(w.vm_fd, 0x1000, kPage, kPriv).ok());
    REQUIRE(w.f.vcpu(w.vcpu_fd).handle_exit(0, stage2_exit(0x1000, true)).kind ==
            ExitAction::kRetry);
    CHECK(w.f.mapped_pfn(w.vm(), 0x1000) != before);
    CHECK(c.check().empty());
  }
  SECTION("a swap behind KVM's back is caught") {
    auto other = w.f.frames.alloc(PageSize::k4K);
    REQUIRE(other.ok());
    REQUIRE(w.vm().stage2().unmap(Gpa(0x1000), PageSize::k4K).ok());
    REQUIRE(w.vm().stage2().map(Gpa(0x1000), *other, PageSize::k4K, kPermsRWX).ok());
    w.vm().note_changed(GfnRange{Gfn(1), Gfn(2)});
    CHECK(has(c.check(), "ISO-4"));
  }
}

TEST_CASE("RingTrace keeps the last N events in the trace file's format and forwards every event") {
  struct Counting final : TraceSink {
    bool on = false;
    int n = 0;
    bool enabled() const override { return on; }
    void event(uint64_t, std::string_view, std::string_view, std::string_view) override { ++n; }
  } inner;
  RingTrace none(inner, 0);
  CHECK_FALSE(none.enabled());  // nothing kept, nothing behind it: callers skip formatting
  RingTrace ring(inner, 3);
  CHECK(ring.enabled());
  CHECK(ring.recent().empty());
  for (int i = 0; i < 5; ++i) ring.event(1500 * uint64_t(i), "c", "e" + std::to_string(i), "d");
  CHECK(inner.n == 0);  // a disabled inner sink gets nothing
  const auto r = ring.recent();
  REQUIRE(r.size() == 3);
  CHECK(r[0] == "3.000 c e2 d");
  CHECK(r[2] == "6.000 c e4 d");
  inner.on = true;
  ring.event(7, "c", "e", "");
  CHECK(inner.n == 1);
  CHECK(ring.recent().back() == "0.007 c e ");
}

TEST_CASE("a violation report names where it was found, the frames, and the recent trace events") {
  World w(any_store());
  const Pfn priv = w.f.mapped_pfn(w.vm(), 0x1000);
  REQUIRE(w.vm().stage2().map(Gpa((16 << 20) + 0x5000), priv, PageSize::k4K, kPermsRWX).ok());
  Checker c = w.checker(CheckMode::kFull);
  c.set_recent_trace([] { return std::vector<std::string>{"1.000 a b c", "2.000 d e f"}; });
  const auto v = c.check("step 7 (vmm)");
  REQUIRE(has(v, "ISO-1"));
  CHECK(v.front().where == "step 7 (vmm)");
  CHECK(v.front().recent_trace.size() == 2);
  const std::string rep = c.report();
  CHECK(rep.find("violation 1: ISO-1 at step 7 (vmm)") != std::string::npos);
  CHECK(rep.find("frames: 0x") != std::string::npos);
  CHECK(rep.find("last 2 trace events:\n    1.000 a b c\n    2.000 d e f\n") != std::string::npos);
  // A lasting violation is reported once.
  CHECK(c.check("step 8 (vmm)").empty());
}

TEST_CASE("overlapping or touching dirty ranges are merged, their union kept") {
  World w(any_store());
  (void)w.vm().take_dirty();
  w.vm().note_changed(GfnRange{Gfn(1), Gfn(3)});
  w.vm().note_changed(GfnRange{Gfn(2), Gfn(5)});  // overlaps: grows the last range
  w.vm().note_changed(GfnRange{Gfn(5), Gfn(6)});  // touches it
  w.vm().note_changed(GfnRange{Gfn(3), Gfn(4)});  // inside it
  w.vm().note_changed(GfnRange{Gfn(8), Gfn(9)});  // a gap: a new range
  const Vm::Dirty d = w.vm().take_dirty();
  CHECK_FALSE(d.all);
  REQUIRE(d.ranges.size() == 2);
  CHECK(d.ranges[0] == GfnRange{Gfn(1), Gfn(6)});
  CHECK(d.ranges[1] == GfnRange{Gfn(8), Gfn(9)});
  CHECK_FALSE(w.vm().is_dirty());
}

TEST_CASE("a check that skips the leaf-only invariants (no changed leaf) hides no later change") {
  World w(any_store());
  Checker c = w.checker(CheckMode::kIncremental);
  REQUIRE(c.check().empty());
  // A conversion to shared zaps the leaf: the changed range holds no leaf, so ISO-1/3/4/6/7
  // have nothing to visit and are skipped.
  REQUIRE(w.f.set_attrs(w.vm_fd, 0x1000, kPage, 0).ok());
  CHECK(c.check().empty());
  CHECK(c.check().empty());  // nothing changed at all
  // Then an orphan private mapping behind KVM's back, recorded in pieces (merged ranges): the
  // next incremental check reads the leaf and ISO-3 catches it.
  auto stray = w.f.frames.alloc(PageSize::k4K);
  REQUIRE(stray.ok());
  REQUIRE(w.vm().stage2().map(Gpa(0x9000), *stray, PageSize::k4K, kPermsRWX).ok());
  w.vm().note_changed(GfnRange{Gfn(8), Gfn(9)});
  w.vm().note_changed(GfnRange{Gfn(9), Gfn(10)});
  CHECK(has(c.check(), "ISO-3"));
}
