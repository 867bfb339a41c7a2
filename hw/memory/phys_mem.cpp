#include "hw/memory/phys_mem.h"

#include "hw/base/copy.h"
#include "hw/base/rng.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstring>
#include <stdexcept>

namespace cvmsim {

// A chunk covers 512 frames (2 MiB) and is allocated on the first touch of any of them. Guest
// and table frames come from an allocator that hands out frames densely, so chunks fill up and
// the per-frame overhead stays at the 16 bytes of FrameMeta (which also holds the address of
// the frame's byte block, if it has one). The chunk's LineState array (40 bytes per frame) is
// allocated when one of its frames first gets integrity state (a TD-owned, poisoned or cached
// line).
struct PhysMem::Chunk {
  std::array<FrameMeta, kChunkFrames> meta{};
  std::unique_ptr<LineState[]> lines;
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

// Memory encrypted under one key and read under another yields ciphertext, not the plaintext
// (MKTME/SME behaviour): the bytes at [addr, addr + n) are scrambled by a function of the address
// and both keys.
void scramble(uint8_t* p, uint64_t addr, uint64_t n, KeyId written, KeyId read) {
  for (uint64_t i = 0; i < n; ++i)
    p[i] ^= static_cast<uint8_t>(
        mix64((addr + i) ^ (uint64_t{written} << 48) ^ (uint64_t{read} << 32)) | 1);
}

constexpr uint8_t kIntegrityFlags = kFrameTdOwner | kFramePoison | kFrameCached;

unsigned popcount(uint64_t v) {
  return static_cast<unsigned>(std::popcount(v));
}
}  // namespace

PhysMem::PhysMem(uint64_t size_bytes, MemMode mode) : size_(size_bytes), mode_(mode) {
  if (size_bytes == 0 || size_bytes % (kPageBytes << kChunkShift) != 0)
    throw std::invalid_argument("PhysMem size must be a non-zero multiple of 2 MiB");
  chunks_.resize(num_frames() >> kChunkShift);
  // Metadata-only mode is for guests too large to store: no provenance log either (it would
  // cost more than the 16-byte metadata slot per page; docs/memory-integrity.md "Provenance").
  history_.set_enabled(mode == MemMode::kData);
}

PhysMem::PhysMem(uint64_t size_bytes, MemMode mode, const KeyConfig& keys)
    : PhysMem(size_bytes, mode) {
  if (!set_key_config(keys).ok()) throw std::invalid_argument("PhysMem: invalid key configuration");
}

Status PhysMem::set_key_config(const KeyConfig& keys) {
  if (Status st = keys.validate(); !st.ok()) return st;
  keys_ = keys;
  return {};
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
  return data_for_write(chunk_mut(f).meta[f.value() & (kChunkFrames - 1)]);
}

uint8_t* PhysMem::data_for_write(FrameMeta& m) {
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
    store_piece(meta_mut(Pfn(addr >> kPageShift)), off, in.subspan(done, n));
    done += n;
    addr += n;
  }
  stats_.bytes_written += in.size();
}

void PhysMem::store_piece(FrameMeta& m, uint64_t off, std::span<const uint8_t> piece) {
  const size_t n = piece.size();
  if (uint8_t* d = data_for_write(m)) {
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
    fill_piece(meta_mut(f), off, n, byte);
    addr += n;
  }
  stats_.bytes_written += len;
}

void PhysMem::fill_piece(FrameMeta& m, uint64_t off, uint64_t n, uint8_t byte) {
  const bool whole = (n == kPageBytes);
  if (byte == 0 && whole && !(m.flags & kFrameTable)) {
    // Scrubbing a whole frame: drop its bytes; it reads as zeros again.
    if (m.flags & kFrameData) {
      free_block(m);
      --stats_.data_pages;
    }
    m.content = 0;
  } else if (uint8_t* d = data_for_write(m)) {
    std::memset(d + off, byte, n);
  } else if (!(byte == 0 && m.content == 0)) {
    m.content = mix64(m.content ^ (off << 32) ^ (n << 8) ^ byte) | 1;
  }
}

// ---- Keyed accesses ----

IntegrityResult PhysMem::read_keyed(Hpa a, std::span<uint8_t> out, KeyId key) {
  assert(contains(a, out.size()) && keys_.valid_key(key));
  IntegrityResult r;
  const bool priv = keys_.is_private(key);
  uint64_t addr = a.value();
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t off = addr & (kPageBytes - 1);
    const size_t n = std::min<uint64_t>(out.size() - done, kPageBytes - off);
    const Pfn f(addr >> kPageShift);
    uint8_t* dst = out.data() + done;
    const Chunk* c = chunk_for(f);
    const FrameMeta* m = c ? &c->meta[f.value() & (kChunkFrames - 1)] : nullptr;
    if (const uint8_t* d = m ? block_of(*m) : nullptr)
      copy_small(dst, d + off, n);
    else
      zero_small(dst, n);
    const uint8_t flags = m ? m->flags : 0;
    if (priv || (flags & kIntegrityFlags)) [[unlikely]] {
      read_lines(f, off, n, dst, key, r);
    } else if ((flags & kFrameTouched) && m->key_id != key) {
      scramble(dst, addr, n, m->key_id, key);
      r.key_mismatch = true;
    }
    done += n;
    addr += n;
  }
  stats_.bytes_read += out.size();
  return r;
}

void PhysMem::read_lines(Pfn f, uint64_t off, uint64_t n, uint8_t* dst, KeyId key,
                         IntegrityResult& r) {
  const uint64_t lines = lines_touched(off, n);
  const LineState* ls;
  if (keys_.is_private(key)) {
    // A private-key read checks every line it touches: TD-owner mismatch, or (Ci) a MAC computed
    // under another key, generates poison, stored back (sticky).
    FrameMeta& m = meta_mut(f);
    LineState& s = lines_mut(f, m);
    uint64_t bad = lines & ~s.td_owner;
    if (keys_.integrity == IntegrityMode::kCi && s.private_key != key) bad |= lines & s.td_owner;
    if (const uint64_t fresh = bad & ~s.poison) {
      const uint64_t old_poison = s.poison;
      s.poison |= fresh;
      stats_.lines_poisoned += popcount(fresh);
      r.new_poison = true;
      lines_changed(f, m, s, s.td_owner, old_poison);
    }
    ls = &s;
  } else {
    const Chunk* c = chunk_for(f);  // flags were set, so the chunk and its line array exist
    ls = &c->lines[f.value() & (kChunkFrames - 1)];
  }
  // Poison goes to anyone; TD-owned lines read as zeros outside the TD (no new poison).
  const uint64_t poisoned = lines & ls->poison;
  const uint64_t zeroed = keys_.is_private(key) ? 0 : (lines & ls->td_owner & ~ls->poison);
  const uint64_t base = pfn_to_hpa(f).value();
  if (poisoned) {
    if (!r.poisoned) {
      const uint64_t line_start = uint64_t(std::countr_zero(poisoned)) << kLineShift;
      r.poison_address = Hpa(base + std::max<uint64_t>(off, line_start));
    }
    r.poisoned = true;
    stats_.poisoned_line_reads += popcount(poisoned);
  }
  if (zeroed) {
    r.zeroed = true;
    stats_.zeroed_line_reads += popcount(zeroed);
  }
  for (uint64_t rest = lines; rest; rest &= rest - 1) {
    const unsigned i = static_cast<unsigned>(std::countr_zero(rest));
    const uint64_t bit = uint64_t{1} << i;
    const uint64_t lo = std::max<uint64_t>(off, uint64_t{i} << kLineShift);
    const uint64_t hi = std::min<uint64_t>(off + n, uint64_t{i + 1} << kLineShift);
    uint8_t* p = dst + (lo - off);
    if ((poisoned | zeroed) & bit) {
      std::memset(p, 0, hi - lo);
      continue;
    }
    const KeyId written = (ls->td_owner & bit) ? ls->private_key : ls->shared_key;
    if (written != key) {
      scramble(p, base + lo, hi - lo, written, key);
      r.key_mismatch = true;
    }
  }
}

IntegrityResult PhysMem::write_keyed(Hpa a, std::span<const uint8_t> in, const KeyedAccess& acc) {
  assert(contains(a, in.size()) && keys_.valid_key(acc.key));
  IntegrityResult r;
  uint64_t addr = a.value();
  size_t done = 0;
  while (done < in.size()) {
    const uint64_t off = addr & (kPageBytes - 1);
    const size_t n = std::min<uint64_t>(in.size() - done, kPageBytes - off);
    const Pfn f(addr >> kPageShift);
    FrameMeta& m = meta_mut(f);
    store_piece(m, off, in.subspan(done, n));
    after_keyed_write(f, m, off, n, acc, r);
    done += n;
    addr += n;
  }
  stats_.bytes_written += in.size();
  return r;
}

IntegrityResult PhysMem::fill_keyed(Hpa a, uint64_t len, uint8_t byte, const KeyedAccess& acc) {
  assert(contains(a, len) && keys_.valid_key(acc.key));
  IntegrityResult r;
  uint64_t addr = a.value();
  const uint64_t end = addr + len;
  while (addr < end) {
    const uint64_t off = addr & (kPageBytes - 1);
    const uint64_t n = std::min<uint64_t>(end - addr, kPageBytes - off);
    const Pfn f(addr >> kPageShift);
    FrameMeta& m = meta_mut(f);
    fill_piece(m, off, n, byte);
    after_keyed_write(f, m, off, n, acc, r);
    addr += n;
  }
  stats_.bytes_written += len;
  return r;
}

void PhysMem::after_keyed_write(Pfn f, FrameMeta& m, uint64_t off, uint64_t n,
                                const KeyedAccess& acc, IntegrityResult& r) {
  if (keys_.is_private(acc.key) || (m.flags & kIntegrityFlags)) [[unlikely]]
    write_lines(f, m, off, n, acc, r);
  if (m.key_id != acc.key || m.label != acc.who) {
    if (m.label != acc.who && (is_vm(acc.who) || history_.logged(f))) [[unlikely]]
      history_.record(f, FrameEventKind::kWrite, acc.who);
    m.key_id = acc.key;
    m.label = acc.who;
    changed_isolation_state(f, m);
  }
}

void PhysMem::write_lines(Pfn f, FrameMeta& m, uint64_t off, uint64_t n, const KeyedAccess& acc,
                          IntegrityResult& r) {
  LineState& s = lines_mut(f, m);  // before the write changes m.key_id
  const uint64_t old_owner = s.td_owner, old_poison = s.poison;
  const uint64_t lines = lines_touched(off, n);
  const uint64_t whole = lines_covered(off, n);
  if (keys_.is_private(acc.key)) {
    // A private-key write sets TD-owner (and, in Ci, the MAC under the writer's key). The lines
    // now sit in the cache tagged with the key until written back (ISO-8).
    s.td_owner |= lines;
    s.private_key = acc.key;
    mark_cached(s, lines, acc.key, acc.who);
  } else {
    // The partial-write erratum: a shared-key write that does not replace a TD-owned line
    // entirely poisons it.
    if (keys_.partial_write_poisons) {
      if (const uint64_t hit = lines & ~whole & s.td_owner & ~s.poison) {
        s.poison |= hit;
        stats_.lines_poisoned += popcount(hit);
        r.new_poison = true;
      }
    }
    s.td_owner &= ~lines;
    s.shared_key = acc.key;
  }
  // MOVDIR64B replaces whole lines without reading them: their poison is gone.
  if (acc.full_line) {
    if (const uint64_t cleared = whole & s.poison) {
      s.poison &= ~cleared;
      stats_.lines_poison_cleared += popcount(cleared);
    }
  }
  lines_changed(f, m, s, old_owner, old_poison);
}

LineState& PhysMem::lines_mut(Pfn f, FrameMeta& m) {
  Chunk& c = chunk_mut(f);
  if (!c.lines) {
    c.lines = std::make_unique<LineState[]>(kChunkFrames);
    ++stats_.line_state_chunks;
  }
  LineState& s = c.lines[f.value() & (kChunkFrames - 1)];
  if (!(m.flags & kIntegrityFlags)) s = LineState{0, 0, m.key_id, m.key_id, 0, kNobody, 0};
  return s;
}

void PhysMem::lines_changed(Pfn f, FrameMeta& m, const LineState& s, uint64_t old_owner,
                            uint64_t old_poison) {
  uint8_t flags = static_cast<uint8_t>(m.flags & ~kIntegrityFlags);
  if (s.td_owner) flags |= kFrameTdOwner;
  if (s.poison) flags |= kFramePoison;
  if (s.cached) flags |= kFrameCached;
  const bool isolation = s.td_owner != old_owner || s.poison != old_poison;
  if (!isolation && flags == m.flags) return;
  m.flags = flags;
  if (isolation) changed_isolation_state(f, m);
}

LineState PhysMem::line_state(Pfn f) const {
  const FrameMeta& m = meta(f);
  if (!(m.flags & kIntegrityFlags)) return LineState{0, 0, m.key_id, m.key_id, 0, kNobody, 0};
  return chunk_for(f)->lines[f.value() & (kChunkFrames - 1)];
}

void PhysMem::set_td_owner_lines(Pfn f, uint64_t lines, bool owner) {
  FrameMeta& m = meta_mut(f);
  if (!owner && !(m.flags & kFrameTdOwner)) return;
  LineState& s = lines_mut(f, m);
  const uint64_t old_owner = s.td_owner;
  s.td_owner = owner ? (s.td_owner | lines) : (s.td_owner & ~lines);
  lines_changed(f, m, s, old_owner, s.poison);
}

void PhysMem::set_poison_lines(Pfn f, uint64_t lines, bool poison) {
  FrameMeta& m = meta_mut(f);
  if (!poison && !(m.flags & kFramePoison)) return;
  LineState& s = lines_mut(f, m);
  const uint64_t old_poison = s.poison;
  s.poison = poison ? (s.poison | lines) : (s.poison & ~lines);
  lines_changed(f, m, s, s.td_owner, old_poison);
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
  if (m.flags & kIntegrityFlags) {
    LineState& s = chunk_mut(f).lines[f.value() & (kChunkFrames - 1)];
    (keys_.is_private(k) ? s.private_key : s.shared_key) = k;
  }
  if (m.key_id == k) return;
  m.key_id = k;
  changed_isolation_state(f, m);
}

void PhysMem::set_label(Pfn f, Principal p) {
  FrameMeta& m = meta_mut(f);
  if (m.label == p) return;
  if (is_vm(p)) history_.record(f, FrameEventKind::kLabelSet, p);
  m.label = p;
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

uint64_t PhysMem::writeback_frame(Pfn f, KeyId k) {
  Chunk* c = chunk_for(f);
  if (!c || !c->lines) return 0;
  FrameMeta& m = c->meta[f.value() & (kChunkFrames - 1)];
  if (!(m.flags & kFrameCached)) return 0;
  LineState& s = c->lines[f.value() & (kChunkFrames - 1)];
  if (s.cached_key != k || !s.cached) return 0;
  const uint64_t n = static_cast<uint64_t>(std::popcount(s.cached));
  s.cached = 0;
  s.cached_owner = kNobody;
  stats_.lines_written_back += n;
  lines_changed(f, m, s, s.td_owner, s.poison);
  // A DMI pointer would let later writes bypass write_keyed, which marks lines cached again.
  changed_isolation_state(f, m);
  return n;
}

uint64_t PhysMem::writeback_key(KeyId k) {
  uint64_t n = 0;
  for (size_t ci = 0; ci < chunks_.size(); ++ci) {
    const Chunk* c = chunks_[ci].get();
    if (!c || !c->lines) continue;
    for (uint64_t i = 0; i < kChunkFrames; ++i)
      if (c->meta[i].flags & kFrameCached) n += writeback_frame(Pfn((ci << kChunkShift) + i), k);
  }
  return n;
}

void PhysMem::for_each_line_state(const std::function<void(Pfn, const LineState&)>& f) const {
  for (size_t ci = 0; ci < chunks_.size(); ++ci) {
    const Chunk* c = chunks_[ci].get();
    if (!c || !c->lines) continue;
    for (uint64_t i = 0; i < kChunkFrames; ++i)
      if (c->meta[i].flags & kIntegrityFlags) f(Pfn((ci << kChunkShift) + i), c->lines[i]);
  }
}

void PhysMem::note_cached(Pfn f, uint64_t lines, Principal who) {
  FrameMeta& m = meta_mut(f);
  if (!(m.flags & kFrameTdOwner)) return;
  LineState& s = lines_mut(f, m);
  if (!keys_.is_private(s.private_key)) return;
  mark_cached(s, lines & s.td_owner, s.private_key, who);
  lines_changed(f, m, s, s.td_owner, s.poison);
}

void PhysMem::mark_cached(LineState& s, uint64_t lines, KeyId key, Principal who) {
  if (s.cached && s.cached_key != key) return;  // other lines, another tag: keep the older record
  // Same key: the write replaces those lines in the cache; the record names the last writer.
  s.cached |= lines;
  s.cached_key = key;
  s.cached_owner = who;
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
  v.counter("frames_touched", stats_.frames_touched, "frames",
            "frames materialised (written or given metadata)");
  v.counter("data_pages", stats_.data_pages, "frames", "4 KiB byte blocks currently allocated");
  v.counter("bytes_read", stats_.bytes_read, "bytes", "bytes read through the functional core");
  v.counter("bytes_written", stats_.bytes_written, "bytes",
            "bytes written or filled through the functional core");
  v.counter("dmi_grants", stats_.dmi_grants, "count", "DMI pointers handed out for a frame");
  v.counter("dmi_revocations", stats_.dmi_revocations, "count",
            "DMI pointers revoked because a frame's key, owner, label, poison or mapping changed");
  v.counter("lines_poisoned", stats_.lines_poisoned, "lines",
            "cache lines newly poisoned (private-key read with a TD-owner or MAC mismatch, or the "
            "partial-write erratum)");
  v.counter("lines_poison_cleared", stats_.lines_poison_cleared, "lines",
            "poisoned cache lines cleared by full-line (MOVDIR64B-style) writes");
  v.counter("poisoned_line_reads", stats_.poisoned_line_reads, "lines",
            "poisoned cache lines returned by keyed reads");
  v.counter("zeroed_line_reads", stats_.zeroed_line_reads, "lines",
            "TD-owned cache lines read under a shared key (returned as zeros)");
  v.counter("line_state_chunks", stats_.line_state_chunks, "chunks",
            "2 MiB chunks holding per-line integrity state");
  v.counter("lines_written_back", stats_.lines_written_back, "lines",
            "cache lines tagged with a private key written back (TDH.PHYMEM.PAGE.WBINVD, "
            "TDH.PHYMEM.CACHE.WB)");
}

uint64_t PhysMem::host_bytes() const {
  uint64_t n = sizeof(*this) + chunks_.capacity() * sizeof(chunks_[0]) +
               table_blocks_.host_bytes() + history_.host_bytes();
  for (const auto& c : chunks_)
    if (c) n += sizeof(Chunk);
  n += stats_.line_state_chunks * kChunkFrames * sizeof(LineState);
  return n + stats_.data_pages * kPageBytes;
}

}  // namespace cvmsim
