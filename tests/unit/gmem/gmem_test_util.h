// Shared fixture for the guest_memfd tests: a few MiB of PhysMem, the host page allocator, and a
// fake VM that records every call guest_memfd makes into it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "hw/memory/phys_mem.h"
#include "models/host/page_allocator.h"
#include "models/kvm/guest_memfd.h"

namespace cvmsim::test {

using namespace cvmsim::kvm;

inline constexpr uint64_t kPage = 4096;

// Records calls in order (`log`) and in detail.
class FakeVm final : public GmemVm {
 public:
  struct Unmap {
    SlotId slot;
    GfnRange gfns;
    AttrFilter filter;
  };
  struct Prepare {
    Gfn gfn;
    Pfn pfn;
    int order;
  };

  int refs = 1;  // the VM's own reference (its fd)
  std::vector<std::string> log;
  int begins = 0, ends = 0, flushes = 0;
  std::vector<Unmap> unmaps;
  std::vector<SlotId> unbound;
  std::vector<Prepare> prepares;
  std::vector<std::pair<Pfn, Pfn>> invalidated;
  bool unmap_wants_flush = true;
  std::optional<Error> prepare_error;

  void kvm_get() override {
    ++refs;
    log.push_back("get");
  }
  void kvm_put() override {
    --refs;
    log.push_back("put");
  }
  void mmu_invalidate_begin() override {
    ++begins;
    log.push_back("begin");
  }
  bool mmu_unmap_gfn_range(SlotId slot, GfnRange gfns, AttrFilter filter) override {
    unmaps.push_back({slot, gfns, filter});
    log.push_back("unmap");
    return unmap_wants_flush;
  }
  void flush_remote_tlbs() override {
    ++flushes;
    log.push_back("flush");
  }
  void mmu_invalidate_end() override {
    ++ends;
    log.push_back("end");
  }
  void gmem_slot_unbound(SlotId slot) override {
    unbound.push_back(slot);
    log.push_back("unbound");
  }
  Status arch_gmem_prepare(Gfn gfn, Pfn pfn, int order) override {
    prepares.push_back({gfn, pfn, order});
    log.push_back("prepare");
    if (prepare_error) return *prepare_error;
    return {};
  }
  void arch_gmem_invalidate(Pfn start, Pfn end) override {
    invalidated.emplace_back(start, end);
    log.push_back("invalidate");
  }
  void clear() {
    log.clear();
    unmaps.clear();
    prepares.clear();
    invalidated.clear();
    unbound.clear();
    begins = ends = flushes = 0;
  }
};

// Records every statistic a component names.
class RecordingStats final : public StatVisitor {
 public:
  struct Entry {
    uint64_t value;
    std::string unit, description;
  };
  std::map<std::string, Entry> counters;
  void counter(std::string_view n, const uint64_t& v, std::string_view u,
               std::string_view d) override {
    counters[std::string(n)] = {v, std::string(u), std::string(d)};
  }
  void value(std::string_view, const double&, std::string_view, std::string_view) override {}
  uint64_t at(const std::string& n) const { return counters.at(n).value; }
};

struct GmemFixture {
  static constexpr uint64_t kFrames = 1024;  // 4 MiB
  PhysMem mem{kFrames * kPage, MemMode::kData};
  PageAllocator frames{Pfn(0), kFrames};
  GmemInodeNumbers inos;
  GmemStats totals;
  FakeVm vm;
  static constexpr uint64_t kAllFlags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

  GmemEnv env() { return GmemEnv{mem, frames, inos, &totals}; }

  Result<std::shared_ptr<GmemFile>> create(uint64_t size, uint64_t flags = 0,
                                           uint64_t supported = kAllFlags) {
    kvm_create_guest_memfd args;
    args.size = size;
    args.flags = flags;
    return GmemFile::create(vm, args, supported, env());
  }
  std::shared_ptr<GmemFile> make(uint64_t pages, uint64_t flags = 0) {
    auto f = create(pages * kPage, flags);
    REQUIRE(f.ok());
    return *f;
  }
  // Writes `byte` over the whole frame, labelled as `who`'s data.
  void scribble(Pfn pfn, uint8_t byte, Principal who = vm_principal(0)) {
    mem.fill(pfn_to_hpa(pfn), kPage, byte);
    mem.set_label(pfn, who);
  }
  uint8_t byte_at(Pfn pfn, uint64_t off = 0) {
    uint8_t b = 0xee;
    mem.read(pfn_to_hpa(pfn) + off, std::span<uint8_t>(&b, 1));
    return b;
  }
};

inline SlotId slot(uint16_t id, uint16_t as_id = 0) {
  return SlotId{as_id, id};
}

inline Errno err(const Status& s) {
  REQUIRE_FALSE(s.ok());
  return s.error().errno_value();
}
template <class T>
Errno err(const Result<T>& r) {
  REQUIRE_FALSE(r.ok());
  return r.error().errno_value();
}

}  // namespace cvmsim::test
