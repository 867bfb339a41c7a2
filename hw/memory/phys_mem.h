// Host physical memory: the functional core of hw/memory.
//
// Sparse 4 KiB frames, materialised on first touch. Every frame has 16 bytes of metadata
// (FrameMeta): the encryption key id it was last written under, summary integrity flags (some
// line TD-owned, some line poisoned), the secret label of the principal whose data it holds, and
// either a 64-bit content fingerprint or the address of the frame's byte block. Two modes:
//   kData          bytes are stored (a 4 KiB block per frame, allocated on the first non-zero
//                  write); reads of never-written bytes return zeros.
//   kMetadataOnly  no bytes are stored, only metadata, so that very large guests fit; reads
//                  return zeros and only the fingerprint tracks content. Page-table frames
//                  (mark_table) are always backed by bytes, since walks read them.
//
// Memory integrity (tdx-snp.md A9, docs/memory-integrity.md) is kept per 64-byte cache line: a
// TD-owner bit and a sticky poison bit for each of a frame's 64 lines (LineState), plus the keys
// the TD-owned and the other lines were written under. LineState lives in a side array allocated
// per 2 MiB chunk on the first integrity state in that chunk, so memory without TDX-private
// traffic pays nothing and a TD-private page costs 40 bytes more (metadata-only mode stays under
// 64 host bytes per touched page). LineState also records which lines may still sit in a cache
// tagged with the private key they were written under (key hygiene, ISO-8). The key ids and
// integrity mode come from a KeyConfig.
//
// Two kinds of access:
//   read/write/fill/read_u64/write_u64  raw bytes: no keys, no labels, no integrity (a debugger's
//                  or the simulator's own view);
//   read_keyed/write_keyed/fill_keyed   an access under a key by a principal, with the hardware's
//                  semantics: labels and keys what it writes, sets/clears TD-owner bits, checks
//                  them on reads, generates and returns poison, returns zeros or ciphertext. The
//                  SystemC memory module performs every transaction through these.
//
// For frames that have held a VM's data, PhysMem also keeps a bounded provenance log
// (frame_history.h, history()): who wrote them, and the events the layers above report through
// note() (hand-out, mapping, scrub, rebind); ISO-2/ISO-6 print it as the chain of a leak.
//
// This class performs no isolation checks (the MMU and the backends do). It holds the platform's
// chain of host-side checks (host_checks(), access_check.h), which every host-side Initiator
// runs before it calls in here, so that whoever holds the memory reaches the same chain. It does
// track which frames have a DMI pointer out, and calls the DMI listener to revoke it whenever a
// frame's key, owner, label or poison state changes (ARCHITECTURE.md principle 5).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "hw/base/addr.h"
#include "hw/base/principal.h"
#include "hw/base/result.h"
#include "hw/base/stat_visitor.h"
#include "hw/memory/access_check.h"
#include "hw/memory/frame_history.h"
#include "hw/memory/frame_ptr_map.h"
#include "hw/memory/key_config.h"

namespace cvmsim {

enum FrameFlag : uint8_t {
  kFrameTouched = 1 << 0,     // materialised (written, or metadata set)
  kFrameTdOwner = 1 << 1,     // some line has its TDX TD-owner bit set (LineState, tdx-snp.md A9)
  kFramePoison = 1 << 2,      // some line holds sticky integrity poison (LineState, tdx-snp.md A9)
  kFrameTable = 1 << 3,       // holds a page table: always byte-backed
  kFrameDmiGranted = 1 << 4,  // a DMI pointer to this frame is out
  kFrameData = 1 << 5,        // has a 4 KiB byte block; `content` is its address
  kFrameCached =
      1 << 6,  // some line may sit in a cache tagged with a private key (LineState::cached)
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

// Cache lines: 64 bytes, 64 per 4 KiB frame; bit i of a line mask is bytes [64i, 64i + 64).
inline constexpr unsigned kLineShift = 6;
inline constexpr uint64_t kLineBytes = uint64_t{1} << kLineShift;
inline constexpr uint64_t kAllLines = ~uint64_t{0};
// The lines that bytes [off, off + n) of a frame touch (n >= 1, off + n <= 4096).
constexpr uint64_t lines_touched(uint64_t off, uint64_t n) {
  const unsigned first = static_cast<unsigned>(off >> kLineShift);
  const unsigned last = static_cast<unsigned>((off + n - 1) >> kLineShift);
  const uint64_t upto_last = last == 63 ? kAllLines : (uint64_t{1} << (last + 1)) - 1;
  return upto_last & ~((uint64_t{1} << first) - 1);
}
// The lines that bytes [off, off + n) of a frame cover completely.
constexpr uint64_t lines_covered(uint64_t off, uint64_t n) {
  const uint64_t first = (off + kLineBytes - 1) >> kLineShift;  // first line starting in range
  const uint64_t end = (off + n) >> kLineShift;                 // lines [first, end) are whole
  if (end <= first) return 0;
  return lines_touched(first << kLineShift, (end - first) << kLineShift);
}

// Integrity state of one frame's cache lines (tdx-snp.md A9: "the TD-owner bit is stored per cache
// line"). A frame without kFrameTdOwner/kFramePoison has none: every line owner 0, no poison, and
// all of it written under FrameMeta::key_id.
struct LineState {
  uint64_t td_owner = 0;  // TD-owner bit per line
  uint64_t poison = 0;    // sticky poison per line
  // The key the TD-owned lines were last written under: in Ci mode, the MAC key they are checked
  // against. Kept per frame, not per line: a frame written under two private keys (impossible
  // while the PAMT is intact) is judged as if all its TD-owned lines had the last one.
  KeyId private_key = 0;
  KeyId shared_key = 0;  // the key the other (not TD-owned) lines were last written under
  // Key hygiene (ISO-8, tdx-snp.md A9/T6; docs/memory-integrity.md "Cached lines"): caches tag a
  // line with its physical address including the KeyID bits, so a line written under a private
  // key may stay in a cache, tagged with that key, until it is written back
  // (TDH.PHYMEM.PAGE.WBINVD of the page, TDH.PHYMEM.CACHE.WB of the key). `cached` marks those
  // lines, `cached_key` is their tag and `cached_owner` who wrote them. One tag per frame: while
  // lines are cached under one key, writes under another key (another cache line, another tag)
  // leave the record alone, so the oldest unflushed lines, the ones that matter, are kept.
  KeyId cached_key = 0;
  Principal cached_owner = kNobody;
  uint64_t cached = 0;
};
static_assert(sizeof(LineState) == 40);

// A keyed access: under which key, by whom, and whether it is a MOVDIR64B-style direct full-line
// store (no read-for-ownership: it replaces whole lines, clearing their poison).
struct KeyedAccess {
  KeyId key = 0;
  Principal who = kNobody;
  bool full_line = false;  // writes: lines covered completely are stored as MOVDIR64B does
};

// What a keyed access saw and did (tdx-snp.md A9, "Read semantics", "Write semantics").
struct IntegrityResult {
  // Read: at least one line returned poison (its bytes read as zeros). A load that consumes it
  // raises #MC in whoever issued it.
  bool poisoned = false;
  // This access generated new poison: a private-key read with a TD-owner mismatch or (Ci) a MAC
  // failure, or a partial shared-key write with the partial-write erratum.
  bool new_poison = false;
  bool zeroed = false;        // read: TD-owned lines read with a shared key returned zeros
  bool key_mismatch = false;  // read: some bytes were written under another key (ciphertext)
  Hpa poison_address{};       // read: the first byte that read as poison (valid if poisoned)
};

enum class MemMode : uint8_t { kData, kMetadataOnly };

class PhysMem {
 public:
  struct Stats {
    uint64_t frames_touched = 0;  // frames materialised
    uint64_t data_pages = 0;      // 4 KiB byte blocks allocated
    uint64_t bytes_read = 0;
    uint64_t bytes_written = 0;
    uint64_t dmi_grants = 0;
    uint64_t dmi_revocations = 0;
    uint64_t lines_poisoned = 0;        // lines newly poisoned by keyed accesses
    uint64_t lines_poison_cleared = 0;  // poisoned lines cleared by full-line writes
    uint64_t poisoned_line_reads = 0;   // poisoned lines returned by keyed reads
    uint64_t zeroed_line_reads = 0;     // TD-owned lines read as zeros under a shared key
    uint64_t line_state_chunks = 0;     // 2 MiB chunks holding a LineState array
    uint64_t lines_written_back = 0;    // cached private-key lines written back (writeback_*)
  };
  using DmiListener = std::function<void(Hpa start, Hpa end_inclusive)>;

  PhysMem(uint64_t size_bytes, MemMode mode);
  // With a key configuration; throws std::invalid_argument if keys.validate() fails.
  PhysMem(uint64_t size_bytes, MemMode mode, const KeyConfig& keys);
  ~PhysMem();
  PhysMem(const PhysMem&) = delete;
  PhysMem& operator=(const PhysMem&) = delete;

  uint64_t size_bytes() const { return size_; }
  uint64_t num_frames() const { return size_ >> kPageShift; }
  MemMode mode() const { return mode_; }
  bool contains(Hpa a, uint64_t len) const { return a.value() < size_ && len <= size_ - a.value(); }

  // ---- Keys ----
  const KeyConfig& keys() const { return keys_; }
  // EINVAL (and no change) if the configuration does not validate. Meant to be set before any
  // keyed access; integrity state already recorded is kept as it is.
  Status set_key_config(const KeyConfig& keys);

  // ---- Keyed accesses (hardware semantics; docs/memory-integrity.md) ----
  // Accesses may span frames; must be inside contains(); the key must be valid_key().
  //   read: a poisoned line returns zeros and poison, to any key. Under a private key, a line
  //     that is not TD-owned or (Ci) whose MAC key is another key becomes poisoned (sticky) and
  //     returns zeros and poison. Under a shared key, a TD-owned line returns zeros, no new
  //     poison. Other lines return their bytes, scrambled if they were written under another key.
  //   write: never checked. Stores the bytes, keys and labels the frames; under a private key
  //     the lines written become TD-owned (their MAC key the writer's), under a shared key they
  //     stop being TD-owned; with the partial-write erratum a shared-key write that covers a
  //     TD-owned line only partly poisons it. With full_line, the lines covered completely lose
  //     their poison.
  IntegrityResult read_keyed(Hpa a, std::span<uint8_t> out, KeyId key);
  IntegrityResult write_keyed(Hpa a, std::span<const uint8_t> in, const KeyedAccess& acc);
  // write_keyed of `len` copies of `byte` (e.g. TDG.MEM.PAGE.ACCEPT zeroing a page with
  // MOVDIR64B under the TD's key: fill_keyed(hpa, 4096, 0, {td_key, td, true})).
  IntegrityResult fill_keyed(Hpa a, uint64_t len, uint8_t byte, const KeyedAccess& acc);

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
  // Sets the key the frame is encrypted under. For a frame with line state: the TD-owned lines'
  // key if k is private, the other lines' key if not.
  void set_key(Pfn f, KeyId k);
  void set_label(Pfn f, Principal p);
  // Whole-frame integrity state: every line of f.
  void set_td_owner(Pfn f, bool owner) { set_td_owner_lines(f, kAllLines, owner); }
  void set_poison(Pfn f, bool poison) { set_poison_lines(f, kAllLines, poison); }
  // Per line: sets or clears the bits of `lines` only.
  void set_td_owner_lines(Pfn f, uint64_t lines, bool owner);
  void set_poison_lines(Pfn f, uint64_t lines, bool poison);
  // The frame's line state (all clear, both keys = key_id, for a frame without any).
  LineState line_state(Pfn f) const;
  uint64_t td_owner_lines(Pfn f) const { return line_state(f).td_owner; }
  uint64_t poison_lines(Pfn f) const { return line_state(f).poison; }
  void mark_table(Pfn f, bool is_table);
  // ---- Cached lines tagged with a private key (LineState::cached) ----
  // Writes back (and invalidates) every cached line tagged with key k: WBINVD / TDH.PHYMEM.CACHE.WB
  // for that key. Returns the number of lines written back.
  uint64_t writeback_key(KeyId k);
  // The same for frame f only (TDH.PHYMEM.PAGE.WBINVD with k in the address's KeyID bits).
  uint64_t writeback_frame(Pfn f, KeyId k);
  // Marks `lines` of f as cached under f's private key, written by `who`: for writers that set a
  // frame's key and TD-owner bits directly (set_key/set_td_owner, the TDX module's MOVDIR64B
  // under a TD's HKID) rather than through write_keyed, which marks them itself. No-op unless
  // the frame's TD-owned lines carry a private key.
  void note_cached(Pfn f, uint64_t lines, Principal who);
  // f(frame, its line state) for every frame with line state (a TD-owned, poisoned or cached
  // line), in frame order.
  void for_each_line_state(const std::function<void(Pfn, const LineState&)>& f) const;
  // Content fingerprint: 0 iff the frame is known to be all zero. In data mode it is a hash of
  // the frame's bytes (computed on demand); in metadata-only mode it is updated on each write.
  uint64_t fingerprint(Pfn f) const;
  bool is_zero(Pfn f) const { return fingerprint(f) == 0; }

  // ---- Provenance (frame_history.h; docs/memory-integrity.md "Provenance") ----
  // Keyed writes that change a frame's label to a VM (or change the label of a frame already
  // logged) and set_label to a VM are recorded here; the layers above add the events that move
  // a frame (note). Read-only for the checker.
  const FrameHistory& history() const { return history_; }
  FrameHistory& history() { return history_; }
  // Records an event for f if f is logged already or holds a VM's data (other frames are not
  // logged: no cost for memory that never held a VM's secret).
  void note(Pfn f, FrameEventKind k, Principal who, Principal other = kNobody, uint64_t arg = 0) {
    if (history_.logged(f) || is_vm(meta(f).label))
      history_.record(f, k, who, other, arg);
    else if (k == FrameEventKind::kMap)
      history_.remember_map(f, who, arg);
  }

  // ---- The platform's host-side check chain (initiator.h) ----
  // Backends add their checks (SNP: the RMP check on host writes, tdx-snp.md B3); PhysMem never
  // runs them itself.
  AccessCheckChain& host_checks() { return host_checks_; }
  const AccessCheckChain& host_checks() const { return host_checks_; }

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
  uint8_t* data_for_write(FrameMeta& m);
  const uint8_t* data_for_read(Pfn f) const;
  void changed_isolation_state(Pfn f, FrameMeta& m);
  static void free_block(FrameMeta& m);  // drops the frame's byte block, if any
  // The bytes of one frame piece, as write() and fill() store them.
  void store_piece(FrameMeta& m, uint64_t off, std::span<const uint8_t> piece);
  void fill_piece(FrameMeta& m, uint64_t off, uint64_t n, uint8_t byte);
  // LineState of f, allocating its chunk's array; a frame that had none gets a fresh record
  // (both keys = key_id).
  LineState& lines_mut(Pfn f, FrameMeta& m);
  static void mark_cached(LineState& s, uint64_t lines, KeyId key, Principal who);
  // Brings FrameMeta's summary flags in line with `ls`; revokes DMI if anything changed.
  void lines_changed(Pfn f, FrameMeta& m, const LineState& ls, uint64_t old_owner,
                     uint64_t old_poison);
  // The integrity part of a keyed read of bytes [off, off + n) of f, already copied to `dst`.
  void read_lines(Pfn f, uint64_t off, uint64_t n, uint8_t* dst, KeyId key, IntegrityResult& r);
  // The integrity part of a keyed write of bytes [off, off + n) of f, before the write sets the
  // frame's key and label.
  void write_lines(Pfn f, FrameMeta& m, uint64_t off, uint64_t n, const KeyedAccess& acc,
                   IntegrityResult& r);
  // Key, label and line state after a keyed write of one frame piece.
  void after_keyed_write(Pfn f, FrameMeta& m, uint64_t off, uint64_t n, const KeyedAccess& acc,
                         IntegrityResult& r);

  uint64_t size_;
  MemMode mode_;
  KeyConfig keys_;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  // The byte blocks of page-table frames (kFrameTable), by frame number: read_u64 looks here
  // first, so that a walk does not touch the table frame's metadata slot (frame_ptr_map.h).
  FramePtrMap table_blocks_;
  mutable Stats stats_;  // reads count bytes too
  DmiListener dmi_listener_;
  FrameHistory history_;
  AccessCheckChain host_checks_;
};

}  // namespace cvmsim
