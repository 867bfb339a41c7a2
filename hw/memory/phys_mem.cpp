#include "hw/memory/phys_mem.h"

#include "hw/base/rng.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <stdexcept>

namespace cvmsim {

// A chunk covers 512 frames (2 MiB) and is allocated on the first touch of any of them. Guest
// and table frames come from an allocator that hands out frames densely, so chunks fill up and
// the per-frame overhead stays at the 16 bytes of FrameMeta (which also holds the address of
// the frame's byte block, if it has one).
struct PhysMem::Chunk {
  std::array<FrameMeta, kChunkFrames> meta{};
  Chunk() = default;
  Chunk(const Chunk&) = delete;
  Chunk& operator=(const Chunk&) = delete;
  ~Chunk() {
    for (FrameMeta& m : meta) free_block(m);
  }
};

namespace {
const FrameMeta kUntouched{};

uint8_t* block_of(const FrameMeta& m) {
  return (m.flags & kFrameData) ? reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(m.content))
                                : nullptr;
}

// Small accesses (the common guest sizes) as single moves: a memset/memcpy of unknown length
// may become `rep stos`/`rep movs`, whose start-up cost dwarfs 8 bytes.
inline void copy_small(uint8_t* dst, const uint8_t* src, size_t n) {
  switch (n) {
    case 8:
      std::memcpy(dst, src, 8);
      return;
    case 4:
      std::memcpy(dst, src, 4);
      return;
    case 2:
      std::memcpy(dst, src, 2);
      return;
    case 1:
      *dst = *src;
      return;
    default:
      std::memcpy(dst, src, n);
      return;
  }
}
inline void zero_small(uint8_t* dst, size_t n) {
  static constexpr uint8_t kZeros[8] = {};
  if (n <= 8 && (n & (n - 1)) == 0)
    copy_small(dst, kZeros, n);
  else
    std::memset(dst, 0, n);
}

// FNV-1a/mix hash of a frame's bytes, never 0 unless all bytes are 0.
uint64_t hash_bytes(const uint8_t* p, size_t n) {
  uint64_t h = 0;
  bool any = false;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    any |= w != 0;
    h = mix64(h ^ w ^ (i << 48));
  }
  return any ? (h | 1) : 0;
}

bool all_zero(std::span<const uint8_t> s) {
  return std::all_of(s.begin(), s.end(), [](uint8_t b) { return b == 0; });
}
}  // namespace

PhysMem::PhysMem(uint64_t size_bytes, MemMode mode) : size_(size_bytes), mode_(mode) {
  if (size_bytes == 0 || size_bytes % (kPageBytes << kChunkShift) != 0)
    throw std::invalid_argument("PhysMem size must be a non-zero multiple of 2 MiB");
  chunks_.resize(num_frames() >> kChunkShift);
}

PhysMem::~PhysMem() = default;

PhysMem::Chunk* PhysMem::chunk_for(Pfn f) const {
  assert(f.value() < num_frames());
  return chunks_[f.value() >> kChunkShift].get();
}

const void* PhysMem::slot_address(const Chunk* c, Pfn f) {
  return &c->meta[f.value() & (kChunkFrames - 1)];
}

PhysMem::Chunk& PhysMem::chunk_mut(Pfn f) {
  assert(f.value() < num_frames());
  auto& c = chunks_[f.value() >> kChunkShift];
  if (!c) c = std::make_unique<Chunk>();
  return *c;
}

FrameMeta& PhysMem::meta_mut(Pfn f) {
  FrameMeta& m = chunk_mut(f).meta[f.value() & (kChunkFrames - 1)];
  if (!(m.flags & kFrameTouched)) {
    m.flags |= kFrameTouched;
    ++stats_.frames_touched;
  }
  return m;
}

const FrameMeta& PhysMem::meta(Pfn f) const {
  const Chunk* c = chunk_for(f);
  return c ? c->meta[f.value() & (kChunkFrames - 1)] : kUntouched;
}

const uint8_t* PhysMem::data_for_read(Pfn f) const {
  const Chunk* c = chunk_for(f);
  return c ? block_of(c->meta[f.value() & (kChunkFrames - 1)]) : nullptr;
}

// Returns the frame's byte block, allocating it (zeroed) if this mode stores bytes for it.
uint8_t* PhysMem::data_for_write(Pfn f) {
  FrameMeta& m = chunk_mut(f).meta[f.value() & (kChunkFrames - 1)];
  if (!(m.flags & kFrameData)) {
    if (mode_ == MemMode::kMetadataOnly && !(m.flags & kFrameTable)) return nullptr;
    // Stored bytes carry their own fingerprint, so the block address takes the field's place.
    m.content = reinterpret_cast<uintptr_t>(new uint8_t[kPageBytes]());  // zeros
    m.flags |= kFrameData;
    ++stats_.data_pages;
  }
  return block_of(m);
}

void PhysMem::free_block(FrameMeta& m) {
  if (!(m.flags & kFrameData)) return;
  delete[] block_of(m);
  m.flags &= static_cast<uint8_t>(~kFrameData);
  m.content = 0;
}

void PhysMem::read(Hpa a, std::span<uint8_t> out) const {
  assert(contains(a, out.size()));
  uint64_t addr = a.value();
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t off = addr & (kPageBytes - 1);
    const size_t n = std::min<uint64_t>(out.size() - done, kPageBytes - off);
    const uint8_t* d = data_for_read(Pfn(addr >> kPageShift));
    if (d)
      copy_small(out.data() + done, d + off, n);
    else
      zero_small(out.data() + done, n);
    done += n;
    addr += n;
  }
  stats_.bytes_read += out.size();
}

void PhysMem::write(Hpa a, std::span<const uint8_t> in) {
  assert(contains(a, in.size()));
  uint64_t addr = a.value();
  size_t done = 0;
  while (done < in.size()) {
    const uint64_t off = addr & (kPageBytes - 1);
    const size_t n = std::min<uint64_t>(in.size() - done, kPageBytes - off);
    const Pfn f(addr >> kPageShift);
    std::span<const uint8_t> piece = in.subspan(done, n);
    FrameMeta& m = meta_mut(f);
    if (uint8_t* d = data_for_write(f)) {
      copy_small(d + off, piece.data(), n);
    } else if (!(m.content == 0 && all_zero(piece))) {
      // Metadata-only: fold (offset, length, bytes) into the fingerprint; zeros written over a
      // zero frame keep it known-zero.
      uint64_t h = mix64(m.content ^ (off << 32) ^ n);
      for (size_t i = 0; i < n; i += 8) {
        uint64_t w = 0;
        std::memcpy(&w, piece.data() + i, std::min<size_t>(8, n - i));
        h = mix64(h ^ w);
      }
      m.content = h | 1;
    }
    done += n;
    addr += n;
  }
  stats_.bytes_written += in.size();
}

void PhysMem::fill(Hpa a, uint64_t len, uint8_t byte) {
  assert(contains(a, len));
  uint64_t addr = a.value();
  const uint64_t end = addr + len;
  while (addr < end) {
    const uint64_t off = addr & (kPageBytes - 1);
    const uint64_t n = std::min<uint64_t>(end - addr, kPageBytes - off);
    const Pfn f(addr >> kPageShift);
    if (byte == 0 && !chunk_for(f)) {  // zeroing an untouched frame is a no-op
      addr += n;
      continue;
    }
    FrameMeta& m = meta_mut(f);
    const bool whole = (n == kPageBytes);
    if (byte == 0 && whole && !(m.flags & kFrameTable)) {
      // Scrubbing a whole frame: drop its bytes; it reads as zeros again.
      if (m.flags & kFrameData) {
        free_block(m);
        --stats_.data_pages;
      }
      m.content = 0;
    } else if (uint8_t* d = data_for_write(f)) {
      std::memset(d + off, byte, n);
    } else if (!(byte == 0 && m.content == 0)) {
      m.content = mix64(m.content ^ (off << 32) ^ (n << 8) ^ byte) | 1;
    }
    addr += n;
  }
  stats_.bytes_written += len;
}

uint64_t PhysMem::read_u64(Hpa a) const {
  assert((a.value() & 7) == 0 && contains(a, 8));
  const Pfn f = hpa_to_pfn(a);
  const uint8_t* d = static_cast<const uint8_t*>(table_blocks_.find(f.value()));
  if (!d) d = data_for_read(f);
  if (!d) return 0;
  uint64_t v;
  std::memcpy(&v, d + a.page_offset(), 8);
  return v;
}

void PhysMem::write_u64(Hpa a, uint64_t v) {
  uint8_t b[8];
  std::memcpy(b, &v, 8);
  write(a, b);
}

void PhysMem::changed_isolation_state(Pfn f, FrameMeta& m) {
  if (m.flags & kFrameDmiGranted) revoke_dmi(f);
}

void PhysMem::set_key(Pfn f, KeyId k) {
  FrameMeta& m = meta_mut(f);
  if (m.key_id == k) return;
  m.key_id = k;
  changed_isolation_state(f, m);
}

void PhysMem::set_label(Pfn f, Principal p) {
  FrameMeta& m = meta_mut(f);
  if (m.label == p) return;
  m.label = p;
  changed_isolation_state(f, m);
}

void PhysMem::set_td_owner(Pfn f, bool owner) {
  FrameMeta& m = meta_mut(f);
  if (bool(m.flags & kFrameTdOwner) == owner) return;
  m.flags = owner ? (m.flags | kFrameTdOwner) : (m.flags & ~kFrameTdOwner);
  changed_isolation_state(f, m);
}

void PhysMem::set_poison(Pfn f, bool poison) {
  FrameMeta& m = meta_mut(f);
  if (bool(m.flags & kFramePoison) == poison) return;
  m.flags = poison ? (m.flags | kFramePoison) : (m.flags & ~kFramePoison);
  changed_isolation_state(f, m);
}

void PhysMem::mark_table(Pfn f, bool is_table) {
  FrameMeta& m = meta_mut(f);
  if (bool(m.flags & kFrameTable) == is_table) return;
  m.flags = is_table ? (m.flags | kFrameTable) : (m.flags & ~kFrameTable);
  changed_isolation_state(f, m);
  if (is_table)
    table_blocks_.insert(f.value(), data_for_write(f));  // tables are always byte-backed
  else
    table_blocks_.erase(f.value());
}

uint64_t PhysMem::fingerprint(Pfn f) const {
  const FrameMeta& m = meta(f);
  if (const uint8_t* d = block_of(m)) return hash_bytes(d, kPageBytes);
  return m.content;
}

uint8_t* PhysMem::grant_dmi(Pfn f) {
  if (mode_ == MemMode::kMetadataOnly) return nullptr;
  FrameMeta& m = meta_mut(f);
  uint8_t* d = data_for_write(f);
  if (!(m.flags & kFrameDmiGranted)) {
    m.flags |= kFrameDmiGranted;
    ++stats_.dmi_grants;
  }
  return d;
}

void PhysMem::revoke_dmi(Pfn f) {
  Chunk* c = chunk_for(f);
  if (!c) return;
  FrameMeta& m = c->meta[f.value() & (kChunkFrames - 1)];
  if (!(m.flags & kFrameDmiGranted)) return;
  m.flags &= ~kFrameDmiGranted;
  ++stats_.dmi_revocations;
  if (dmi_listener_) {
    const Hpa start = pfn_to_hpa(f);
    dmi_listener_(start, start + (kPageBytes - 1));
  }
}

void PhysMem::describe_stats(StatVisitor& v) const {
  v.counter("frames_touched", stats_.frames_touched, "frames", "frames materialised (written or given metadata)");
  v.counter("data_pages", stats_.data_pages, "frames", "4 KiB byte blocks currently allocated");
  v.counter("bytes_read", stats_.bytes_read, "bytes", "bytes read through the functional core");
  v.counter("bytes_written", stats_.bytes_written, "bytes", "bytes written or filled through the functional core");
  v.counter("dmi_grants", stats_.dmi_grants, "count", "DMI pointers handed out for a frame");
  v.counter("dmi_revocations", stats_.dmi_revocations, "count",
            "DMI pointers revoked because a frame's key, owner, label, poison or mapping changed");
}

uint64_t PhysMem::host_bytes() const {
  uint64_t n = sizeof(*this) + chunks_.capacity() * sizeof(chunks_[0]) + table_blocks_.host_bytes();
  for (const auto& c : chunks_)
    if (c) n += sizeof(Chunk);
  return n + stats_.data_pages * kPageBytes;
}

}  // namespace cvmsim
