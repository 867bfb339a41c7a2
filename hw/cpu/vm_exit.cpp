#include "hw/cpu/vm_exit.h"

namespace cvmsim {

uint64_t npf_error_code(const VmExit& e) {
  uint64_t c = npf::kGuestFinal;
  if (e.present) c |= npf::kPresent;
  if (e.write) c |= npf::kWrite;
  if (e.user) c |= npf::kUser;
  if (e.fetch) c |= npf::kFetch;
  if (e.rmp) c |= npf::kRmp;
  if (e.private_access) c |= npf::kEncrypted;
  if (e.size_mismatch) c |= npf::kSizeMismatch;
  if (e.vmpl) c |= npf::kVmpl;
  return c;
}

uint64_t ept_exit_qualification(const VmExit& e) {
  uint64_t q = e.fetch ? ept_qual::kFetch : e.write ? ept_qual::kWrite : ept_qual::kRead;
  if (e.present) {
    if (e.leaf_perms.read()) q |= ept_qual::kReadable;
    if (e.leaf_perms.write()) q |= ept_qual::kWritable;
    if (e.leaf_perms.exec()) q |= ept_qual::kExecutable;
  }
  return q;
}

uint64_t esr_el2(const VmExit& e) {
  constexpr uint64_t kEcDataAbortLower = 0x24, kEcInstrAbortLower = 0x20;
  constexpr uint64_t kIl = uint64_t{1} << 25, kWnR = uint64_t{1} << 6;
  constexpr uint64_t kTranslationFault = 0x04, kPermissionFault = 0x0c;
  // The model numbers levels from the 4 KiB one up; Arm from the root down, 3 being 4 KiB.
  const uint64_t arm_level = 3 - (e.level > 3 ? 3 : e.level);
  uint64_t esr = ((e.fetch ? kEcInstrAbortLower : kEcDataAbortLower) << 26) | kIl;
  esr |= (e.present ? kPermissionFault : kTranslationFault) | arm_level;
  if (e.write && !e.fetch) esr |= kWnR;
  return esr;
}

}  // namespace cvmsim
