#include "models/guest/workload.h"

#include <cmath>
#include <cstdio>
#include <utility>

#include "hw/base/page_size.h"
#include "models/guest/page_permutation.h"
#include "models/guest/trace_program.h"
#include "models/guest/zipf.h"
#include "models/kvm/uapi.h"

namespace cvmsim {

std::string_view name_of(WorkloadKind k) {
  switch (k) {
    case WorkloadKind::kSequential:
      return "sequential";
    case WorkloadKind::kStrided:
      return "strided";
    case WorkloadKind::kUniform:
      return "uniform";
    case WorkloadKind::kZipf:
      return "zipf";
    case WorkloadKind::kHotCold:
      return "hotcold";
    case WorkloadKind::kTrace:
      return "trace";
    case WorkloadKind::kConvert:
      return "convert";
  }
  return "?";
}

std::optional<WorkloadKind> parse_workload_kind(std::string_view s) {
  for (auto k :
       {WorkloadKind::kSequential, WorkloadKind::kStrided, WorkloadKind::kUniform,
        WorkloadKind::kZipf, WorkloadKind::kHotCold, WorkloadKind::kTrace, WorkloadKind::kConvert})
    if (name_of(k) == s) return k;
  return std::nullopt;
}

std::string_view name_of(TraceFormat f) {
  switch (f) {
    case TraceFormat::kAuto:
      return "auto";
    case TraceFormat::kCvmsim:
      return "cvmsim";
    case TraceFormat::kLackey:
      return "lackey";
  }
  return "?";
}

std::optional<TraceFormat> parse_trace_format(std::string_view s) {
  for (auto f : {TraceFormat::kAuto, TraceFormat::kCvmsim, TraceFormat::kLackey})
    if (name_of(f) == s) return f;
  return std::nullopt;
}

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
std::string num(uint64_t v) {
  return std::to_string(v);
}

bool in_closed(double v, double lo, double hi) {
  return std::isfinite(v) && v >= lo && v <= hi;
}

// ---- Offset generators: each returns the byte offset of the next access from `base`. ----

// sequential and strided: offset k is (k * step) mod len, moved down to `last` if it would
// cross the used length (only when step is not a multiple of the access size).
class StridedGen {
 public:
  StridedGen(uint64_t step, uint64_t len, uint32_t size)
      : step_(step % len), len_(len), last_(len - size) {}
  uint64_t next(Rng&) {
    const uint64_t o = off_ < last_ ? off_ : last_;
    off_ += step_;
    if (off_ >= len_) off_ -= len_;
    return o;
  }

 private:
  uint64_t off_ = 0;
  uint64_t step_;
  uint64_t len_;
  uint64_t last_;
};

class UniformGen {
 public:
  UniformGen(uint64_t slots, uint32_t size) : slots_(slots), size_(size) {}
  uint64_t next(Rng& rng) { return rng.below(slots_) * size_; }

 private:
  uint64_t slots_;
  uint32_t size_;
};

// Shared by zipf and hotcold: item index -> page (optionally scattered) -> slot in the page.
class PagePlacer {
 public:
  PagePlacer(uint64_t pages, uint32_t size, bool scatter, Rng& rng)
      : slots_per_page_(kPageBytes / size), size_(size), scatter_(scatter) {
    if (scatter) perm_ = PagePermutation(pages, rng);
  }
  uint64_t place(uint64_t item, Rng& rng) const {
    const uint64_t page = scatter_ ? perm_(item) : item;
    uint64_t off = page << kPageShift;
    if (slots_per_page_ > 1) off += rng.below(slots_per_page_) * size_;
    return off;
  }

 private:
  PagePermutation perm_;
  uint64_t slots_per_page_;
  uint32_t size_;
  bool scatter_;
};

class ZipfGen {
 public:
  ZipfGen(uint64_t pages, double theta, uint32_t size, bool scatter, Rng& rng)
      : zipf_(pages, theta), placer_(pages, size, scatter, rng) {}
  uint64_t next(Rng& rng) { return placer_.place(zipf_.sample(rng) - 1, rng); }

 private:
  ZipfSampler zipf_;
  PagePlacer placer_;
};

class HotColdGen {
 public:
  HotColdGen(uint64_t pages, uint64_t hot, double p_hot, uint32_t size, bool scatter, Rng& rng)
      : hot_(hot), cold_(pages - hot), p_hot_(p_hot), placer_(pages, size, scatter, rng) {}
  uint64_t next(Rng& rng) {
    const uint64_t item = rng.uniform01() < p_hot_ ? rng.below(hot_) : hot_ + rng.below(cold_);
    return placer_.place(item, rng);
  }

 private:
  uint64_t hot_;
  uint64_t cold_;
  double p_hot_;
  PagePlacer placer_;
};

// One class per generator so that next() is the only virtual call on the hot path.
template <class Gen>
class SyntheticProgram final : public GuestProgram {
 public:
  SyntheticProgram(const WorkloadSpec& s, Rng rng, Gen gen)
      : rng_(rng),
        gen_(std::move(gen)),
        base_(s.base),
        remaining_(s.ops),
        compute_cycles_(s.compute_cycles_between),
        read_fraction_(s.read_fraction),
        value_(s.store_value),
        size_(s.access_size),
        pattern_(s.store_pattern),
        verify_(s.verify_loads) {
    const uint64_t computes = compute_cycles_ != 0 ? s.ops - 1 : 0;
    if (__builtin_add_overflow(s.ops, computes, &expected_)) expected_ = ~uint64_t{0};
  }

  bool next(GuestOp& op) override {
    if (compute_due_) {
      compute_due_ = false;
      op = GuestOp::compute(compute_cycles_);
      return true;
    }
    if (remaining_ == 0) return false;
    --remaining_;
    // Draw order (part of the determinism contract): load/store, then the offset.
    const bool load =
        read_fraction_ >= 1.0 || (read_fraction_ > 0.0 && rng_.uniform01() < read_fraction_);
    const Gpa gpa = base_ + gen_.next(rng_);
    if (load) {
      op = GuestOp{.kind = OpKind::kLoad,
                   .gpa = gpa,
                   .size = size_,
                   .pattern = pattern_,
                   .value = value_,
                   .verify = verify_};
    } else {
      op = GuestOp::store(gpa, size_, value_, pattern_);
    }
    compute_due_ = compute_cycles_ != 0 && remaining_ != 0;
    return true;
  }

  uint64_t expected_ops() const override { return expected_; }

 private:
  Rng rng_;
  Gen gen_;
  Gpa base_;
  uint64_t remaining_;
  uint64_t compute_cycles_;
  double read_fraction_;
  uint64_t value_;
  uint64_t expected_ = 0;
  uint32_t size_;
  PatternKind pattern_;
  bool verify_;
  bool compute_due_ = false;
};

// Conversion round trips (kind convert): four guest operations per round trip.
class ConvertProgram final : public GuestProgram {
 public:
  explicit ConvertProgram(const WorkloadSpec& s)
      : base_(s.base),
        pages_(s.footprint_bytes >> kPageShift),
        remaining_(s.ops),
        size_(s.access_size),
        pattern_(s.store_pattern),
        value_(s.store_value) {}
  bool next(GuestOp& op) override {
    if (phase_ == 0) {
      if (remaining_ == 0) return false;
      --remaining_;
      page_ = base_ + (done_++ % pages_) * kPageBytes;
    }
    switch (phase_) {
      case 0:
        op = map_gpa_range(true);
        break;
      case 1:
        op = GuestOp::store(page_, size_, value_, pattern_);
        break;
      case 2:
        op = map_gpa_range(false);
        break;
      default:
        op = GuestOp::store(page_, size_, value_ + 1, pattern_);
        break;
    }
    phase_ = (phase_ + 1) & 3;
    return true;
  }
  uint64_t expected_ops() const override { return 4 * (remaining_ + done_); }

 private:
  GuestOp map_gpa_range(bool to_private) const {
    GuestOp op;
    op.kind = OpKind::kHypercall;
    op.nr = kvm::KVM_HC_MAP_GPA_RANGE;
    op.args[0] = page_.value();
    op.args[1] = 1;
    op.args[2] = to_private ? kvm::KVM_MAP_GPA_RANGE_ENCRYPTED : kvm::KVM_MAP_GPA_RANGE_DECRYPTED;
    return op;
  }
  Gpa base_;
  uint64_t pages_, remaining_, done_ = 0;
  uint32_t size_;
  PatternKind pattern_;
  uint64_t value_;
  Gpa page_{};
  unsigned phase_ = 0;
};

template <class Gen>
MakeWorkloadResult wrap(const WorkloadSpec& s, Rng rng, Gen gen) {
  return {std::make_unique<SyntheticProgram<Gen>>(s, rng, std::move(gen)), {}};
}

}  // namespace

std::string check_workload_spec(const WorkloadSpec& s) {
  if (static_cast<unsigned>(s.kind) > static_cast<unsigned>(WorkloadKind::kConvert))
    return "kind: unknown workload kind " + num(uint64_t{static_cast<unsigned>(s.kind)});
  if (static_cast<unsigned>(s.store_pattern) > static_cast<unsigned>(PatternKind::kZero))
    return "store_pattern: unknown pattern " +
           num(uint64_t{static_cast<unsigned>(s.store_pattern)});
  if (s.footprint_bytes == 0) return "footprint_bytes: must be > 0";
  if (s.footprint_bytes - 1 > ~uint64_t{0} - s.base.value())
    return "footprint_bytes: base + footprint_bytes goes past the top of the 64-bit address space";

  if (s.kind == WorkloadKind::kTrace) {
    if (s.trace_path.empty()) return "trace_path: required for kind trace";
    if (static_cast<unsigned>(s.trace_format) > static_cast<unsigned>(TraceFormat::kLackey))
      return "trace_format: unknown format " + num(uint64_t{static_cast<unsigned>(s.trace_format)});
    if (s.trace_repeat == 0 && s.ops == 0)
      return "trace_repeat: 0 (repeat until `ops` memory ops) needs ops > 0";
    return {};
  }

  if (s.access_size < 1 || s.access_size > kMaxAccessBytes)
    return "access_size: must be in 1.." + num(uint64_t{kMaxAccessBytes}) + ", got " +
           num(uint64_t{s.access_size});
  if (s.footprint_bytes < s.access_size)
    return "footprint_bytes: must be at least access_size (" + num(uint64_t{s.access_size}) +
           "), got " + num(s.footprint_bytes);
  if (s.ops == 0) return "ops: must be >= 1";
  if (!in_closed(s.read_fraction, 0.0, 1.0))
    return "read_fraction: must be in [0, 1], got " + num(s.read_fraction);

  switch (s.kind) {
    case WorkloadKind::kStrided:
      if (s.stride_bytes == 0) return "stride_bytes: must be >= 1";
      break;
    case WorkloadKind::kZipf:
      if (!in_closed(s.zipf_theta, 0.0, 100.0))
        return "zipf_theta: must be in [0, 100], got " + num(s.zipf_theta);
      if (s.footprint_bytes < kPageBytes)
        return "footprint_bytes: zipf needs at least one whole 4 KiB page, got " +
               num(s.footprint_bytes);
      break;
    case WorkloadKind::kHotCold:
      if (!(std::isfinite(s.hot_fraction) && s.hot_fraction > 0.0 && s.hot_fraction < 1.0))
        return "hot_fraction: must be in (0, 1), got " + num(s.hot_fraction);
      if (!in_closed(s.hot_probability, 0.0, 1.0))
        return "hot_probability: must be in [0, 1], got " + num(s.hot_probability);
      if (s.footprint_bytes < 2 * kPageBytes)
        return "footprint_bytes: hotcold needs at least two whole 4 KiB pages, got " +
               num(s.footprint_bytes);
      break;
    case WorkloadKind::kConvert:
      if (s.footprint_bytes < kPageBytes || (s.base.value() & (kPageBytes - 1)))
        return "footprint_bytes: convert needs a 4 KiB-aligned base and at least one whole page, "
               "got " +
               num(s.footprint_bytes);
      break;
    default:
      break;
  }
  return {};
}

MakeWorkloadResult make_workload(const WorkloadSpec& s, Rng rng) {
  if (std::string err = check_workload_spec(s); !err.empty()) return {nullptr, std::move(err)};

  const uint32_t size = s.access_size;
  switch (s.kind) {
    case WorkloadKind::kSequential:
    case WorkloadKind::kStrided: {
      const uint64_t len = s.footprint_bytes / size * size;
      const uint64_t step = s.kind == WorkloadKind::kSequential ? size : s.stride_bytes;
      return wrap(s, rng, StridedGen(step, len, size));
    }
    case WorkloadKind::kUniform:
      return wrap(s, rng, UniformGen(s.footprint_bytes / size, size));
    case WorkloadKind::kZipf: {
      const uint64_t pages = s.footprint_bytes >> kPageShift;
      // Build the generator first: it draws the permutation key from `rng`, and argument
      // evaluation order would otherwise decide whether the program's copy sees those draws.
      ZipfGen gen(pages, s.zipf_theta, size, s.scatter_pages, rng);
      return wrap(s, rng, std::move(gen));
    }
    case WorkloadKind::kHotCold: {
      const uint64_t pages = s.footprint_bytes >> kPageShift;
      double h = std::round(s.hot_fraction * static_cast<double>(pages));
      h = std::fmin(std::fmax(h, 1.0), static_cast<double>(pages - 1));
      HotColdGen gen(pages, static_cast<uint64_t>(h), s.hot_probability, size, s.scatter_pages,
                     rng);
      return wrap(s, rng, std::move(gen));
    }
    case WorkloadKind::kTrace: {
      auto prog = std::make_unique<TraceProgram>(s);
      std::string err(prog->error());
      if (err.empty() && s.trace_validate) err = prog->dry_run();
      if (!err.empty()) return {nullptr, "trace_path: " + err};
      return {std::move(prog), {}};
    }
    case WorkloadKind::kConvert:
      return {std::make_unique<ConvertProgram>(s), {}};
  }
  return {nullptr, "kind: unknown workload kind"};
}

}  // namespace cvmsim
