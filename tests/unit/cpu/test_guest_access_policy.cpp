// A backend's GuestAccessPolicy through the untimed core (hw/cpu/functional_cpu, the translate
// path it shares with VcpuModule, hw/cpu/guest_translator.h): GPAs the policy routes to its own
// root are walked there and accessed under its key, the others go through the stage-2 table; a
// check that refuses an access turns it into the typed exit it describes, with the error code
// the hardware would report, and nothing reaches memory; the TLB entry of a checked read does not
// vouch for a write. tests/sc/guest_access_policy.cpp runs the same through the timed core.
#include <catch2/catch.hpp>

#include <optional>
#include <vector>

#include "../mmu/test_support.h"
#include "hw/cpu/functional_cpu.h"
#include "hw/cpu/guest_access_policy.h"

using namespace cvmsim;
using cvmsim::test::BumpAllocator;

namespace {

const Principal kGuest = vm_principal(1);
constexpr uint64_t kSharedBit = uint64_t{1} << 40;
constexpr KeyId kPrivateKey = 7;

// GPAs without kSharedBit: a second root under kPrivateKey; with it: the stage-2 table, key 0.
class TwoRoots final : public GuestAccessPolicy {
 public:
  explicit TwoRoots(const WalkRoot& r) : root_(r) {}
  GuestRoute route(Gpa g) const override {
    if (g.value() & kSharedBit) return GuestRoute{nullptr, 0, false};
    return GuestRoute{&root_, kPrivateKey, true};
  }
  bool has_private_root() const override { return true; }

 private:
  WalkRoot root_;
};

// Refuses writes to one frame as SNP's RMP check refuses a write to a page the guest does not
// own (an #NPF with the RMP bit), and any access to another as a page that is not Validated
// (#VC 0x404, tdx-snp.md B3).
class RefuseFrames final : public GuestAccessCheck {
 public:
  Pfn no_write{0x300}, not_validated{0x301};
  mutable std::vector<GuestAccess> seen;
  std::string_view name() const override { return "test_rmp"; }
  bool check(const GuestAccess& a, VmExit& e) const override {
    seen.push_back(a);
    if (a.pfn == no_write && a.write) {
      e.rmp = true;
      return false;
    }
    if (a.pfn == not_validated) {
      e.reason = ExitReason::kVmmCommunication;
      e.exception_code = 0x404;
      return false;
    }
    return true;
  }
};

struct Recorder final : ExitHandler {
  std::vector<VmExit> exits;
  ExitAction handle_exit(unsigned, const VmExit& e) override {
    exits.push_back(e);
    return ExitAction{};  // kStop
  }
};

struct Env {
  Env()
      : mem(test::kTestMemBytes, MemMode::kData),
        frames(test::kTableFramesBegin, test::kTableFramesEnd) {
    stage2 = std::move(*Stage2Table::create(mem, frames, Stage2Format::kEpt4));
    second = std::move(*Stage2Table::create(mem, frames, Stage2Format::kEpt4));
    policy.emplace(WalkRoot{&mem, second->root(), second->format()});
    FunctionalCpuParams p;
    p.who = kGuest;
    cpu = std::make_unique<FunctionalCpu>(p, mem, *stage2, exits);
    cpu->set_guest_access_policy(&*policy);
  }
  std::vector<uint8_t> bytes(Pfn f, uint64_t off, size_t n) {
    std::vector<uint8_t> b(n);
    mem.read(pfn_to_hpa(f) + off, b);
    return b;
  }
  PhysMem mem;
  BumpAllocator frames;
  std::unique_ptr<Stage2Table> stage2, second;
  std::optional<TwoRoots> policy;
  Recorder exits;
  std::unique_ptr<FunctionalCpu> cpu;
};

}  // namespace

TEST_CASE("guest access policy: the second root and its key for private GPAs, stage 2 else") {
  Env e;
  REQUIRE(e.second->map(Gpa(0x5000), Pfn(0x200), PageSize::k4K, kPermsRW).ok());
  REQUIRE(e.stage2->map(Gpa(0x5000 | kSharedBit), Pfn(0x400), PageSize::k4K, kPermsRW).ok());
  REQUIRE(e.cpu->execute(GuestOp::store(Gpa(0x5010), 8, 0x1111)));
  REQUIRE(e.cpu->execute(GuestOp::store(Gpa(0x5010 | kSharedBit), 8, 0x2222)));
  CHECK(e.exits.exits.empty());
  std::vector<uint8_t> want(8);
  fill_pattern(PatternKind::kValue, 0x1111, 0x5010, want);
  CHECK(e.bytes(Pfn(0x200), 0x10, 8) == want);
  CHECK(e.mem.meta(Pfn(0x200)).key_id == kPrivateKey);
  CHECK(e.mem.meta(Pfn(0x200)).label == kGuest);
  fill_pattern(PatternKind::kValue, 0x2222, 0x5010 | kSharedBit, want);
  CHECK(e.bytes(Pfn(0x400), 0x10, 8) == want);
  CHECK(e.mem.meta(Pfn(0x400)).key_id == 0);
  // A private GPA the second root does not map exits as a private stage-2 fault.
  CHECK_FALSE(e.cpu->execute(GuestOp::load(Gpa(0x9000), 8)));
  REQUIRE(e.exits.exits.size() == 1);
  const VmExit& x = e.exits.exits[0];
  CHECK(x.reason == ExitReason::kStage2Fault);
  CHECK(x.gpa == Gpa(0x9000));
  CHECK(x.private_access);
  CHECK_FALSE(x.present);
  CHECK(npf_error_code(x) == (npf::kGuestFinal | npf::kEncrypted));
  CHECK(ept_exit_qualification(x) == ept_qual::kRead);
}

TEST_CASE("guest access policy: a refusing check is the typed exit and memory is unchanged") {
  Env e;
  RefuseFrames rmp;
  e.policy->add_check(rmp);
  REQUIRE(e.second->map(Gpa(0x6000), Pfn(0x300), PageSize::k4K, kPermsRW).ok());
  REQUIRE(e.second->map(Gpa(0x7000), Pfn(0x301), PageSize::k4K, kPermsRW).ok());
  const uint64_t fp = e.mem.fingerprint(Pfn(0x300));

  SECTION("a write the RMP check refuses: #NPF with P, W, RMP, ENC") {
    // A read passes the check; the TLB entry it leaves vouches for reads only.
    REQUIRE(e.cpu->execute(GuestOp::load(Gpa(0x6000), 8)));
    REQUIRE(rmp.seen.size() == 1);
    CHECK(rmp.seen[0].pfn == Pfn(0x300));
    CHECK(rmp.seen[0].gpa == Gpa(0x6000));
    CHECK(rmp.seen[0].route.key == kPrivateKey);
    CHECK_FALSE(rmp.seen[0].write);
    REQUIRE(e.cpu->execute(GuestOp::load(Gpa(0x6008), 8)));
    CHECK(rmp.seen.size() == 1);  // a TLB hit: checked once

    CHECK_FALSE(e.cpu->execute(GuestOp::store(Gpa(0x6000), 8, 5)));
    CHECK(rmp.seen.size() == 2);  // the write was checked, not served by the read's entry
    REQUIRE(e.exits.exits.size() == 1);
    const VmExit& x = e.exits.exits[0];
    CHECK(x.reason == ExitReason::kStage2Fault);
    CHECK(x.rmp);
    CHECK(x.present);
    CHECK(x.write);
    CHECK(x.leaf_perms == kPermsRW);
    CHECK(npf_error_code(x) ==
          (npf::kPresent | npf::kWrite | npf::kRmp | npf::kGuestFinal | npf::kEncrypted));
    CHECK(e.mem.fingerprint(Pfn(0x300)) == fp);
    CHECK(e.mem.meta(Pfn(0x300)).label == kNobody);
    CHECK(e.cpu->stopped());
  }
  SECTION("an access to a page that is not validated: #VC 0x404") {
    CHECK_FALSE(e.cpu->execute(GuestOp::load(Gpa(0x7000), 8)));
    REQUIRE(e.exits.exits.size() == 1);
    CHECK(e.exits.exits[0].reason == ExitReason::kVmmCommunication);
    CHECK(e.exits.exits[0].exception_code == 0x404);
    CHECK(e.exits.exits[0].gpa == Gpa(0x7000));
  }
  SECTION("an access the checks allow goes on") {
    REQUIRE(e.second->map(Gpa(0x8000), Pfn(0x302), PageSize::k4K, kPermsRW).ok());
    REQUIRE(e.cpu->execute(GuestOp::store(Gpa(0x8000), 8, 5)));
    CHECK(e.exits.exits.empty());
    CHECK(e.mem.meta(Pfn(0x302)).label == kGuest);
    CHECK(e.mem.meta(Pfn(0x302)).key_id == kPrivateKey);
  }
}

TEST_CASE("guest access policy: a check's refusal retries after the handler fixed the cause") {
  Env e;
  RefuseFrames rmp;
  e.policy->add_check(rmp);
  REQUIRE(e.second->map(Gpa(0x6000), Pfn(0x300), PageSize::k4K, kPermsRW).ok());
  struct Fixer final : ExitHandler {
    RefuseFrames* rmp = nullptr;
    unsigned exits = 0;
    ExitAction handle_exit(unsigned, const VmExit& x) override {
      ++exits;
      if (x.rmp) rmp->no_write = Pfn(0);  // the host made the page the guest's (RMPUPDATE)
      ExitAction a;
      a.kind = ExitAction::kRetry;
      return a;
    }
  } fixer;
  fixer.rmp = &rmp;
  FunctionalCpuParams p;
  p.who = kGuest;
  FunctionalCpu cpu(p, e.mem, *e.stage2, fixer);
  cpu.set_guest_access_policy(&*e.policy);
  REQUIRE(cpu.execute(GuestOp::store(Gpa(0x6000), 8, 9)));
  CHECK(fixer.exits == 1);
  CHECK(e.mem.meta(Pfn(0x300)).label == kGuest);
  CHECK(e.mem.meta(Pfn(0x300)).key_id == kPrivateKey);
}

TEST_CASE("vm exit: each architecture's encoding of a fault") {
  VmExit x;
  x.gpa = Gpa(0x1000);
  x.write = true;
  x.present = true;
  x.leaf_perms = kPermsR;
  CHECK(npf_error_code(x) == (npf::kPresent | npf::kWrite | npf::kGuestFinal));
  CHECK(ept_exit_qualification(x) == (ept_qual::kWrite | ept_qual::kReadable));
  // Arm: data abort from a lower EL, IL, WnR, permission fault at level 3 (4 KiB).
  CHECK(esr_el2(x) == ((uint64_t{0x24} << 26) | (uint64_t{1} << 25) | (1u << 6) | 0x0f));
  VmExit nf;
  nf.level = 1;  // stopped at the 2 MiB level: a translation fault at Arm level 2
  CHECK(esr_el2(nf) == ((uint64_t{0x24} << 26) | (uint64_t{1} << 25) | 0x06));
  CHECK(ept_exit_qualification(nf) == ept_qual::kRead);
  nf.size_mismatch = true;
  nf.vmpl = true;
  CHECK(npf_error_code(nf) == (npf::kGuestFinal | npf::kSizeMismatch | npf::kVmpl));
  CHECK(name_of(ExitReason::kVirtualizationException) == "virtualization_exception");
  CHECK(name_of(ExitReason::kVmmCommunication) == "vmm_communication");
}
