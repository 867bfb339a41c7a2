// An initiator: the one way frame data is read or written outside hw/memory (ARCHITECTURE.md
// "Every access has an initiator and passes the same checks"). It has an identity (InitiatorId:
// principal, kind, key) and a check chain; every access first runs the chain on each 4 KiB piece
// and, only if no check refuses, reaches PhysMem. A refused access touches nothing and reports
// the fault (AccessResult::fault).
//
// Host-side initiators (host kernel, VMM, hostile actors, devices) use the platform's chain,
// PhysMem::host_checks(), which backends extend. Firmware (the TDX module) runs in its own mode
// and has a chain of its own; a vCPU's accesses were checked at translation (its backend's
// GuestAccessPolicy), so its initiator has none (nullptr).
//
// Two kinds of access:
//   read / write / fill      keyed: PhysMem's hardware semantics (read_keyed, write_keyed,
//                            fill_keyed) under the initiator's key, labelling what is written
//                            with its principal (or WriteOptions::label: kNobody for public
//                            data such as zeros).
//   *_plain, *_u64           the bytes only: the frame's key, label and cache-line integrity
//                            state are left as they are. For agents whose model sets those
//                            itself: the TDX module (the key, TD-owner bits and label of a page
//                            it writes with MOVDIR64B under a TD's HKID, tdx-snp.md A9), KVM's
//                            and the host's page tables and page clearing, the VMM's memcpy and
//                            guest_memfd's file accesses, which label the frame afterwards.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "hw/base/addr.h"
#include "hw/base/principal.h"
#include "hw/memory/access_check.h"
#include "hw/memory/phys_mem.h"

namespace cvmsim {

// What an access did. With `fault` set the chain refused it and nothing was accessed (a read's
// buffer is left as it was).
struct AccessResult {
  std::optional<AccessFault> fault;
  IntegrityResult integrity;  // keyed accesses: what the memory-integrity hardware signalled
  bool ok() const { return !fault; }
};

struct WriteOptions {
  std::optional<KeyId> key;        // default: the initiator's
  std::optional<Principal> label;  // whose data the bytes are; default: the initiator's principal
  bool full_line = false;          // a MOVDIR64B-style store (PhysMem KeyedAccess::full_line)

  WriteOptions& under(KeyId k) {
    key = k;
    return *this;
  }
  WriteOptions& labelled(Principal p) {
    label = p;
    return *this;
  }
  WriteOptions& whole_lines() {
    full_line = true;
    return *this;
  }
};

class Initiator {
 public:
  // A host-side initiator: the platform's chain.
  Initiator(PhysMem& mem, const InitiatorId& id) : Initiator(mem, id, &mem.host_checks()) {}
  // With a chain of its own; nullptr: none.
  Initiator(PhysMem& mem, const InitiatorId& id, const AccessCheckChain* chain)
      : mem_(&mem), id_(id), chain_(chain ? chain : &AccessCheckChain::none()) {}

  static Initiator host_kernel(PhysMem& mem) {
    return Initiator(mem, InitiatorId{kHostKernel, InitiatorKind::kHostKernel, 0});
  }
  static Initiator host_user(PhysMem& mem, Principal who = kHostUser) {
    return Initiator(mem, InitiatorId{who, InitiatorKind::kHostUser, 0});
  }

  const InitiatorId& id() const { return id_; }
  PhysMem& mem() const { return *mem_; }
  // Whether accesses run any check (a chain with at least one).
  bool checked() const { return !chain_->empty(); }

  // ---- Keyed (hardware semantics) ----
  AccessResult read(Hpa a, std::span<uint8_t> out) { return read(a, out, id_.key); }
  AccessResult read(Hpa a, std::span<uint8_t> out, KeyId key);
  AccessResult write(Hpa a, std::span<const uint8_t> in, const WriteOptions& o = {});
  AccessResult fill(Hpa a, uint64_t len, uint8_t byte, const WriteOptions& o = {});

  // ---- Bytes only ----
  AccessResult read_plain(Hpa a, std::span<uint8_t> out) const;
  AccessResult write_plain(Hpa a, std::span<const uint8_t> in);
  AccessResult fill_plain(Hpa a, uint64_t len, uint8_t byte) {
    if (checked()) [[unlikely]]
      if (auto f = refused(a, len, true, id_.key)) return AccessResult{f, {}};
    mem_->fill(a, len, byte);
    return {};
  }
  // Aligned 8-byte entries of page tables. A refused read returns 0 and, if asked, the fault.
  uint64_t read_u64(Hpa a, std::optional<AccessFault>* fault = nullptr) const {
    if (checked()) [[unlikely]]
      if (auto f = refused(a, 8, false, id_.key)) {
        if (fault) *fault = f;
        return 0;
      }
    return mem_->read_u64(a);
  }
  AccessResult write_u64(Hpa a, uint64_t v) {
    if (checked()) [[unlikely]]
      if (auto f = refused(a, 8, true, id_.key)) return AccessResult{f, {}};
    mem_->write_u64(a, v);
    return {};
  }

 private:
  std::optional<AccessFault> refused(Hpa a, uint64_t len, bool write, KeyId key) const {
    return chain_->run(id_, a, len, write, key);
  }
  KeyedAccess keyed(const WriteOptions& o) const {
    return KeyedAccess{o.key.value_or(id_.key), o.label.value_or(id_.who), o.full_line};
  }

  PhysMem* mem_;
  InitiatorId id_;
  const AccessCheckChain* chain_;  // never null
};

}  // namespace cvmsim
