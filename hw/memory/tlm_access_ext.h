// The TLM extension every memory transaction carries: who is accessing, under which key, and
// whether the initiator considers the access private. The memory target uses it for its inline
// checks and to label what is written (ARCHITECTURE.md principle 5).
#pragma once

#include <tlm>

#include "hw/base/principal.h"
#include "hw/memory/phys_mem.h"

namespace cvmsim {

enum class Initiator : uint8_t { kCpu, kDevice, kHost };

struct AccessExt : tlm::tlm_extension<AccessExt> {
  Principal who = kNobody;
  KeyId key = 0;
  Initiator initiator = Initiator::kCpu;
  bool private_access = false;

  tlm::tlm_extension_base* clone() const override { return new AccessExt(*this); }
  void copy_from(const tlm::tlm_extension_base& other) override {
    *this = static_cast<const AccessExt&>(other);
  }
};

}  // namespace cvmsim
