// Principals: who holds data or performs an access. Frames carry the principal whose secret they
// hold (their "secret label"); accesses carry the principal performing them. Ids below
// kFirstVmPrincipal are fixed; each VM gets its own id from sim/platform.
#pragma once

#include <compare>
#include <cstdint>

namespace cvmsim {

struct Principal {
  uint32_t id = 0;
  constexpr auto operator<=>(const Principal&) const = default;
};

inline constexpr Principal kNobody{0};      // no secret: zeros or public data
inline constexpr Principal kHostKernel{1};  // the host kernel (direct map, page tables)
inline constexpr Principal kHostUser{2};    // host userspace (the VMM)
inline constexpr Principal kFirmware{3};    // TDX module / SNP firmware / pKVM hypervisor
inline constexpr Principal kDevice{4};      // a DMA-capable device
inline constexpr uint32_t kFirstVmPrincipal = 16;

constexpr Principal vm_principal(uint32_t vm_index) {
  return Principal{kFirstVmPrincipal + vm_index};
}
constexpr bool is_vm(Principal p) {
  return p.id >= kFirstVmPrincipal;
}

}  // namespace cvmsim
