// TD build (tdx-snp.md A10.1), op-state gating (A2.3), the PAMT one-owner rule (A7).
#include <cstring>

#include "models/tdx/sha384.h"
#include "tdx_test_util.h"

using namespace cvmsim;
using namespace cvmsim::tdx;
using namespace cvmsim::tdx::test;

namespace {

constexpr Gpa kGpa{0x100000};

}  // namespace

TEST_CASE(
    "tdx build: CREATE, KEY.CONFIG, ADDCX, INIT, VP.*, SEPT.ADD, PAGE.ADD, MR.EXTEND, FINALIZE") {
  Env e;
  const Hpa tdr = e.page();
  REQUIRE_OK(e.m.mng_create(tdr, 20, kTdOwner));
  CHECK(e.m.kot(20).state == HkidState::kAssigned);
  CHECK(e.m.kot(20).tdr == tdr);
  CHECK(e.m.td_info(tdr)->lifecycle == TdLifecycle::kHkidAssigned);
  CHECK(e.m.pamt_leaf(tdr).entry.type() == PageType::kTdr);
  // The TDR is written with the global KeyID and holds module data (A1).
  CHECK(e.mem.meta(hpa_to_pfn(tdr)).key_id == e.m.config().global_hkid);
  CHECK(e.mem.meta(hpa_to_pfn(tdr)).label == kFirmware);

  // ADDCX before the key is configured fails (A9: KEYS_CONFIGURED needed).
  CHECK_STATUS(e.m.mng_addcx(tdr, e.page()), status::kTdKeysNotConfigured);
  REQUIRE_OK(e.m.mng_key_config(tdr, 0));
  CHECK(e.m.td_info(tdr)->lifecycle == TdLifecycle::kKeysConfigured);
  CHECK_STATUS(e.m.mng_key_config(tdr, 0), status::kLifecycleStateIncorrect);

  // MNG.INIT needs every TDCS page (check_td_in_correct_build_state).
  std::vector<Hpa> tdcx;
  for (unsigned i = 0; i + 1 < e.m.config().num_tdcs_pages; ++i) {
    tdcx.push_back(e.page());
    REQUIRE_OK(e.m.mng_addcx(tdr, tdcx.back()));
  }
  CHECK_STATUS(e.m.mng_init(tdr, TdParams{}), status::kTdcsNotAllocated);
  tdcx.push_back(e.page());
  REQUIRE_OK(e.m.mng_addcx(tdr, tdcx.back()));
  CHECK_STATUS(e.m.mng_addcx(tdr, e.page()), status::kTdcxNumIncorrect);
  // The S-EPT root is TDCS page 3, initialised to FREE|SVE and typed PT_TDCX.
  const Hpa root = tdcx[e.m.config().sept_root_tdcs_index];
  CHECK(e.mem.read_u64(root + 8 * 17) == kSepteInitValue);
  CHECK(e.m.pamt_leaf(root).entry.type() == PageType::kTdcx);
  CHECK(e.m.pamt_leaf(root).entry.owner() == hpa_to_pfn(tdr));

  REQUIRE_OK(e.m.mng_init(tdr, TdParams{}));
  CHECK(e.m.td_info(tdr)->op_state == OpState::kInitialized);
  CHECK(e.m.td_info(tdr)->td_epoch == 1);
  CHECK(e.m.td_info(tdr)->sept_root == root);
  CHECK_STATUS(e.m.mng_init(tdr, TdParams{}), status::kOpStateIncorrect);

  // vCPU: VP.INIT needs all TDVPS pages.
  const Hpa tdvpr = e.page();
  REQUIRE_OK(e.m.vp_create(tdr, tdvpr));
  CHECK(e.m.pamt_leaf(tdvpr).entry.type() == PageType::kTdvpr);
  const TdxResult early = e.m.vp_init(tdvpr);
  CHECK(early.code() == status::kTdcxNumIncorrect);
  for (unsigned i = 1; i < e.m.config().num_tdvps_pages; ++i)
    REQUIRE_OK(e.m.vp_addcx(tdvpr, e.page()));
  REQUIRE_OK(e.m.vp_init(tdvpr));
  CHECK(e.m.td_info(tdr)->num_vcpus == 1);
  CHECK_STATUS(e.m.vp_init(tdvpr), status::kVcpuStateIncorrect);

  // SEPT.ADD down to the 4 KiB table, then PAGE.ADD with a measured source page.
  const Hpa source = e.page();
  std::vector<uint8_t> img(kPageBytes);
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i * 7 + 1);
  e.mem.write(source, img);
  // PAGE.ADD before the S-EPT levels exist: EPT_WALK_FAILED, RDX holds level/state of the stop.
  const TdxResult walk_fail = e.m.mem_page_add(tdr, kGpa, e.page(), source);
  CHECK_STATUS(walk_fail, with_operand(status::kEptWalkFailed, operand::kRcx));
  CHECK((walk_fail.rdx & 7) == 3);            // stopped at the root's FREE entry
  CHECK(((walk_fail.rdx >> 8) & 0xFF) == 0);  // pub state FREE
  Td td{tdr, 20, tdcx, {tdvpr}};
  e.ensure_sept(td, kGpa);
  const uint64_t chld_before = e.m.td_info(tdr)->chldcnt;
  const Hpa page = e.page();
  REQUIRE_OK(e.m.mem_page_add(tdr, kGpa, page, source));
  CHECK(e.m.td_info(tdr)->chldcnt == chld_before + 1);
  CHECK(e.state(td, kGpa) == SeptState::kMapped);
  CHECK(e.m.sept_lookup(tdr, kGpa).entry.pfn == hpa_to_pfn(page));
  const PamtLeaf pl = e.m.pamt_leaf(page);
  CHECK(pl.entry.type() == PageType::kReg);
  CHECK(pl.entry.owner() == hpa_to_pfn(tdr));
  // Copied with MOVDIR64B under the TD key, owner bit set, labelled with the TD principal.
  std::vector<uint8_t> got(kPageBytes);
  e.mem.read(page, got);
  CHECK(got == img);
  const FrameMeta& fm = e.mem.meta(hpa_to_pfn(page));
  CHECK(fm.key_id == 20);
  CHECK((fm.flags & kFrameTdOwner) != 0);
  CHECK(fm.label == kTdOwner);

  // MR.EXTEND 16 x 256 B, then FINALIZE; MRTD is SHA-384 over the 128 B blocks (A2.3).
  for (unsigned off = 0; off < kPageBytes; off += 256) REQUIRE_OK(e.m.mr_extend(tdr, kGpa + off));
  CHECK_STATUS(e.m.mr_extend(tdr, kGpa + 8), with_operand(status::kOperandInvalid, operand::kRcx));
  REQUIRE_OK(e.m.mr_finalize(tdr));
  const TdInfo ti = *e.m.td_info(tdr);
  CHECK(ti.op_state == OpState::kRunnable);
  CHECK(ti.finalized);
  Sha384 ref;
  auto block = [](const char* name, uint64_t gpa) {
    std::array<uint8_t, 128> b{};
    std::memcpy(b.data(), name, std::strlen(name));
    for (int i = 0; i < 8; ++i) b[16 + i] = static_cast<uint8_t>(gpa >> (8 * i));
    return b;
  };
  ref.update(block("MEM.PAGE.ADD", kGpa.value()));
  for (unsigned off = 0; off < kPageBytes; off += 256) {
    ref.update(block("MR.EXTEND", kGpa.value() + off));
    ref.update(std::span<const uint8_t>(img.data() + off, 256));
  }
  CHECK(ti.mrtd == ref.finalize());
  CHECK(e.m.stats().sha384_blocks == 1 + 16 * 3 + 1);
}

TEST_CASE("tdx build: op-state gating, PAGE.ADD MR.EXTEND after FINALIZE and VP.ENTER before it") {
  Env e;
  Td td = e.build_td(20, 1, /*finalize=*/false);
  // VP.ENTER only in RUNNABLE (A2.3 op_state_lookup[0]).
  CHECK_STATUS(e.m.vp_enter(td.vcpus[0]), status::kOpStateIncorrect);
  e.ensure_sept(td, kGpa);
  REQUIRE_OK(e.m.mem_page_add(td.tdr, kGpa, e.page(), e.page()));
  REQUIRE_OK(e.m.mr_finalize(td.tdr));
  // PAGE.ADD, MR.EXTEND, FINALIZE: OP_STATE_INITIALIZED only.
  CHECK_STATUS(e.m.mem_page_add(td.tdr, kGpa + kPageBytes, e.page(), e.page()),
               status::kOpStateIncorrect);
  CHECK_STATUS(e.m.mr_extend(td.tdr, kGpa), status::kOpStateIncorrect);
  CHECK_STATUS(e.m.mr_finalize(td.tdr), status::kOpStateIncorrect);
  CHECK_STATUS(e.m.vp_create(td.tdr, e.page()), status::kOpStateIncorrect);
  // AUG is allowed in RUNNABLE, VP.ENTER now too.
  REQUIRE_OK(e.m.mem_page_aug(td.tdr, kGpa + kPageBytes, PageSize::k4K, e.page()));
  REQUIRE_OK(e.m.vp_enter(td.vcpus[0]));
}

TEST_CASE("tdx build: MNG.CREATE checks the HKID, the TDR page and the KOT in that order") {
  Env e;
  // Not a private HKID: OPERAND_INVALID on RDX, before the TDR is looked at.
  CHECK_STATUS(e.m.mng_create(Hpa(0x1234), 3, kTdOwner),
               with_operand(status::kOperandInvalid, operand::kRdx));
  // Misaligned TDR: RCX.
  CHECK_STATUS(e.m.mng_create(Hpa(0x1234), 20, kTdOwner),
               with_operand(status::kOperandInvalid, operand::kRcx));
  // KeyID bits in the HPA (A1).
  CHECK_STATUS(e.m.mng_create(e.m.with_hkid(e.page(), 5), 20, kTdOwner),
               with_operand(status::kOperandInvalid, operand::kRcx));
  // Outside every TDMR (A7).
  CHECK_STATUS(e.m.mng_create(Hpa(kMemBytes + 0x1000), 20, kTdOwner),
               with_operand(status::kOperandAddrRangeError, operand::kRcx));
  // The global KeyID is HKID_RESERVED (A1).
  CHECK(e.m.kot(e.m.config().global_hkid).state == HkidState::kReserved);
  CHECK_STATUS(e.m.mng_create(e.page(), e.m.config().global_hkid, kTdOwner), status::kHkidNotFree);
  const Hpa tdr = e.page();
  REQUIRE_OK(e.m.mng_create(tdr, 21, kTdOwner));
  // Same HKID again: HKID_NOT_FREE; same TDR page again: PAGE_METADATA_INCORRECT.
  CHECK_STATUS(e.m.mng_create(e.page(), 21, kTdOwner), status::kHkidNotFree);
  CHECK_STATUS(e.m.mng_create(tdr, 22, kTdOwner),
               with_operand(status::kPageMetadataIncorrect, operand::kRcx));
}

TEST_CASE("tdx build: KEY.CONFIG once per package, KEYS_CONFIGURED after the last") {
  TdxConfig cfg = default_config();
  cfg.num_packages = 2;
  Env e(cfg);
  const Hpa tdr = e.page();
  REQUIRE_OK(e.m.mng_create(tdr, 20, kTdOwner));
  REQUIRE_OK(e.m.mng_key_config(tdr, 1));
  CHECK(e.m.td_info(tdr)->lifecycle == TdLifecycle::kHkidAssigned);
  const TdxResult again = e.m.mng_key_config(tdr, 1);
  CHECK_STATUS(again, status::kKeyConfigured);
  CHECK_FALSE(again.is_error());  // a warning
  REQUIRE_OK(e.m.mng_key_config(tdr, 0));
  CHECK(e.m.td_info(tdr)->lifecycle == TdLifecycle::kKeysConfigured);
  CHECK(e.m.td_info(tdr)->pkg_config_bitmap == 3);
}

TEST_CASE("tdx build: MNG.INIT parameters, GPAW 52 needs 5-level S-EPT") {
  Env e;
  const Hpa tdr = e.page();
  REQUIRE_OK(e.m.mng_create(tdr, 20, kTdOwner));
  REQUIRE_OK(e.m.mng_key_config(tdr, 0));
  for (unsigned i = 0; i < e.m.config().num_tdcs_pages; ++i)
    REQUIRE_OK(e.m.mng_addcx(tdr, e.page()));
  TdParams p;
  p.sept_levels = 4;
  p.gpaw52 = true;
  CHECK_STATUS(e.m.mng_init(tdr, p), with_operand(status::kOperandInvalid, operand::kEptpControls));
  p.gpaw52 = false;
  p.attributes = 1ull << 5;
  CHECK_STATUS(e.m.mng_init(tdr, p), with_operand(status::kOperandInvalid, operand::kAttributes));
  p.attributes = kTdAttrSeptVeDisable;
  p.max_vcpus = 0;
  CHECK_STATUS(e.m.mng_init(tdr, p), with_operand(status::kOperandInvalid, operand::kMaxVcpus));
  p.max_vcpus = 1;
  p.sept_levels = 5;
  p.gpaw52 = true;
  REQUIRE_OK(e.m.mng_init(tdr, p));
  CHECK(e.m.td_info(tdr)->shared_bit == Gpa(1ull << 51));
  CHECK(e.m.sept_walk_root(tdr)->format == Stage2Format::kEpt5);
  // MAX_VCPUS enforced at VP.CREATE.
  REQUIRE_OK(e.m.vp_create(tdr, e.page()));
  CHECK_STATUS(e.m.vp_create(tdr, e.page()), status::kMaxVcpusExceeded);
}

TEST_CASE("tdx pamt: a page another TD owns cannot be added, PAGE_METADATA_INCORRECT") {
  Env e;
  Td a = e.build_td(20, 1, false);
  Td b = e.build_td(21, 1, false, TdParams{}, kTdOwner2);
  e.ensure_sept(a, kGpa);
  e.ensure_sept(b, kGpa);
  const Hpa page = e.page();
  REQUIRE_OK(e.m.mem_page_add(a.tdr, kGpa, page, e.page()));
  // T1/A7: owner is one TDR; adding requires PT_NDA.
  CHECK_STATUS(e.m.mem_page_add(b.tdr, kGpa, page, e.page()),
               with_operand(status::kPageMetadataIncorrect, operand::kR8));
  CHECK_STATUS(e.m.mem_page_aug(b.tdr, kGpa + kPageBytes, PageSize::k4K, page),
               with_operand(status::kPageMetadataIncorrect, operand::kR8));
  // Nor twice in the same TD.
  CHECK_STATUS(e.m.mem_page_add(a.tdr, kGpa + kPageBytes, page, e.page()),
               with_operand(status::kPageMetadataIncorrect, operand::kR8));
  // Nor as an S-EPT page, a TDCX or a TDR.
  CHECK_STATUS(e.m.mem_sept_add(b.tdr, Gpa(1ull << 30), 2, page),
               with_operand(status::kPageMetadataIncorrect, operand::kR8));
  CHECK_STATUS(e.m.mng_create(page, 30, kTdOwner2),
               with_operand(status::kPageMetadataIncorrect, operand::kRcx));
  // Another TD's TDR is not a TDR operand of this TD's... it is simply a different TD: using a
  // TD page as TDR is refused.
  CHECK_STATUS(e.m.mem_track(page), with_operand(status::kPageMetadataIncorrect, operand::kRcx));
  CHECK(e.m.pamt_leaf(page).entry.owner() == hpa_to_pfn(a.tdr));
  // Source pages must be shared: a private KeyID in the source HPA is refused (A1).
  CHECK_STATUS(e.m.mem_page_add(b.tdr, kGpa, e.page(), e.m.with_hkid(e.page(), 20)),
               with_operand(status::kOperandInvalid, operand::kR9));
}
