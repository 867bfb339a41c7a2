// Host physical memory: the functional core of hw/memory.
//
// Sparse 4 KiB frames, materialised on first touch. Every frame has 16 bytes of metadata
// (FrameMeta): the encryption key id it was last written under, integrity state (TD-owner bit,
// sticky poison), the secret label of the principal whose data it holds, and either a 64-bit
// content fingerprint or the address of the frame's byte block. Two modes:
//   kData          bytes are stored (a 4 KiB block per frame, allocated on the first non-zero
//                  write); reads of never-written bytes return zeros.
//   kMetadataOnly  no bytes are stored, only metadata, so that very large guests fit; reads
//                  return zeros and only the fingerprint tracks content. Page-table frames
//                  (mark_table) are always backed by bytes, since walks read them.
//
// This class performs no isolation checks: the SystemC memory module and the MMU check first
// and call in here. It does track which frames have a DMI pointer out, and calls the DMI
// listener to revoke it whenever a frame's key, owner, label or poison state changes
// (ARCHITECTURE.md principle 5).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/principal.h"
#include "hw/base/stat_visitor.h"
#include "hw/memory/frame_ptr_map.h"

namespace cvmsim {

using KeyId = uint16_t;  // MKTME/TDX KeyID (HKID) or SEV ASID-selected key; 0 = no/host key

enum FrameFlag : uint8_t {
  kFrameTouched = 1 << 0,     // materialised (written, or metadata set)
  kFrameTdOwner = 1 << 1,     // TDX TD-owner bit (tdx-snp.md A9)
  kFramePoison = 1 << 2,      // sticky integrity poison (tdx-snp.md A9)
  kFrameTable = 1 << 3,       // holds a page table: always byte-backed
  kFrameDmiGranted = 1 << 4,  // a DMI pointer to this frame is out
  kFrameData = 1 << 5,        // has a 4 KiB byte block; `content` is its address
};

struct FrameMeta {
  // Without a byte block: the content fingerprint, 0 meaning "known all zero". With one
  // (kFrameData): the block's address, as the fingerprint of stored bytes is computed from them
  // (PhysMem::fingerprint). Sharing the field keeps everything a frame needs in one 16-byte
  // slot: an access touches one cache line of metadata, and metadata-only mode costs 16 bytes
  // per frame. Use PhysMem::fingerprint() rather than reading this.
  uint64_t content = 0;
  Principal label = kNobody;  // whose secret the frame holds
  KeyId key_id = 0;
  uint8_t flags = 0;
  uint8_t reserved = 0;
};
static_assert(sizeof(FrameMeta) == 16);

enum class MemMode : uint8_t { kData, kMetadataOnly };

class PhysMem {
 public:
  struct Stats {
    uint64_t frames_touched = 0;   // frames materialised
    uint64_t data_pages = 0;       // 4 KiB byte blocks allocated
    uint64_t bytes_read = 0;
    uint64_t bytes_written = 0;
    uint64_t dmi_grants = 0;
    uint64_t dmi_revocations = 0;
  };
  using DmiListener = std::function<void(Hpa start, Hpa end_inclusive)>;

  PhysMem(uint64_t size_bytes, MemMode mode);
  ~PhysMem();
  PhysMem(const PhysMem&) = delete;
  PhysMem& operator=(const PhysMem&) = delete;

  uint64_t size_bytes() const { return size_; }
  uint64_t num_frames() const { return size_ >> kPageShift; }
  MemMode mode() const { return mode_; }
  bool contains(Hpa a, uint64_t len) const { return a.value() < size_ && len <= size_ - a.value(); }

  // ---- Bytes (no checks). Accesses may span frames; must be inside contains(). ----
  void read(Hpa a, std::span<uint8_t> out) const;
  void write(Hpa a, std::span<const uint8_t> in);
  void fill(Hpa a, uint64_t len, uint8_t byte);
  // Aligned 8-byte access for page-table entries.
  uint64_t read_u64(Hpa a) const;
  void write_u64(Hpa a, uint64_t v);

  // ---- Metadata ----
  // An untouched frame reads as a default FrameMeta.
  const FrameMeta& meta(Pfn f) const;
  // A host-side hint, with no effect on any state: starts loading f's metadata slot into the
  // host's cache. The walker issues it for the frame it has just translated to, so that the
  // miss overlaps the rest of the translation instead of stalling the access that follows.
  void prefetch(Pfn f) const {
    const uint64_t c = f.value() >> kChunkShift;
    if (c < chunks_.size()) {
      if (const Chunk* p = chunks_[c].get()) __builtin_prefetch(slot_address(p, f));
    }
  }
  void set_key(Pfn f, KeyId k);
  void set_label(Pfn f, Principal p);
  void set_td_owner(Pfn f, bool owner);
  void set_poison(Pfn f, bool poison);
  void mark_table(Pfn f, bool is_table);
  // Content fingerprint: 0 iff the frame is known to be all zero. In data mode it is a hash of
  // the frame's bytes (computed on demand); in metadata-only mode it is updated on each write.
  uint64_t fingerprint(Pfn f) const;
  bool is_zero(Pfn f) const { return fingerprint(f) == 0; }

  // ---- DMI ----
  // Returns the frame's bytes for direct access, or nullptr (metadata-only mode). Marks the
  // frame as granted, so that later key/owner/label/poison changes call the listener.
  uint8_t* grant_dmi(Pfn f);
  // Revokes any outstanding DMI pointer to f (e.g. on a stage-2 mapping change).
  void revoke_dmi(Pfn f);
  void set_dmi_listener(DmiListener l) { dmi_listener_ = std::move(l); }

  const Stats& stats() const { return stats_; }
  void describe_stats(StatVisitor& v) const;
  // Host memory this object holds (metadata, directories, data blocks), for benchmarks.
  uint64_t host_bytes() const;

 private:
  struct Chunk;  // 512 frames: metadata plus optional data blocks
  static constexpr unsigned kChunkShift = 9;
  static constexpr uint64_t kChunkFrames = uint64_t{1} << kChunkShift;

  Chunk* chunk_for(Pfn f) const;
  static const void* slot_address(const Chunk* c, Pfn f);
  Chunk& chunk_mut(Pfn f);
  FrameMeta& meta_mut(Pfn f);
  uint8_t* data_for_write(Pfn f);
  const uint8_t* data_for_read(Pfn f) const;
  void changed_isolation_state(Pfn f, FrameMeta& m);
  static void free_block(FrameMeta& m);  // drops the frame's byte block, if any

  uint64_t size_;
  MemMode mode_;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  // The byte blocks of page-table frames (kFrameTable), by frame number: read_u64 looks here
  // first, so that a walk does not touch the table frame's metadata slot (frame_ptr_map.h).
  FramePtrMap table_blocks_;
  mutable Stats stats_;  // reads count bytes too
  DmiListener dmi_listener_;
};

}  // namespace cvmsim
