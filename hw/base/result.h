// Errors inside the models are values (CONVENTIONS.md house rules): a Result carries either a
// value or an Error, and an Error is a Linux errno (with Linux's name and number) or an
// architecture status (a TDX module status code, an SNP instruction return code, a pKVM error).
#pragma once

#include <cassert>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace cvmsim {

// Linux errno values (include/uapi/asm-generic/errno-base.h, errno.h). Numbers match Linux so
// that traces and expectations read like strace output.
enum class Errno : int {
  kEPERM = 1,
  kENOENT = 2,
  kEINTR = 4,
  kEIO = 5,
  kENXIO = 6,
  kE2BIG = 7,
  kEBADF = 9,
  kEAGAIN = 11,
  kENOMEM = 12,
  kEACCES = 13,
  kEFAULT = 14,
  kEBUSY = 16,
  kEEXIST = 17,
  kEXDEV = 18,
  kENODEV = 19,
  kEINVAL = 22,
  kEMFILE = 24,
  kENOTTY = 25,
  kEFBIG = 27,
  kENOSPC = 28,
  kESPIPE = 29,
  kERANGE = 34,
  kENOSYS = 38,
  kEOVERFLOW = 75,
  kEOPNOTSUPP = 95,
  kEHWPOISON = 133,
};

std::string_view errno_name(Errno e);
// Parses "EINVAL" etc.; returns false if unknown.
bool parse_errno(std::string_view name, Errno* out);

// Which architecture a status code belongs to.
enum class StatusDomain : uint8_t { kTdx, kSnp, kPkvm, kCpu };

struct ArchStatus {
  StatusDomain domain;
  uint64_t code;
  bool operator==(const ArchStatus&) const = default;
};

class Error {
 public:
  Error(Errno e) : v_(e) {}  // NOLINT: implicit so `return Errno::kEINVAL;` reads like the kernel
  Error(ArchStatus s) : v_(s) {}  // NOLINT
  bool is_errno() const { return std::holds_alternative<Errno>(v_); }
  Errno errno_value() const { return std::get<Errno>(v_); }
  ArchStatus status() const { return std::get<ArchStatus>(v_); }
  bool operator==(const Error&) const = default;
  bool operator==(Errno e) const { return is_errno() && errno_value() == e; }
  std::string to_string() const;

 private:
  std::variant<Errno, ArchStatus> v_;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}       // NOLINT
  Result(Error e) : v_(std::in_place_index<1>, e) {}              // NOLINT
  Result(Errno e) : v_(std::in_place_index<1>, Error(e)) {}       // NOLINT
  Result(ArchStatus s) : v_(std::in_place_index<1>, Error(s)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const {
    assert(ok());
    return std::get<0>(v_);
  }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(e), ok_(false) {}       // NOLINT
  Result(Errno e) : err_(e), ok_(false) {}       // NOLINT
  Result(ArchStatus s) : err_(s), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return err_;
  }

 private:
  Error err_{Errno::kEINVAL};
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace cvmsim
