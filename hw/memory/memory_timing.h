// What moving data costs once an access is translated. One formula for every path (b_transport
// through the memory module, or a DMI pointer held by an initiator), so both charge the same.
#pragma once

#include <cstdint>

#include "hw/base/cycles.h"

namespace cvmsim {

struct MemoryTiming {
  Cycles access{4};               // fixed part of every access
  uint64_t bytes_per_cycle = 32;  // bandwidth for the bytes beyond the first 64

  Cycles cost(uint64_t bytes) const {
    const uint64_t extra = bytes > 64 ? (bytes - 64 + bytes_per_cycle - 1) / bytes_per_cycle : 0;
    return access + Cycles(extra);
  }
};

}  // namespace cvmsim
