#include "models/kvm/mem_attributes.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <map>
#include <utility>
#include <vector>

namespace cvmsim::kvm {

std::string_view name_of(AttrStoreKind k) {
  switch (k) {
    case AttrStoreKind::kXarray:
      return "xarray";
    case AttrStoreKind::kRange:
      return "range";
  }
  return "?";
}

std::optional<AttrStoreKind> parse_attr_store_kind(std::string_view s) {
  if (s == "xarray") return AttrStoreKind::kXarray;
  if (s == "range") return AttrStoreKind::kRange;
  return std::nullopt;
}

namespace {

using RunFn = std::function<void(GfnRange, uint64_t)>;

// Turns an ascending sequence of non-overlapping attribute pieces into maximal runs over [pos,
// end): fills holes with attrs 0 and merges touching pieces with equal attrs.
class RunEmitter {
 public:
  RunEmitter(uint64_t start, uint64_t end, const RunFn& fn) : pos_(start), end_(end), fn_(fn) {}
  void add(uint64_t start, uint64_t stop, uint64_t attrs) {
    if (start > pos_) push(pos_, start, 0);
    push(start, stop, attrs);
  }
  void finish() {
    if (pos_ < end_) push(pos_, end_, 0);
    if (have_) fn_(GfnRange{Gfn(run_start_), Gfn(run_end_)}, run_attrs_);
    have_ = false;
  }

 private:
  void push(uint64_t a, uint64_t b, uint64_t v) {
    if (have_ && v == run_attrs_ && a == run_end_) {
      run_end_ = b;
    } else {
      if (have_) fn_(GfnRange{Gfn(run_start_), Gfn(run_end_)}, run_attrs_);
      run_start_ = a;
      run_end_ = b;
      run_attrs_ = v;
      have_ = true;
    }
    pos_ = b;
  }
  uint64_t pos_, end_;
  const RunFn& fn_;
  bool have_ = false;
  uint64_t run_start_ = 0, run_end_ = 0, run_attrs_ = 0;
};

// ---- xarray --------------------------------------------------------------------------------
// A model of lib/xarray.c as kvm->mem_attr_array uses it (kvm-guest-memfd.md §5 "Storage"):
// - entries are tagged words as in Linux: xa_mk_value(v) = v << 1 | 1, node pointers tagged 2,
//   XA_ZERO_ENTRY (what xa_reserve stores) = xa_mk_internal(257);
// - index 0 alone lives in xa_head without a node; a store beyond the tree's reach adds roots
//   above the old one (xas_expand); missing nodes on the path are created (xas_create);
// - erasing a slot that empties its node frees it and walks up (xas_delete_node); when a deletion
//   reaches the root, a root whose only entry is in slot 0 is replaced by it (xas_shrink).
class XarrayStore final : public MemAttributeStore {
 public:
  explicit XarrayStore(uint64_t limit) : limit_(limit) {}
  ~XarrayStore() override { free_subtree(head_); }
  XarrayStore(const XarrayStore&) = delete;
  XarrayStore& operator=(const XarrayStore&) = delete;

  AttrStoreKind kind() const override { return AttrStoreKind::kXarray; }

  uint64_t get(Gfn gfn) const override {
    ++work_.lookups;
    return attrs_of(load(gfn.value()));
  }

  bool range_has(GfnRange r, uint64_t mask, uint64_t attrs) const override {
    if (attrs & ~mask) return false;
    if (r.empty()) return true;
    // Single-gfn fast path, as kvm_range_has_memory_attributes() has.
    if (r.pages() == 1) return (get(r.start) & mask) == attrs;
    ++work_.lookups;
    const uint64_t s = r.start.value(), e = r.end.value();
    if (attrs == 0) {
      // Linux: !xas_find(&xas, end - 1). An entry whose masked bits are 0 is also acceptable, which
      // Linux does not distinguish because every stored attribute is a supported one.
      return visit(s, e, [&](uint64_t, uint64_t v) { return (v & mask) == 0; });
    }
    // Linux steps xas_next() over every index; any hole or mismatch ends the walk.
    uint64_t expected = s;
    const bool all = visit(s, e, [&](uint64_t idx, uint64_t v) {
      if (idx != expected || (v & mask) != attrs) return false;
      ++expected;
      return true;
    });
    return all && expected == e;
  }

  Status reserve(GfnRange r) override {
    // KVM calls xa_reserve() once per gfn (§5 step 2). Indexes already holding an entry are left
    // alone (xa_reserve is a cmpxchg from NULL).
    std::vector<std::pair<uint64_t, uint64_t>>
        reserved;  // runs reserved by this call, for rollback
    for (uint64_t i = r.start.value(); i < r.end.value(); ++i) {
      ++work_.lookups;
      Slot sl = create_slot(i);
      if (*sl.slot != 0) continue;
      put(sl, kZeroEntry);
      if (!reserved.empty() && reserved.back().second == i) {
        reserved.back().second = i + 1;
      } else {
        reserved.emplace_back(i, i + 1);
      }
      if (limit_ != 0 && host_bytes_ > limit_) {
        // The allocation for index i would have failed: undo this call's reservations. Erasing the
        // zero entries frees exactly the nodes they caused (delete + shrink reverse create +
        // expand).
        for (auto it = reserved.rbegin(); it != reserved.rend(); ++it) {
          for (uint64_t j = it->second; j-- > it->first;) erase(j);
        }
        return Errno::kENOMEM;
      }
    }
    return {};
  }

  void store(GfnRange r, uint64_t attrs) override {
    assert(attrs < (uint64_t{1} << 63));  // xa_mk_value() range
    // KVM loops xa_store() over every gfn (§5 step 4); a NULL entry erases.
    for (uint64_t i = r.start.value(); i < r.end.value(); ++i) {
      ++work_.lookups;
      if (attrs == 0) {
        erase(i);
      } else {
        put(create_slot(i), mk_value(attrs));
      }
    }
  }

  void for_each_run(GfnRange r, const RunFn& fn) const override {
    if (r.empty()) return;
    ++work_.lookups;
    RunEmitter em(r.start.value(), r.end.value(), fn);
    visit(r.start.value(), r.end.value(), [&](uint64_t idx, uint64_t v) {
      em.add(idx, idx + 1, v);
      return true;
    });
    em.finish();
  }

  uint64_t host_bytes() const override { return host_bytes_; }
  const AttrStoreWork& work() const override { return work_; }

  void describe_stats(StatVisitor& v) const override {
    v.counter("lookups", work_.lookups, "walks", "xarray walks from the root (one per gfn set)");
    v.counter("entries_written", work_.entries_written, "entries",
              "xarray slots written (xa_reserve zero entries, values, erasures)");
    v.counter("entries_visited", work_.entries_visited, "entries",
              "xarray entries stepped over by range checks and run walks");
    v.counter("nodes_allocated", work_.nodes_allocated, "nodes", "xa_node allocations");
    v.counter("nodes_freed", work_.nodes_freed, "nodes", "xa_node frees (node became empty)");
    v.counter("host_bytes", host_bytes_, "bytes", "host memory held by xa_nodes at the end");
  }

 private:
  struct Node {
    uint8_t shift = 0;   // index bits below this node's slots: 0 for leaves
    uint8_t offset = 0;  // slot in the parent
    uint8_t count = 0;   // non-NULL slots (values, zero entries, children)
    uint8_t nr_values = 0;
    Node* parent = nullptr;
    std::array<uint64_t, kXaChunkSize> slots{};
  };
  struct Slot {
    uint64_t* slot;
    Node* node;  // nullptr when the slot is xa_head
  };

  static constexpr uint64_t kZeroEntry = (257u << 2) | 2;  // xa_mk_internal(257)
  static bool is_value(uint64_t e) { return (e & 1) != 0; }
  static bool is_node(uint64_t e) { return (e & 3) == 2 && e > 4096; }
  static uint64_t mk_value(uint64_t v) { return (v << 1) | 1; }
  static uint64_t attrs_of(uint64_t e) { return is_value(e) ? e >> 1 : 0; }
  static Node* to_node(uint64_t e) {
    return reinterpret_cast<Node*>(static_cast<uintptr_t>(e - 2));
  }
  static uint64_t mk_node(Node* n) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(n)) | 2;
  }
  // Largest index below a node with this shift.
  static uint64_t node_max(unsigned shift) {
    return shift + kXaChunkShift >= 64 ? ~uint64_t{0}
                                       : (uint64_t{1} << (shift + kXaChunkShift)) - 1;
  }
  // Shift of the smallest root that reaches index (index > 0).
  static unsigned shift_for(uint64_t index) {
    unsigned s = 0;
    while ((index >> s) >= kXaChunkSize) s += kXaChunkShift;
    return s;
  }

  Node* alloc_node(unsigned shift, Node* parent, unsigned offset) {
    Node* n = new Node;
    n->shift = static_cast<uint8_t>(shift);
    n->parent = parent;
    n->offset = static_cast<uint8_t>(offset);
    ++work_.nodes_allocated;
    host_bytes_ += kXaNodeBytes;
    return n;
  }
  void free_node(Node* n) {
    delete n;
    ++work_.nodes_freed;
    host_bytes_ -= kXaNodeBytes;
  }
  void free_subtree(uint64_t e) {
    if (!is_node(e)) return;
    Node* n = to_node(e);
    if (n->shift != 0) {
      for (uint64_t c : n->slots) free_subtree(c);
    }
    delete n;
  }

  uint64_t load(uint64_t index) const {
    if (!is_node(head_)) return index == 0 ? head_ : 0;
    const Node* n = to_node(head_);
    if (index > node_max(n->shift)) return 0;
    for (;;) {
      const uint64_t e = n->slots[(index >> n->shift) & (kXaChunkSize - 1)];
      if (n->shift == 0 || !is_node(e)) return e;
      n = to_node(e);
    }
  }

  // xas_expand + xas_create: the slot for index, allocating missing nodes.
  Slot create_slot(uint64_t index) {
    if (!is_node(head_)) {
      if (index == 0) return {&head_, nullptr};
      if (head_ == 0) {
        head_ = mk_node(alloc_node(shift_for(index), nullptr, 0));
      } else {
        Node* n = alloc_node(0, nullptr, 0);  // the old head entry moves to slot 0
        n->slots[0] = head_;
        n->count = 1;
        n->nr_values = is_value(head_) ? 1 : 0;
        head_ = mk_node(n);
      }
    }
    Node* root = to_node(head_);
    while (index > node_max(root->shift)) {
      Node* n = alloc_node(root->shift + kXaChunkShift, nullptr, 0);
      n->slots[0] = head_;
      n->count = 1;
      root->parent = n;
      root->offset = 0;
      head_ = mk_node(n);
      root = n;
    }
    Node* n = root;
    for (;;) {
      const unsigned off = (index >> n->shift) & (kXaChunkSize - 1);
      if (n->shift == 0) return {&n->slots[off], n};
      if (n->slots[off] == 0) {
        n->slots[off] = mk_node(alloc_node(n->shift - kXaChunkShift, n, off));
        ++n->count;
      }
      n = to_node(n->slots[off]);
    }
  }

  // Writes a non-NULL entry into a slot found by create_slot.
  void put(Slot sl, uint64_t entry) {
    const uint64_t old = *sl.slot;
    *sl.slot = entry;
    ++work_.entries_written;
    if (sl.node == nullptr) return;
    if (old == 0) ++sl.node->count;
    sl.node->nr_values = static_cast<uint8_t>(sl.node->nr_values + is_value(entry) - is_value(old));
  }

  // xa_erase / xa_store(NULL).
  void erase(uint64_t index) {
    if (!is_node(head_)) {
      if (index == 0 && head_ != 0) {
        head_ = 0;
        ++work_.entries_written;
      }
      return;
    }
    Node* n = to_node(head_);
    if (index > node_max(n->shift)) return;
    for (;;) {
      const unsigned off = (index >> n->shift) & (kXaChunkSize - 1);
      const uint64_t e = n->slots[off];
      if (e == 0) return;
      if (n->shift != 0) {
        n = to_node(e);
        continue;
      }
      n->slots[off] = 0;
      ++work_.entries_written;
      --n->count;
      if (is_value(e)) --n->nr_values;
      delete_node(n);
      return;
    }
  }

  // xas_delete_node: free nodes that became empty, upward; shrink if the root was reached.
  void delete_node(Node* n) {
    while (n->count == 0) {
      Node* parent = n->parent;
      const unsigned off = n->offset;
      free_node(n);
      if (parent == nullptr) {
        head_ = 0;
        return;
      }
      parent->slots[off] = 0;
      --parent->count;
      n = parent;
    }
    if (n->parent == nullptr) shrink();
  }

  // xas_shrink: while the root holds only slot 0, make that entry the head.
  void shrink() {
    Node* n = to_node(head_);
    for (;;) {
      if (n->count != 1) return;
      const uint64_t e = n->slots[0];
      if (e == 0) return;
      if (!is_node(e) && n->shift != 0) return;
      head_ = e;
      free_node(n);
      if (!is_node(e)) return;
      n = to_node(e);
      n->parent = nullptr;
      n->offset = 0;
    }
  }

  // Calls f(index, attrs) for every value entry in [s, e), ascending, until f returns false.
  // Returns false iff f did. Zero entries (reserved, never stored) read as absent.
  template <class F>
  bool visit(uint64_t s, uint64_t e, F&& f) const {
    if (head_ == 0) return true;
    if (!is_node(head_)) {
      if (s != 0) return true;
      ++work_.entries_visited;
      return !is_value(head_) || f(uint64_t{0}, attrs_of(head_));
    }
    return visit_node(to_node(head_), 0, s, e - 1, f);
  }
  template <class F>
  bool visit_node(const Node* n, uint64_t base, uint64_t first, uint64_t last, F& f) const {
    const uint64_t lo = first > base ? (first - base) >> n->shift : 0;
    const uint64_t hi = std::min<uint64_t>((last - base) >> n->shift, kXaChunkSize - 1);
    for (uint64_t off = lo; off <= hi; ++off) {
      const uint64_t e = n->slots[off];
      if (e == 0) continue;
      const uint64_t child_base = base + (off << n->shift);
      if (n->shift == 0) {
        ++work_.entries_visited;
        if (is_value(e) && !f(child_base, attrs_of(e))) return false;
      } else if (is_node(e)) {
        if (!visit_node(to_node(e), child_base, first, last, f)) return false;
      }
    }
    return true;
  }

  uint64_t head_ = 0;  // xa_head: NULL, the entry for index 0, or the root node
  uint64_t limit_;
  uint64_t host_bytes_ = 0;
  mutable AttrStoreWork work_;
};

// ---- range ---------------------------------------------------------------------------------
// Non-overlapping runs [start, end) of equal non-zero attributes; touching runs never share attrs.
class RangeStore final : public MemAttributeStore {
 public:
  explicit RangeStore(uint64_t limit) : limit_(limit) {}

  AttrStoreKind kind() const override { return AttrStoreKind::kRange; }

  uint64_t get(Gfn gfn) const override {
    ++work_.lookups;
    auto it = segs_.upper_bound(gfn.value());
    if (it == segs_.begin()) return 0;
    --it;
    return gfn.value() < it->second.end ? it->second.attrs : 0;
  }

  bool range_has(GfnRange r, uint64_t mask, uint64_t attrs) const override {
    if (attrs & ~mask) return false;
    if (r.empty()) return true;
    ++work_.lookups;
    const uint64_t s = r.start.value(), e = r.end.value();
    uint64_t pos = s;
    for (auto it = first_touching(s); it != segs_.end() && it->first < e; ++it) {
      ++work_.entries_visited;
      if (it->second.end <= s) continue;
      if (attrs != 0 && it->first > pos) return false;  // a hole reads as 0
      if ((it->second.attrs & mask) != attrs) return false;
      pos = it->second.end;
    }
    return attrs == 0 || pos >= e;
  }

  Status reserve(GfnRange r) override {
    // A store splits at most one run at each end: worst case two more tree nodes.
    if (r.empty() || limit_ == 0) return {};
    if (host_bytes() + 2 * kRangeNodeBytes > limit_) return Errno::kENOMEM;
    return {};
  }

  void store(GfnRange r, uint64_t attrs) override {
    if (r.empty()) return;
    ++work_.lookups;
    const uint64_t s = r.start.value(), e = r.end.value();
    uint64_t ns = s, ne = e;
    std::optional<std::pair<uint64_t, Seg>> left, right;
    auto it = first_touching(s);
    while (it != segs_.end() && it->first <= e) {
      const uint64_t a = it->first, b = it->second.end, v = it->second.attrs;
      ++work_.entries_visited;
      if (b < s) {
        ++it;
        continue;
      }
      if (b == s || a == e) {  // touches r without overlapping: merge only if equal
        if (v == attrs) {
          ns = std::min(ns, a);
          ne = std::max(ne, b);
          it = erase(it);
        } else if (a == e) {
          break;
        } else {
          ++it;
        }
        continue;
      }
      if (a < s) {
        if (v == attrs) {
          ns = a;
        } else {
          left.emplace(a, Seg{s, v});
        }
      }
      if (b > e) {
        if (v == attrs) {
          ne = b;
        } else {
          right.emplace(e, Seg{b, v});
        }
      }
      it = erase(it);
    }
    if (left) insert(left->first, left->second);
    if (right) insert(right->first, right->second);
    if (attrs != 0) insert(ns, Seg{ne, attrs});
    host_bytes_ = segs_.size() * kRangeNodeBytes;
  }

  void for_each_run(GfnRange r, const RunFn& fn) const override {
    if (r.empty()) return;
    ++work_.lookups;
    const uint64_t s = r.start.value(), e = r.end.value();
    RunEmitter em(s, e, fn);
    for (auto it = first_touching(s); it != segs_.end() && it->first < e; ++it) {
      ++work_.entries_visited;
      if (it->second.end <= s) continue;
      em.add(std::max(it->first, s), std::min(it->second.end, e), it->second.attrs);
    }
    em.finish();
  }

  uint64_t host_bytes() const override { return host_bytes_; }
  const AttrStoreWork& work() const override { return work_; }

  void describe_stats(StatVisitor& v) const override {
    v.counter("lookups", work_.lookups, "searches", "range-tree searches");
    v.counter("entries_visited", work_.entries_visited, "ranges",
              "ranges stepped over by sets, range checks and run walks");
    v.counter("ranges_written", work_.ranges_written, "ranges", "ranges inserted or erased");
    v.counter("nodes_allocated", work_.nodes_allocated, "nodes", "range-tree node allocations");
    v.counter("nodes_freed", work_.nodes_freed, "nodes", "range-tree node frees");
    v.counter("host_bytes", host_bytes_, "bytes",
              "host memory held by range-tree nodes at the end");
  }

 private:
  struct Seg {
    uint64_t end;
    uint64_t attrs;
  };
  using Map = std::map<uint64_t, Seg>;

  // The run ending at s or containing it if any, else the first run starting at or after s.
  Map::const_iterator first_touching(uint64_t s) const {
    auto it = segs_.lower_bound(s);
    if (it != segs_.begin() && std::prev(it)->second.end >= s) --it;
    return it;
  }
  Map::iterator first_touching(uint64_t s) {
    auto it = segs_.lower_bound(s);
    if (it != segs_.begin() && std::prev(it)->second.end >= s) --it;
    return it;
  }
  Map::iterator erase(Map::iterator it) {
    ++work_.ranges_written;
    ++work_.nodes_freed;
    return segs_.erase(it);
  }
  void insert(uint64_t start, Seg seg) {
    ++work_.ranges_written;
    ++work_.nodes_allocated;
    segs_.emplace(start, seg);
  }

  Map segs_;
  uint64_t limit_;
  uint64_t host_bytes_ = 0;
  mutable AttrStoreWork work_;
};

}  // namespace

std::unique_ptr<MemAttributeStore> make_attr_store(AttrStoreKind kind, uint64_t max_host_bytes) {
  switch (kind) {
    case AttrStoreKind::kXarray:
      return std::make_unique<XarrayStore>(max_host_bytes);
    case AttrStoreKind::kRange:
      return std::make_unique<RangeStore>(max_host_bytes);
  }
  return nullptr;
}

}  // namespace cvmsim::kvm
