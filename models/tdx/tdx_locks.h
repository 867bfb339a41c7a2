// The module's try-locks (tdx-snp.md A5; M src/common/helpers/tdx_locks.h). The module never
// waits for a lock: a failed attempt returns a BUSY-class status to the caller, which retries. A
// sharex lock is 16 bits: bit 0 "held exclusive", bits 15:1 the number of shared holders.
#pragma once

#include <cstdint>

namespace cvmsim::tdx {

enum class LockMode : uint8_t { kShared, kExclusive };

struct SharexLock {
  uint16_t raw = 0;

  bool exclusive() const { return raw & 1u; }
  uint16_t readers() const { return static_cast<uint16_t>(raw >> 1); }
  bool free() const { return raw == 0; }

  bool try_acquire(LockMode m) {
    if (m == LockMode::kShared) {
      if (exclusive() || readers() == 0x7FFF) return false;
      raw = static_cast<uint16_t>(raw + 2);
      return true;
    }
    if (raw != 0) return false;
    raw = 1;
    return true;
  }
  void release(LockMode m) {
    if (m == LockMode::kShared) {
      if (readers() > 0) raw = static_cast<uint16_t>(raw - 2);
    } else {
      raw = static_cast<uint16_t>(raw & ~1u);
    }
  }
};

}  // namespace cvmsim::tdx
