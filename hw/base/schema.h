// Declarative configuration schema (CONVENTIONS.md: DRAMSys, Ramulator 2, VCML).
//
// Each configuration section is a plain struct whose members carry their defaults as
// initialisers, and which lists its fields once, in a `visit` member template:
//
//   struct TlbConfig {
//     uint64_t sets = 64;
//     template <class V> void visit(V& v) {
//       v(uint_field("sets", sets, "number of TLB sets").min(1).pow2());
//     }
//   };
//
// The same declaration drives the JSON reader (type, range and alignment checks, unknown keys,
// errors naming the JSON pointer), the writer of effective_config.json (every default resolved),
// `cvmsim list` and the reference table in docs/scenario-format.md.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "hw/base/cycles.h"

namespace cvmsim::config {

// Bad user input: names the JSON pointer and the reason.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string pointer, std::string reason)
      : std::runtime_error(pointer + ": " + reason),
        pointer_(std::move(pointer)),
        reason_(std::move(reason)) {}
  const std::string& pointer() const { return pointer_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string pointer_;
  std::string reason_;
};

template <class T>
struct FieldBase {
  std::string_view name;
  T* ref;
  std::string_view description;
};

// Unsigned integers, optionally given as strings with a size suffix ("4GiB", "2M", "0x1000").
struct UintField : FieldBase<uint64_t> {
  uint64_t lo = 0;
  uint64_t hi = UINT64_MAX;
  uint64_t align = 1;
  bool power_of_two = false;
  bool size = false;  // accept "4KiB"/"2MiB"/"1GiB"/"1TiB" suffixes
  std::string_view unit_name = "";
  UintField& min(uint64_t v) {
    lo = v;
    return *this;
  }
  UintField& max(uint64_t v) {
    hi = v;
    return *this;
  }
  UintField& aligned(uint64_t a) {
    align = a;
    return *this;
  }
  UintField& pow2() {
    power_of_two = true;
    return *this;
  }
  UintField& bytes() {
    size = true;
    unit_name = "bytes";
    return *this;
  }
  UintField& unit(std::string_view u) {
    unit_name = u;
    return *this;
  }
};
inline UintField uint_field(std::string_view n, uint64_t& r, std::string_view d) {
  return UintField{{n, &r, d}};
}

// A cost in core cycles (hw/base/cycles.h), read and written as an unsigned integer.
inline UintField cycles_field(std::string_view n, Cycles& c, std::string_view d) {
  return UintField{{n, &c.count_ref(), d}}.unit("cycles").max(1'000'000'000);
}

struct DoubleField : FieldBase<double> {
  double lo = -1e300;
  double hi = 1e300;
  std::string_view unit_name = "";
  DoubleField& range(double a, double b) {
    lo = a;
    hi = b;
    return *this;
  }
  DoubleField& unit(std::string_view u) {
    unit_name = u;
    return *this;
  }
};
inline DoubleField double_field(std::string_view n, double& r, std::string_view d) {
  return DoubleField{{n, &r, d}};
}

struct BoolField : FieldBase<bool> {};
inline BoolField bool_field(std::string_view n, bool& r, std::string_view d) {
  return {{n, &r, d}};
}

struct StringField : FieldBase<std::string> {
  bool non_empty = false;
  StringField& required_non_empty() {
    non_empty = true;
    return *this;
  }
};
inline StringField string_field(std::string_view n, std::string& r, std::string_view d) {
  return StringField{{n, &r, d}};
}

// An enumeration given by name. `names` lists every allowed value with its spelling.
template <class E>
struct EnumName {
  E value;
  std::string_view name;
};
template <class E>
struct EnumField : FieldBase<E> {
  std::span<const EnumName<E>> names;
};
template <class E, size_t N>
EnumField<E> enum_field(std::string_view n, E& r, const EnumName<E> (&names)[N],
                        std::string_view d) {
  return EnumField<E>{{n, &r, d}, std::span<const EnumName<E>>(names, N)};
}
// The same with a table built at run time (e.g. the registered VM types); it must outlive the
// field.
template <class E>
EnumField<E> enum_field(std::string_view n, E& r, std::span<const EnumName<E>> names,
                        std::string_view d) {
  return EnumField<E>{{n, &r, d}, names};
}
template <class E>
std::string_view enum_to_name(std::span<const EnumName<E>> names, E v) {
  for (const auto& n : names)
    if (n.value == v) return n.name;
  return "?";
}

// A nested section.
template <class S>
struct ObjectField : FieldBase<S> {};
template <class S>
ObjectField<S> object_field(std::string_view n, S& r, std::string_view d) {
  return ObjectField<S>{{n, &r, d}};
}

// An array of sections.
template <class S>
struct ArrayField : FieldBase<std::vector<S>> {
  size_t min_items = 0;
  size_t max_items = SIZE_MAX;
  ArrayField& items(size_t lo, size_t hi = SIZE_MAX) {
    min_items = lo;
    max_items = hi;
    return *this;
  }
};
template <class S>
ArrayField<S> array_field(std::string_view n, std::vector<S>& r, std::string_view d) {
  return ArrayField<S>{{n, &r, d}};
}

// Parses "4096", "0x1000", "4K", "4KiB", "2M", "1G", "1TiB" (binary multiples). Returns nullopt
// on anything else or on overflow.
std::optional<uint64_t> parse_size(std::string_view s);
// "4GiB" for exact binary multiples, else the decimal number.
std::string format_size(uint64_t v);

}  // namespace cvmsim::config
