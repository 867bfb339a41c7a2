// Initiators and the platform's host check chain (hw/memory/initiator.h, access_check.h): an
// access a check refuses touches nothing (bytes, key, label) and reports the fault the check
// raised; a refusal anywhere in a multi-frame access refuses all of it; what the checks allow
// behaves as PhysMem's keyed (or plain) access; firmware with a chain of its own and CPUs without
// one are not subject to the host chain; the host-side users report refusals (a VMM memcpy gets
// EFAULT, a page-table write is recorded on the table).
#include <catch2/catch.hpp>

#include <optional>
#include <vector>

#include "../mmu/test_support.h"
#include "hw/memory/initiator.h"
#include "hw/mmu/stage2_table.h"
#include "models/host/host_mm.h"

using namespace cvmsim;

namespace {

const Principal kGuest = vm_principal(2);

// Refuses host writes to the frames in `guest_owned`, as SNP's RMP check refuses a host write to
// a page that is not hypervisor-owned: #PF with error-code bit 31 (tdx-snp.md B3). Reads pass
// (host reads are never RMP-checked).
class GuestOwned final : public HostAccessCheck {
 public:
  std::vector<Pfn> guest_owned;
  mutable std::vector<FrameAccess> seen;
  std::string_view name() const override { return "test_rmp"; }
  std::optional<AccessFault> check(const FrameAccess& a) const override {
    seen.push_back(a);
    if (!a.write) return std::nullopt;
    for (Pfn f : guest_owned)
      if (f == a.pfn()) {
        uint64_t code = pf_error::kPresent | pf_error::kWrite | pf_error::kRmp;
        if (a.by.kind == InitiatorKind::kHostUser) code |= pf_error::kUser;
        return AccessFault{AccessFault::Kind::kPageFault, code, a.hpa, name()};
      }
    return std::nullopt;
  }
};

struct Env {
  Env() : mem(test::kTestMemBytes, MemMode::kData) {
    mem.host_checks().add(rmp);
    std::vector<uint8_t> secret(kPageBytes, 0x5a);
    (void)mem.write_keyed(pfn_to_hpa(kPrivate), secret, KeyedAccess{3, kGuest, false});
    rmp.guest_owned.push_back(kPrivate);
  }
  std::vector<uint8_t> bytes(Hpa a, size_t n) {
    std::vector<uint8_t> b(n);
    mem.read(a, b);
    return b;
  }
  static constexpr Pfn kPrivate{0x300};
  PhysMem mem;
  GuestOwned rmp;
};

}  // namespace

TEST_CASE("initiator: a write the host chain refuses changes nothing and reports the #PF") {
  Env e;
  const Hpa a = pfn_to_hpa(Env::kPrivate) + 0x40;
  const auto before = e.bytes(pfn_to_hpa(Env::kPrivate), kPageBytes);
  Initiator host = Initiator::host_kernel(e.mem);
  CHECK(host.checked());
  std::vector<uint8_t> junk(16, 0xee);
  SECTION("keyed write") {
    const AccessResult r = host.write(a, junk);
    REQUIRE_FALSE(r.ok());
    CHECK(r.fault->kind == AccessFault::Kind::kPageFault);
    CHECK(r.fault->error_code == (pf_error::kPresent | pf_error::kWrite | pf_error::kRmp));
    CHECK(r.fault->hpa == a);
    CHECK(r.fault->check == "test_rmp");
  }
  SECTION("plain write, fill and page-table entry") {
    CHECK_FALSE(host.write_plain(a, junk).ok());
    CHECK_FALSE(host.fill_plain(a, 64, 0).ok());
    CHECK_FALSE(host.write_u64(a, ~uint64_t{0}).ok());
    CHECK_FALSE(host.fill(pfn_to_hpa(Env::kPrivate), kPageBytes, 0,
                          WriteOptions{}.labelled(kNobody).whole_lines())
                    .ok());
  }
  SECTION("VMM userspace: the user bit too") {
    const AccessResult r = Initiator::host_user(e.mem).write(a, junk);
    REQUIRE_FALSE(r.ok());
    CHECK(r.fault->error_code ==
          (pf_error::kPresent | pf_error::kWrite | pf_error::kUser | pf_error::kRmp));
  }
  CHECK(e.bytes(pfn_to_hpa(Env::kPrivate), kPageBytes) == before);
  CHECK(e.mem.meta(Env::kPrivate).label == kGuest);
  CHECK(e.mem.meta(Env::kPrivate).key_id == 3);
}

TEST_CASE("initiator: a refusal in any frame of an access refuses all of it") {
  Env e;
  // 8 KiB from the frame before the guest's: the first frame is allowed, the second is not.
  const Hpa a = pfn_to_hpa(Env::kPrivate - 1) + 0x800;
  std::vector<uint8_t> junk(kPageBytes, 0xee);
  const AccessResult r = Initiator::host_kernel(e.mem).write(a, junk);
  REQUIRE_FALSE(r.ok());
  CHECK(r.fault->hpa == pfn_to_hpa(Env::kPrivate));  // the first refused byte
  CHECK(e.mem.is_zero(Env::kPrivate - 1));           // the allowed frame was not written either
  REQUIRE(e.rmp.seen.size() == 2);                   // checked frame by frame
  CHECK(e.rmp.seen[0].len == 0x800);
  CHECK(e.rmp.seen[1].len == 0x800);
}

TEST_CASE("initiator: allowed accesses are PhysMem's, under the initiator's identity") {
  Env e;
  Initiator host(e.mem, InitiatorId{kHostKernel, InitiatorKind::kHostile, 0});
  // A read passes (the check only refuses writes) and gets ciphertext of the key-3 data.
  std::vector<uint8_t> buf(8);
  const AccessResult r = host.read(pfn_to_hpa(Env::kPrivate), buf);
  REQUIRE(r.ok());
  CHECK(r.integrity.key_mismatch);
  CHECK(e.rmp.seen.back().by.kind == InitiatorKind::kHostile);
  CHECK_FALSE(e.rmp.seen.back().write);
  // A write elsewhere is keyed and labelled as PhysMem::write_keyed would.
  const Pfn other(0x310);
  std::vector<uint8_t> data(64, 0x11);
  REQUIRE(host.write(pfn_to_hpa(other), data).ok());
  CHECK(e.mem.meta(other).label == kHostKernel);
  REQUIRE(host.write(pfn_to_hpa(other), data, WriteOptions{}.under(9).labelled(kNobody)).ok());
  CHECK(e.mem.meta(other).key_id == 9);
  CHECK(e.mem.meta(other).label == kNobody);
  // Removing the check lets the write through.
  e.mem.host_checks().remove(e.rmp);
  CHECK_FALSE(Initiator::host_kernel(e.mem).checked());
  REQUIRE(Initiator::host_kernel(e.mem).write_u64(pfn_to_hpa(Env::kPrivate), 1).ok());
  CHECK(e.mem.read_u64(pfn_to_hpa(Env::kPrivate)) == 1);
}

TEST_CASE("initiator: firmware with its own chain and a CPU without one skip the host chain") {
  Env e;
  AccessCheckChain seam;  // the TDX module's own, empty
  Initiator fw(e.mem, InitiatorId{kFirmware, InitiatorKind::kFirmware, 0}, &seam);
  Initiator cpu(e.mem, InitiatorId{kGuest, InitiatorKind::kCpu, 3}, nullptr);
  CHECK_FALSE(fw.checked());
  CHECK_FALSE(cpu.checked());
  REQUIRE(fw.fill_plain(pfn_to_hpa(Env::kPrivate), 64, 0).ok());
  std::vector<uint8_t> data(8, 1);
  REQUIRE(cpu.write(pfn_to_hpa(Env::kPrivate), data).ok());
  CHECK(e.rmp.seen.empty());
  CHECK(e.mem.meta(Env::kPrivate).label == kGuest);
}

TEST_CASE("initiator: host-side users report what the chain refuses") {
  Env e;
  SECTION("the VMM's memcpy: EFAULT, the pages before the refused one written") {
    test::BumpAllocator frames(Pfn(0x2fe), Pfn(0x2ff));  // hands out 0x2fe, then nothing
    HostMm mm(e.mem, frames);
    auto va = mm.mmap_anon(kPageBytes);
    REQUIRE(va.ok());
    std::vector<uint8_t> data(8, 7);
    REQUIRE(mm.write(*va, data).ok());  // faults the page in
    e.rmp.guest_owned.push_back(Pfn(0x2fe));
    std::vector<uint8_t> other(8, 9);
    const Status st = mm.write(*va, other);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error() == Errno::kEFAULT);
    std::vector<uint8_t> back(8);
    REQUIRE(mm.read(*va, back).ok());  // reads pass
    CHECK(back == data);
  }
  SECTION("page-table writes: the table records the refusal") {
    test::BumpAllocator frames(test::kTableFramesBegin, test::kTableFramesEnd);
    auto t = Stage2Table::create(e.mem, frames, Stage2Format::kEpt4);
    REQUIRE(t.ok());
    CHECK_FALSE((*t)->host_fault());
    e.rmp.guest_owned.push_back((*t)->root());
    (void)(*t)->map(Gpa(0), Pfn(0x400), PageSize::k4K, kPermsRW);
    REQUIRE((*t)->host_fault());
    CHECK(hpa_to_pfn((*t)->host_fault()->hpa) == (*t)->root());
    CHECK((*t)->host_fault()->error_code ==
          (pf_error::kPresent | pf_error::kWrite | pf_error::kRmp));
    e.mem.host_checks().remove(e.rmp);  // so that the table can be torn down
  }
}
