#include "hw/memory/initiator.h"

#include <algorithm>

namespace cvmsim {

std::string_view name_of(InitiatorKind k) {
  switch (k) {
    case InitiatorKind::kCpu:
      return "cpu";
    case InitiatorKind::kHostKernel:
      return "host_kernel";
    case InitiatorKind::kHostUser:
      return "host_user";
    case InitiatorKind::kHostile:
      return "hostile";
    case InitiatorKind::kDevice:
      return "device";
    case InitiatorKind::kFirmware:
      return "firmware";
  }
  return "?";
}

std::optional<AccessFault> AccessCheckChain::run(const InitiatorId& by, Hpa a, uint64_t len,
                                                 bool write, KeyId key) const {
  uint64_t addr = a.value();
  const uint64_t end = addr + len;
  while (addr < end) {
    const uint64_t n = std::min<uint64_t>(end - addr, kPageBytes - (addr & (kPageBytes - 1)));
    const FrameAccess piece{by, Hpa(addr), static_cast<uint32_t>(n), write, key};
    for (const HostAccessCheck* c : checks_)
      if (auto f = c->check(piece)) return f;
    addr += n;
  }
  return std::nullopt;
}

AccessResult Initiator::read(Hpa a, std::span<uint8_t> out, KeyId key) {
  if (checked()) [[unlikely]]
    if (auto f = refused(a, out.size(), false, key)) return AccessResult{f, {}};
  return AccessResult{std::nullopt, mem_->read_keyed(a, out, key)};
}

AccessResult Initiator::write(Hpa a, std::span<const uint8_t> in, const WriteOptions& o) {
  const KeyedAccess acc = keyed(o);
  if (checked()) [[unlikely]]
    if (auto f = refused(a, in.size(), true, acc.key)) return AccessResult{f, {}};
  return AccessResult{std::nullopt, mem_->write_keyed(a, in, acc)};
}

AccessResult Initiator::fill(Hpa a, uint64_t len, uint8_t byte, const WriteOptions& o) {
  const KeyedAccess acc = keyed(o);
  if (checked()) [[unlikely]]
    if (auto f = refused(a, len, true, acc.key)) return AccessResult{f, {}};
  return AccessResult{std::nullopt, mem_->fill_keyed(a, len, byte, acc)};
}

AccessResult Initiator::read_plain(Hpa a, std::span<uint8_t> out) const {
  if (checked()) [[unlikely]]
    if (auto f = refused(a, out.size(), false, id_.key)) return AccessResult{f, {}};
  mem_->read(a, out);
  return {};
}

AccessResult Initiator::write_plain(Hpa a, std::span<const uint8_t> in) {
  if (checked()) [[unlikely]]
    if (auto f = refused(a, in.size(), true, id_.key)) return AccessResult{f, {}};
  mem_->write(a, in);
  return {};
}

}  // namespace cvmsim
