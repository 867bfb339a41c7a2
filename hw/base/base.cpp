#include <algorithm>
#include <cstdio>
#include <string>

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "hw/base/pattern.h"
#include "hw/base/result.h"

namespace cvmsim {

namespace {
std::string hex(const char* prefix, uint64_t v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s0x%llx", prefix, static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

std::string to_string(Gpa a) {
  return hex("gpa:", a.value());
}
std::string to_string(Gfn f) {
  return hex("gfn:", f.value());
}
std::string to_string(Hpa a) {
  return hex("hpa:", a.value());
}
std::string to_string(Pfn f) {
  return hex("pfn:", f.value());
}
std::string to_string(Hva a) {
  return hex("hva:", a.value());
}
std::string to_string(Iova a) {
  return hex("iova:", a.value());
}
std::string to_string(GmemOffset a) {
  return hex("gmem+", a.value());
}

std::optional<PageSize> parse_page_size(std::string_view s) {
  if (s == "4K" || s == "4KiB" || s == "4k") return PageSize::k4K;
  if (s == "2M" || s == "2MiB" || s == "2m") return PageSize::k2M;
  if (s == "1G" || s == "1GiB" || s == "1g") return PageSize::k1G;
  return std::nullopt;
}

namespace {
struct ErrnoName {
  Errno e;
  std::string_view name;
};
constexpr ErrnoName kErrnoNames[] = {
    {Errno::kEPERM, "EPERM"},           {Errno::kENOENT, "ENOENT"},
    {Errno::kEINTR, "EINTR"},           {Errno::kEIO, "EIO"},
    {Errno::kENXIO, "ENXIO"},           {Errno::kE2BIG, "E2BIG"},
    {Errno::kEBADF, "EBADF"},           {Errno::kEAGAIN, "EAGAIN"},
    {Errno::kENOMEM, "ENOMEM"},         {Errno::kEACCES, "EACCES"},
    {Errno::kEFAULT, "EFAULT"},         {Errno::kEBUSY, "EBUSY"},
    {Errno::kEEXIST, "EEXIST"},         {Errno::kEXDEV, "EXDEV"},
    {Errno::kENODEV, "ENODEV"},         {Errno::kEINVAL, "EINVAL"},
    {Errno::kENOSPC, "ENOSPC"},         {Errno::kESPIPE, "ESPIPE"},
    {Errno::kERANGE, "ERANGE"},         {Errno::kENOSYS, "ENOSYS"},
    {Errno::kEOPNOTSUPP, "EOPNOTSUPP"}, {Errno::kEFBIG, "EFBIG"},
    {Errno::kEOVERFLOW, "EOVERFLOW"},   {Errno::kEHWPOISON, "EHWPOISON"},
    {Errno::kEMFILE, "EMFILE"},         {Errno::kENOTTY, "ENOTTY"},
};
}  // namespace

std::string_view errno_name(Errno e) {
  for (const auto& n : kErrnoNames)
    if (n.e == e) return n.name;
  return "E?";
}

bool parse_errno(std::string_view name, Errno* out) {
  for (const auto& n : kErrnoNames) {
    if (n.name == name) {
      *out = n.e;
      return true;
    }
  }
  return false;
}

std::string Error::to_string() const {
  if (is_errno()) return std::string(errno_name(errno_value()));
  const ArchStatus s = status();
  const char* dom = s.domain == StatusDomain::kTdx    ? "tdx"
                    : s.domain == StatusDomain::kSnp  ? "snp"
                    : s.domain == StatusDomain::kPkvm ? "pkvm"
                                                      : "cpu";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s:0x%016llx", dom, static_cast<unsigned long long>(s.code));
  return buf;
}

std::string_view name_of(PatternKind k) {
  switch (k) {
    case PatternKind::kValue:
      return "value";
    case PatternKind::kSeeded:
      return "seeded";
    case PatternKind::kZero:
      return "zero";
  }
  return "?";
}

std::optional<PatternKind> parse_pattern_kind(std::string_view s) {
  if (s == "value") return PatternKind::kValue;
  if (s == "seeded") return PatternKind::kSeeded;
  if (s == "zero") return PatternKind::kZero;
  return std::nullopt;
}

void fill_pattern(PatternKind k, uint64_t value, uint64_t addr, std::span<uint8_t> out) {
  // The same bytes as pattern_byte at each address, with the kind switched on once rather than
  // per byte (every guest store fills its bytes here).
  switch (k) {
    case PatternKind::kValue:
      for (size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<uint8_t>(value >> (8 * ((addr + i) & 7)));
      return;
    case PatternKind::kSeeded: {
      // (addr + i) * K, stepped by K: one multiplication fewer per byte, same value mod 2^64.
      constexpr uint64_t kStep = 0x9e3779b97f4a7c15ull;
      uint64_t m = addr * kStep;
      for (size_t i = 0; i < out.size(); ++i, m += kStep)
        out[i] = static_cast<uint8_t>(mix64(value ^ m) >> 56);
      return;
    }
    case PatternKind::kZero:
      std::fill(out.begin(), out.end(), uint8_t{0});
      return;
  }
  for (size_t i = 0; i < out.size(); ++i) out[i] = pattern_byte(k, value, addr + i);
}

std::optional<size_t> check_pattern(PatternKind k, uint64_t value, uint64_t addr,
                                    std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i)
    if (data[i] != pattern_byte(k, value, addr + i)) return i;
  return std::nullopt;
}

}  // namespace cvmsim
