#include "hw/memory/memory_module.h"

#include <algorithm>
#include <cstring>

#include "hw/base/rng.h"

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
  mem_.set_dmi_listener([this](Hpa s, Hpa e) { socket->invalidate_direct_mem_ptr(s.value(), e.value()); });
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
  std::span<uint8_t> data(gp.get_data_ptr(), len);

  if (gp.is_write()) {
    ++stats_.writes;
    mem_.write(Hpa(addr), data);
    // Label and key every frame the write touched (a write may span two frames).
    for (uint64_t f = addr >> kPageShift; f <= (addr + len - 1) >> kPageShift; ++f) {
      mem_.set_key(Pfn(f), key);
      mem_.set_label(Pfn(f), who);
    }
  } else if (gp.is_read()) {
    ++stats_.reads;
    mem_.read(Hpa(addr), data);
    for (uint64_t f = addr >> kPageShift; f <= (addr + len - 1) >> kPageShift; ++f) {
      const FrameMeta& m = mem_.meta(Pfn(f));
      if (m.flags & kFramePoison) ++stats_.poisoned_reads;
      // Memory encrypted under one key and read under another yields ciphertext, not the
      // plaintext (MKTME/SME behaviour). Model it by scrambling the bytes of that frame.
      if ((m.flags & kFrameTouched) && m.key_id != key) {
        ++stats_.key_mismatch_reads;
        const uint64_t lo = std::max<uint64_t>(addr, f << kPageShift);
        const uint64_t hi = std::min<uint64_t>(addr + len, (f + 1) << kPageShift);
        for (uint64_t a = lo; a < hi; ++a)
          data[a - addr] ^= static_cast<uint8_t>(mix64(a ^ (uint64_t{m.key_id} << 48) ^ (uint64_t{key} << 32)) | 1);
      }
    }
  } else {
    gp.set_response_status(tlm::TLM_COMMAND_ERROR_RESPONSE);
    return;
  }
  delay += len <= kSmallAccessBytes ? small_delay_
                                    : sc_core::sc_time::from_value(clock_.to_ps(timing_.cost(len)));
  gp.set_dmi_allowed(mem_.mode() == MemMode::kData);
  gp.set_response_status(tlm::TLM_OK_RESPONSE);
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
  // could refuse or that a write would relabel.
  const bool stable = (m.flags & kFrameTouched) && m.label == ext->who && m.key_id == ext->key &&
                      !(m.flags & (kFramePoison | kFrameTdOwner | kFrameTable));
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
  v.counter("address_errors", stats_.address_errors, "transactions", "transactions outside physical memory");
  v.counter("key_mismatch_reads", stats_.key_mismatch_reads, "transactions", "reads under a key other than the one the data was written with (return ciphertext)");
  v.counter("poisoned_reads", stats_.poisoned_reads, "transactions", "reads that touched a poisoned frame");
  v.counter("dmi_denied", stats_.dmi_denied, "requests", "DMI requests refused because the frame's state was not stable for the requester");
  v.counter("debug_accesses", stats_.debug_accesses, "transactions", "transport_dbg accesses");
  mem_.describe_stats(v);
}

}  // namespace cvmsim
