// The TLM extension every memory transaction carries: who is accessing, under which key, and
// whether the initiator considers the access private. The memory target uses it for its inline
// checks and to label what is written (ARCHITECTURE.md principle 5), and reports back through it
// what the memory-integrity hardware signalled (tdx-snp.md A9, docs/memory-integrity.md).
#pragma once

#include <cstdint>
#include <tlm>

#include "hw/base/principal.h"
#include "hw/memory/access_check.h"
#include "hw/memory/phys_mem.h"

namespace cvmsim {

struct AccessExt : tlm::tlm_extension<AccessExt> {
  // ---- Request ----
  Principal who = kNobody;
  KeyId key = 0;
  InitiatorKind initiator = InitiatorKind::kCpu;
  bool private_access = false;
  // A MOVDIR64B-style direct store: a write whose address and length are multiples of 64 bytes,
  // replacing whole cache lines without reading them, so it clears their poison. The memory
  // refuses the flag on reads and on unaligned writes (TLM_COMMAND_ERROR_RESPONSE).
  bool full_line_write = false;

  // ---- Response (the memory target sets these; the initiator clears them before sending) ----
  // The read returned poison for at least one line (those bytes read as zeros). A CPU load that
  // consumes it raises a machine check (#MC) in its context; the response status stays OK.
  bool poisoned = false;
  // The access itself generated the poison (a private-key read with a TD-owner or MAC mismatch,
  // or a partial write under the partial-write erratum), as opposed to meeting stored poison.
  bool poison_generated = false;
  // Where in the transaction's data the first byte that read as poison is (if poisoned): an
  // offset, so that it means the same on either side of an address-translating interconnect.
  uint32_t poison_offset = 0;

  void clear_response() {
    poisoned = false;
    poison_generated = false;
    poison_offset = 0;
  }

  tlm::tlm_extension_base* clone() const override { return new AccessExt(*this); }
  void copy_from(const tlm::tlm_extension_base& other) override {
    *this = static_cast<const AccessExt&>(other);
  }
};

}  // namespace cvmsim
