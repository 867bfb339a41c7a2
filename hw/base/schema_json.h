// The three visitors over a schema (schema.h): read JSON with validation, write the effective
// configuration, and list every field for `cvmsim list` and the documentation.
#pragma once

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "hw/base/schema.h"

namespace cvmsim::config {

using Json = nlohmann::ordered_json;

std::string json_type_name(const Json& j);
std::string pointer_join(const std::string& base, std::string_view key);
std::string pointer_join(const std::string& base, size_t index);
std::string short_dump(const Json& j);

struct FieldRow;
struct SectionSetField;

// ---- Reading ----
template <class S>
void read_object(const Json& j, const std::string& ptr, S& s);

class JsonReader {
 public:
  JsonReader(const Json& j, std::string ptr) : j_(j), ptr_(std::move(ptr)) {}

  void operator()(const UintField& f);
  void operator()(const DoubleField& f);
  void operator()(const BoolField& f);
  void operator()(const StringField& f);

  template <class E>
  void operator()(const EnumField<E>& f) {
    const Json* v = take(f.name);
    if (!v) return;
    const std::string p = pointer_join(ptr_, f.name);
    if (!v->is_string())
      throw ConfigError(
          p, "expected a string naming one of " + allowed(f.names) + ", got " + json_type_name(*v));
    const auto s = v->template get<std::string>();
    for (const auto& n : f.names) {
      if (n.name == s) {
        *f.ref = n.value;
        return;
      }
    }
    throw ConfigError(p, "unknown value \"" + s + "\"; allowed: " + allowed(f.names));
  }

  template <class S>
  void operator()(const ObjectField<S>& f) {
    const Json* v = take(f.name);
    if (!v) return;
    read_object(*v, pointer_join(ptr_, f.name), *f.ref);
  }

  template <class S>
  void operator()(const ArrayField<S>& f) {
    const Json* v = take(f.name);
    if (!v) return;
    const std::string p = pointer_join(ptr_, f.name);
    if (!v->is_array()) throw ConfigError(p, "expected an array, got " + json_type_name(*v));
    if (v->size() < f.min_items)
      throw ConfigError(p, "expected at least " + std::to_string(f.min_items) + " item(s), got " +
                               std::to_string(v->size()));
    if (v->size() > f.max_items)
      throw ConfigError(p, "expected at most " + std::to_string(f.max_items) + " item(s), got " +
                               std::to_string(v->size()));
    f.ref->clear();
    for (size_t i = 0; i < v->size(); ++i) {
      S item{};
      read_object((*v)[i], pointer_join(p, i), item);
      f.ref->push_back(std::move(item));
    }
  }

  void operator()(const SectionSetField& f);

  // Rejects keys no field claimed.
  void finish() const;
  const std::string& pointer() const { return ptr_; }

 private:
  const Json* take(std::string_view name);
  template <class E>
  static std::string allowed(std::span<const EnumName<E>> names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + std::string(n.name);
    return s;
  }

  const Json& j_;
  std::string ptr_;
  std::set<std::string, std::less<>> seen_;
};

template <class S>
void read_object(const Json& j, const std::string& ptr, S& s) {
  if (!j.is_object())
    throw ConfigError(ptr.empty() ? "/" : ptr, "expected an object, got " + json_type_name(j));
  JsonReader r(j, ptr);
  s.visit(r);
  r.finish();
  // A section that needs to know which keys were written (scenario steps, whose fields depend
  // on the operation) declares `std::set<std::string> given`.
  if constexpr (requires { s.given; })
    for (auto it = j.begin(); it != j.end(); ++it) s.given.insert(it.key());
  if constexpr (requires { s.validate(ptr); }) s.validate(ptr);
}

// ---- Writing (effective configuration) ----
class JsonWriter {
 public:
  Json out = Json::object();
  void operator()(const UintField& f);
  void operator()(const DoubleField& f) { out[std::string(f.name)] = *f.ref; }
  void operator()(const BoolField& f) { out[std::string(f.name)] = *f.ref; }
  void operator()(const StringField& f) { out[std::string(f.name)] = *f.ref; }
  template <class E>
  void operator()(const EnumField<E>& f) {
    out[std::string(f.name)] = std::string(enum_to_name(f.names, *f.ref));
  }
  template <class S>
  void operator()(const ObjectField<S>& f) {
    out[std::string(f.name)] = write_object(*f.ref);
  }
  template <class S>
  void operator()(const ArrayField<S>& f) {
    Json a = Json::array();
    for (auto& item : *f.ref) a.push_back(write_object(item));
    out[std::string(f.name)] = std::move(a);
  }
  void operator()(const SectionSetField& f);
  template <class S>
  static Json write_object(S& s) {
    JsonWriter w;
    s.visit(w);
    // Sections with presence tracking write only what was given (a step's unused fields mean
    // nothing for its operation).
    if constexpr (requires { s.given; }) {
      Json kept = Json::object();
      for (auto it = w.out.begin(); it != w.out.end(); ++it) {
        bool keep = s.given.count(it.key()) != 0;
        if constexpr (requires { s.shown; }) keep = keep || s.shown.count(it.key()) != 0;
        if (keep) kept[it.key()] = it.value();
      }
      return kept;
    }
    return std::move(w.out);
  }
};

// ---- Listing (cvmsim list, docs) ----
struct FieldRow {
  std::string path;  // dotted, arrays as name[]
  std::string type;
  std::string default_value;
  std::string constraints;
  std::string description;
};

class Lister {
 public:
  explicit Lister(std::string prefix, std::vector<FieldRow>* rows)
      : prefix_(std::move(prefix)), rows_(rows) {}
  void operator()(const UintField& f);
  void operator()(const DoubleField& f);
  void operator()(const BoolField& f);
  void operator()(const StringField& f);
  template <class E>
  void operator()(const EnumField<E>& f) {
    std::string allowed;
    for (const auto& n : f.names) allowed += (allowed.empty() ? "" : " | ") + std::string(n.name);
    add(f.name, "enum", std::string(enum_to_name(f.names, *f.ref)), allowed, f.description);
  }
  template <class S>
  void operator()(const ObjectField<S>& f) {
    add(f.name, "object", "", "", f.description);
    Lister sub(path(f.name), rows_);
    f.ref->visit(sub);
  }
  template <class S>
  void operator()(const ArrayField<S>& f) {
    std::string c = f.min_items > 0 ? "at least " + std::to_string(f.min_items) + " item(s)" : "";
    add(f.name, "array of object",
        f.ref->empty() ? "[]" : std::to_string(f.ref->size()) + " item(s)", c, f.description);
    S item{};
    Lister sub(path(f.name) + "[]", rows_);
    item.visit(sub);
  }
  void operator()(const SectionSetField& f);
  template <class S>
  static std::vector<FieldRow> list(S& s, std::string prefix = "") {
    std::vector<FieldRow> rows;
    Lister l(std::move(prefix), &rows);
    s.visit(l);
    return rows;
  }

 private:
  std::string path(std::string_view name) const {
    return prefix_.empty() ? std::string(name) : prefix_ + "." + std::string(name);
  }
  void add(std::string_view name, std::string type, std::string def, std::string cons,
           std::string_view desc) {
    rows_->push_back(
        {path(name), std::move(type), std::move(def), std::move(cons), std::string(desc)});
  }
  std::string prefix_;
  std::vector<FieldRow>* rows_;
};

// ---- Sections whose type the aggregator does not know ----
// A component that is plugged in (a backend registering itself, models/backend/registry.h)
// declares its options as an ordinary section struct with visit(); the aggregating schema holds
// it as a Section, so that reading, writing and listing go through the same visitors as every
// other field without the aggregator naming the component's type.
class Section {
 public:
  virtual ~Section() = default;
  // Reads `j` over the current values (defaults), validating as read_object does.
  virtual void read(const Json& j, const std::string& ptr) = 0;
  virtual Json write() const = 0;
  virtual void list(const std::string& prefix, std::vector<FieldRow>& rows) const = 0;
  virtual std::unique_ptr<Section> clone() const = 0;
};

template <class S>
class SectionOf final : public Section {
 public:
  S value{};
  void read(const Json& j, const std::string& ptr) override { read_object(j, ptr, value); }
  Json write() const override {
    S copy = value;  // visit() is non-const: it hands out references for the reader
    return JsonWriter::write_object(copy);
  }
  void list(const std::string& prefix, std::vector<FieldRow>& rows) const override {
    S copy = value;
    Lister l(prefix, &rows);
    copy.visit(l);
  }
  std::unique_ptr<Section> clone() const override { return std::make_unique<SectionOf>(*this); }
};

// Named sections, in a fixed order, each an object in the JSON (copies are deep).
struct NamedSection {
  std::string name;
  std::string description;
  std::unique_ptr<Section> section;
};
class SectionSet {
 public:
  SectionSet() = default;
  SectionSet(const SectionSet& o) { *this = o; }
  SectionSet& operator=(const SectionSet& o) {
    if (this == &o) return *this;
    items.clear();
    for (const auto& n : o.items) items.push_back({n.name, n.description, n.section->clone()});
    return *this;
  }
  SectionSet(SectionSet&&) = default;
  SectionSet& operator=(SectionSet&&) = default;

  void add(std::string name, std::string description, std::unique_ptr<Section> s) {
    items.push_back({std::move(name), std::move(description), std::move(s)});
  }
  const Section* find(std::string_view name) const {
    for (const auto& n : items)
      if (n.name == name) return n.section.get();
    return nullptr;
  }
  // The typed options of section `name` (nullptr if absent or of another type).
  template <class S>
  const S* get(std::string_view name) const {
    const auto* s = dynamic_cast<const SectionOf<S>*>(find(name));
    return s ? &s->value : nullptr;
  }

  std::vector<NamedSection> items;
};

struct SectionSetField {
  SectionSet* ref;
};
inline SectionSetField section_set(SectionSet& s) {
  return SectionSetField{&s};
}

// ---- Overrides ----
// Applies `path=value` to a JSON document before it is read. The path is dotted
// ("platform.tlb.ways", array items by index: "vms.0.vcpus") or a JSON pointer ("/platform/...").
// The value is parsed as JSON when it is valid JSON, otherwise taken as a string. Missing
// objects along the path are created; throws ConfigError naming the override on a bad path.
void apply_override(Json& doc, std::string_view assignment);

}  // namespace cvmsim::config
