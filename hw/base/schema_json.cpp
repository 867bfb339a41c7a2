#include "hw/base/schema_json.h"

#include <charconv>
#include <limits>

namespace cvmsim::config {

std::optional<uint64_t> parse_size(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  std::from_chars_result r;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    r = std::from_chars(b + 2, e, v, 16);
  else
    r = std::from_chars(b, e, v, 10);
  if (r.ec != std::errc() || r.ptr == b || (r.ptr == b + 2 && s[1] == 'x')) return std::nullopt;
  std::string_view suffix(r.ptr, static_cast<size_t>(e - r.ptr));
  unsigned shift = 0;
  if (suffix.empty())
    shift = 0;
  else if (suffix == "K" || suffix == "KiB" || suffix == "k")
    shift = 10;
  else if (suffix == "M" || suffix == "MiB")
    shift = 20;
  else if (suffix == "G" || suffix == "GiB")
    shift = 30;
  else if (suffix == "T" || suffix == "TiB")
    shift = 40;
  else
    return std::nullopt;
  if (shift && v > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return v << shift;
}

std::string format_size(uint64_t v) {
  static constexpr struct {
    unsigned shift;
    const char* s;
  } kUnits[] = {{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}};
  for (const auto& u : kUnits)
    if (v != 0 && v % (uint64_t{1} << u.shift) == 0) return std::to_string(v >> u.shift) + u.s;
  return std::to_string(v);
}

std::string json_type_name(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer (" + j.dump() + ")";
    case Json::value_t::number_float:
      return "a number (" + j.dump() + ")";
    case Json::value_t::string:
      return "a string (" + short_dump(j) + ")";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

std::string short_dump(const Json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string pointer_join(const std::string& base, std::string_view key) {
  std::string k;
  for (char c : key) {
    if (c == '~')
      k += "~0";
    else if (c == '/')
      k += "~1";
    else
      k += c;
  }
  return base + "/" + k;
}

std::string pointer_join(const std::string& base, size_t index) {
  return base + "/" + std::to_string(index);
}

const Json* JsonReader::take(std::string_view name) {
  seen_.emplace(name);
  auto it = j_.find(std::string(name));
  if (it == j_.end()) return nullptr;
  return &*it;
}

void JsonReader::finish() const {
  for (auto it = j_.begin(); it != j_.end(); ++it) {
    if (seen_.count(it.key())) continue;
    std::string known;
    for (const auto& s : seen_) known += (known.empty() ? "" : ", ") + s;
    throw ConfigError(pointer_join(ptr_, it.key()),
                      "unknown key \"" + it.key() + "\"; known keys here: " + known);
  }
}

void JsonReader::operator()(const UintField& f) {
  const Json* v = take(f.name);
  if (!v) return;
  const std::string p = pointer_join(ptr_, f.name);
  uint64_t x = 0;
  const std::string want = f.size ? "a non-negative integer or a size string such as \"4KiB\""
                                  : "a non-negative integer";
  if (v->is_number_unsigned()) {
    x = v->get<uint64_t>();
  } else if (v->is_number_integer()) {
    throw ConfigError(p, "expected " + want + ", got " + json_type_name(*v));
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    if (d < 0 || d != std::floor(d) || d >= 1.8446744073709552e19)
      throw ConfigError(p, "expected " + want + ", got " + json_type_name(*v));
    x = static_cast<uint64_t>(d);
  } else if (v->is_string() && f.size) {
    auto parsed = parse_size(v->get<std::string>());
    if (!parsed) throw ConfigError(p, "expected " + want + ", got " + json_type_name(*v));
    x = *parsed;
  } else if (v->is_string()) {
    auto parsed = parse_size(v->get<std::string>());  // accept "0x..." for plain integers too
    if (!parsed || v->get<std::string>().find_first_of("KMGTk") != std::string::npos)
      throw ConfigError(p, "expected " + want + ", got " + json_type_name(*v));
    x = *parsed;
  } else {
    throw ConfigError(p, "expected " + want + ", got " + json_type_name(*v));
  }
  if (x < f.lo || x > f.hi) {
    std::string range = "[" + (f.size ? format_size(f.lo) : std::to_string(f.lo)) + ", " +
                        (f.hi == UINT64_MAX ? std::string("...")
                         : f.size           ? format_size(f.hi)
                                            : std::to_string(f.hi)) +
                        "]";
    throw ConfigError(p, "value " + std::to_string(x) + " is out of range " + range);
  }
  if (f.align > 1 && x % f.align != 0)
    throw ConfigError(p,
                      "value " + std::to_string(x) + " is not aligned to " + format_size(f.align));
  if (f.power_of_two && (x == 0 || (x & (x - 1)) != 0))
    throw ConfigError(p, "value " + std::to_string(x) + " is not a power of two");
  *f.ref = x;
}

void JsonReader::operator()(const DoubleField& f) {
  const Json* v = take(f.name);
  if (!v) return;
  const std::string p = pointer_join(ptr_, f.name);
  if (!v->is_number()) throw ConfigError(p, "expected a number, got " + json_type_name(*v));
  const double d = v->get<double>();
  if (!(d >= f.lo && d <= f.hi))
    throw ConfigError(p, "value " + v->dump() + " is out of range [" + Json(f.lo).dump() + ", " +
                             Json(f.hi).dump() + "]");
  *f.ref = d;
}

void JsonReader::operator()(const BoolField& f) {
  const Json* v = take(f.name);
  if (!v) return;
  if (!v->is_boolean())
    throw ConfigError(pointer_join(ptr_, f.name),
                      "expected true or false, got " + json_type_name(*v));
  *f.ref = v->get<bool>();
}

void JsonReader::operator()(const StringField& f) {
  const Json* v = take(f.name);
  if (!v) return;
  const std::string p = pointer_join(ptr_, f.name);
  if (!v->is_string()) throw ConfigError(p, "expected a string, got " + json_type_name(*v));
  *f.ref = v->get<std::string>();
  if (f.non_empty && f.ref->empty()) throw ConfigError(p, "must not be empty");
}

void JsonWriter::operator()(const UintField& f) {
  // Sizes are written as "4GiB"-style strings when exact, so the file reads like the input.
  if (f.size && *f.ref != 0 && format_size(*f.ref) != std::to_string(*f.ref))
    out[std::string(f.name)] = format_size(*f.ref);
  else
    out[std::string(f.name)] = *f.ref;
}

namespace {
std::string range_text(uint64_t lo, uint64_t hi, bool size) {
  auto fmt = [&](uint64_t v) { return size ? format_size(v) : std::to_string(v); };
  if (lo == 0 && hi == UINT64_MAX) return "";
  if (hi == UINT64_MAX) return ">= " + fmt(lo);
  return fmt(lo) + " .. " + fmt(hi);
}
}  // namespace

void JsonReader::operator()(const SectionSetField& f) {
  for (auto& n : f.ref->items)
    if (const Json* v = take(n.name)) n.section->read(*v, pointer_join(ptr_, n.name));
}

void JsonWriter::operator()(const SectionSetField& f) {
  for (const auto& n : f.ref->items) out[n.name] = n.section->write();
}

void Lister::operator()(const SectionSetField& f) {
  for (const auto& n : f.ref->items) {
    add(n.name, "object", "", "", n.description);
    n.section->list(path(n.name), *rows_);
  }
}

void Lister::operator()(const UintField& f) {
  std::string c = range_text(f.lo, f.hi, f.size);
  if (f.align > 1)
    c += (c.empty() ? "" : "; ") + std::string("multiple of ") + format_size(f.align);
  if (f.power_of_two) c += (c.empty() ? "" : "; ") + std::string("power of two");
  std::string type = f.size ? "size" : "integer";
  if (!f.unit_name.empty() && !f.size) type += " (" + std::string(f.unit_name) + ")";
  add(f.name, type, f.size ? format_size(*f.ref) : std::to_string(*f.ref), c, f.description);
}

void Lister::operator()(const DoubleField& f) {
  std::string c;
  if (f.lo > -1e300 || f.hi < 1e300) c = Json(f.lo).dump() + " .. " + Json(f.hi).dump();
  std::string type = "number";
  if (!f.unit_name.empty()) type += " (" + std::string(f.unit_name) + ")";
  add(f.name, type, Json(*f.ref).dump(), c, f.description);
}

void Lister::operator()(const BoolField& f) {
  add(f.name, "boolean", *f.ref ? "true" : "false", "", f.description);
}

void Lister::operator()(const StringField& f) {
  add(f.name, "string", Json(*f.ref).dump(), f.non_empty ? "non-empty" : "", f.description);
}

void apply_override(Json& doc, std::string_view assignment) {
  const std::string where = "--set " + std::string(assignment);
  const size_t eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw ConfigError(where, "expected PATH=VALUE, e.g. platform.tlb.ways=8");
  std::string path(assignment.substr(0, eq));
  const std::string text(assignment.substr(eq + 1));
  std::vector<std::string> parts;
  if (path[0] == '/') {
    size_t i = 1;
    while (i <= path.size()) {
      size_t j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      std::string part = path.substr(i, j - i);
      for (size_t k = 0; (k = part.find("~1", k)) != std::string::npos;) part.replace(k, 2, "/");
      for (size_t k = 0; (k = part.find("~0", k)) != std::string::npos;) part.replace(k, 2, "~");
      parts.push_back(part);
      i = j + 1;
    }
  } else {
    size_t i = 0;
    while (i <= path.size()) {
      size_t j = path.find('.', i);
      if (j == std::string::npos) j = path.size();
      parts.push_back(path.substr(i, j - i));
      i = j + 1;
    }
  }
  Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;

  Json* cur = &doc;
  std::string ptr;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (part.empty()) throw ConfigError(where, "empty path component");
    const bool last = i + 1 == parts.size();
    if (cur->is_array()) {
      size_t idx = 0;
      auto r = std::from_chars(part.data(), part.data() + part.size(), idx);
      if (r.ec != std::errc() || r.ptr != part.data() + part.size())
        throw ConfigError(where, ptr + " is an array; expected an index, got \"" + part + "\"");
      if (idx >= cur->size())
        throw ConfigError(where, ptr + " has " + std::to_string(cur->size()) + " item(s); index " +
                                     part + " is out of range");
      ptr = pointer_join(ptr, idx);
      cur = &(*cur)[idx];
    } else {
      if (cur->is_null()) *cur = Json::object();
      if (!cur->is_object())
        throw ConfigError(where, (ptr.empty() ? "/" : ptr) + " is not an object");
      ptr = pointer_join(ptr, part);
      cur = &(*cur)[part];
    }
    if (last) *cur = value;
  }
}

}  // namespace cvmsim::config
