#include "hw/memory/memory_module.h"

#include <algorithm>
#include <cstring>

namespace cvmsim {

MemoryModule::MemoryModule(sc_core::sc_module_name name, PhysMem& mem, const Clock& clock,
                           MemoryTiming timing)
    : sc_module(name),
      socket("socket"),
      mem_(mem),
      clock_(clock),
      timing_(timing),
      small_delay_(sc_core::sc_time::from_value(clock_.to_ps(timing_.cost(kSmallAccessBytes)))) {
  socket.register_b_transport(this, &MemoryModule::b_transport);
  socket.register_transport_dbg(this, &MemoryModule::transport_dbg);
  socket.register_get_direct_mem_ptr(this, &MemoryModule::get_direct_mem_ptr);
  mem_.set_dmi_listener(
      [this](Hpa s, Hpa e) { socket->invalidate_direct_mem_ptr(s.value(), e.value()); });
}

void MemoryModule::b_transport(tlm::tlm_generic_payload& gp, sc_core::sc_time& delay) {
  const uint64_t addr = gp.get_address();
  const unsigned len = gp.get_data_length();
  if (gp.get_byte_enable_ptr() || gp.get_streaming_width() < len) {
    gp.set_response_status(tlm::TLM_BYTE_ENABLE_ERROR_RESPONSE);
    return;
  }
  if (!mem_.contains(Hpa(addr), len)) {
    ++stats_.address_errors;
    gp.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
    return;
  }
  AccessExt* ext = nullptr;
  gp.get_extension(ext);
  const Principal who = ext ? ext->who : kNobody;
  const KeyId key = ext ? ext->key : 0;
  if (!mem_.keys().valid_key(key)) [[unlikely]] {
    // The KeyID bits of the address would be reserved PA bits (tdx-snp.md A1).
    ++stats_.key_errors;
    gp.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
    return;
  }
  const bool full_line = ext && ext->full_line_write;
  std::span<uint8_t> data(gp.get_data_ptr(), len);

  // PhysMem's keyed accesses key and label what is written, keep the TD-owner and poison bits
  // per cache line, return zeros, ciphertext or poison (docs/memory-integrity.md).
  IntegrityResult r;
  if (gp.is_write()) {
    if (full_line) [[unlikely]] {
      // MOVDIR64B stores whole, aligned 64-byte lines.
      if (((addr | len) & (kLineBytes - 1)) != 0) {
        ++stats_.command_errors;
        gp.set_response_status(tlm::TLM_COMMAND_ERROR_RESPONSE);
        return;
      }
      ++stats_.full_line_writes;
    }
    ++stats_.writes;
    r = mem_.write_keyed(Hpa(addr), data, KeyedAccess{key, who, full_line});
    if (r.new_poison) [[unlikely]] {
      ++stats_.poisoning_writes;
      if (ext) ext->poison_generated = true;
    }
  } else if (gp.is_read() && !full_line) {
    ++stats_.reads;
    r = mem_.read_keyed(Hpa(addr), data, key);
    if (read_observer_ && !r.key_mismatch && !r.zeroed && !r.poisoned) [[unlikely]] {
      for (uint64_t f = addr >> kPageShift; f <= (addr + len - 1) >> kPageShift; ++f) {
        const Principal holder = mem_.meta(Pfn(f)).label;
        if (holder != who && holder != kNobody) read_observer_(Pfn(f), who, holder);
      }
    }
    if (r.key_mismatch) ++stats_.key_mismatch_reads;
    if (r.zeroed) [[unlikely]]
      ++stats_.zeroed_reads;
    if (r.poisoned) [[unlikely]] {
      ++stats_.poisoned_reads;
      if (r.new_poison) ++stats_.poisoning_reads;
      if (ext) {
        ext->poisoned = true;
        ext->poison_generated = r.new_poison;
        ext->poison_offset = static_cast<uint32_t>(r.poison_address.value() - addr);
      }
    }
  } else {
    ++stats_.command_errors;
    gp.set_response_status(tlm::TLM_COMMAND_ERROR_RESPONSE);
    return;
  }
  delay += len <= kSmallAccessBytes ? small_delay_
                                    : sc_core::sc_time::from_value(clock_.to_ps(timing_.cost(len)));
  // A hint only: get_direct_mem_ptr decides. Frames with integrity state this requester's
  // accesses must go on checking are not worth asking for.
  const Pfn first(addr >> kPageShift);
  gp.set_dmi_allowed(mem_.mode() == MemMode::kData &&
                     dmi_integrity_ok(first, mem_.meta(first), key));
  gp.set_response_status(tlm::TLM_OK_RESPONSE);
}

bool MemoryModule::dmi_integrity_ok(Pfn f, const FrameMeta& m, KeyId key) const {
  if (!mem_.keys().is_private(key)) return !(m.flags & (kFrameTdOwner | kFramePoison));
  if (!(m.flags & kFrameTdOwner) || (m.flags & kFramePoison)) return false;
  const LineState s = mem_.line_state(f);
  return s.td_owner == kAllLines && s.private_key == key;
}

unsigned MemoryModule::transport_dbg(tlm::tlm_generic_payload& gp) {
  // Debug access: no timing, no labelling, no checks beyond bounds (a debugger's view).
  const uint64_t addr = gp.get_address();
  unsigned len = gp.get_data_length();
  if (addr >= mem_.size_bytes()) return 0;
  len = static_cast<unsigned>(std::min<uint64_t>(len, mem_.size_bytes() - addr));
  std::span<uint8_t> data(gp.get_data_ptr(), len);
  if (gp.is_write())
    mem_.write(Hpa(addr), data);
  else
    mem_.read(Hpa(addr), data);
  ++stats_.debug_accesses;
  return len;
}

bool MemoryModule::get_direct_mem_ptr(tlm::tlm_generic_payload& gp, tlm::tlm_dmi& dmi) {
  const uint64_t addr = gp.get_address();
  const Pfn f(addr >> kPageShift);
  const uint64_t start = f.value() << kPageShift;
  dmi.set_start_address(start);
  dmi.set_end_address(start + kPageBytes - 1);
  AccessExt* ext = nullptr;
  gp.get_extension(ext);
  if (!mem_.contains(Hpa(addr), 1) || mem_.mode() != MemMode::kData || !ext) {
    ++stats_.dmi_denied;
    return false;
  }
  const FrameMeta& m = mem_.meta(f);
  // Stable for this requester: its own data under its own key, nothing that a later check
  // could refuse or that a write would relabel; for integrity, no line a check would poison,
  // zero or that a write would change (dmi_integrity_ok).
  const bool stable = (m.flags & kFrameTouched) && m.label == ext->who && m.key_id == ext->key &&
                      !(m.flags & kFrameTable) && mem_.keys().valid_key(ext->key) &&
                      dmi_integrity_ok(f, m, ext->key);
  if (!stable) {
    ++stats_.dmi_denied;
    return false;
  }
  uint8_t* p = mem_.grant_dmi(f);
  dmi.set_dmi_ptr(p);
  dmi.set_granted_access(tlm::tlm_dmi::DMI_ACCESS_READ_WRITE);
  const uint64_t ps = clock_.to_ps(timing_.access);
  dmi.set_read_latency(sc_core::sc_time::from_value(ps));
  dmi.set_write_latency(sc_core::sc_time::from_value(ps));
  return true;
}

void MemoryModule::describe_stats(StatVisitor& v) const {
  v.counter("reads", stats_.reads, "transactions", "read transactions served by b_transport");
  v.counter("writes", stats_.writes, "transactions", "write transactions served by b_transport");
  v.counter("address_errors", stats_.address_errors, "transactions",
            "transactions outside physical memory");
  v.counter("key_errors", stats_.key_errors, "transactions",
            "transactions under a key id outside the configured range (address error)");
  v.counter("command_errors", stats_.command_errors, "transactions",
            "transactions refused as commands: neither read nor write, or a misused full-line "
            "write flag");
  v.counter("key_mismatch_reads", stats_.key_mismatch_reads, "transactions",
            "reads under a key other than the one the data was written with (return ciphertext)");
  v.counter("poisoned_reads", stats_.poisoned_reads, "transactions",
            "reads that returned poison for at least one cache line");
  v.counter("poisoning_reads", stats_.poisoning_reads, "transactions",
            "private-key reads that generated poison (TD-owner or MAC mismatch)");
  v.counter("zeroed_reads", stats_.zeroed_reads, "transactions",
            "shared-key reads of TD-owned cache lines (returned zeros)");
  v.counter("full_line_writes", stats_.full_line_writes, "transactions",
            "MOVDIR64B-style full-line writes");
  v.counter("poisoning_writes", stats_.poisoning_writes, "transactions",
            "partial writes that poisoned a TD-owned line (partial-write erratum)");
  v.counter("dmi_denied", stats_.dmi_denied, "requests",
            "DMI requests refused because the frame's state was not stable for the requester");
  v.counter("debug_accesses", stats_.debug_accesses, "transactions", "transport_dbg accesses");
  mem_.describe_stats(v);
}

}  // namespace cvmsim
