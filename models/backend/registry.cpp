#include "models/backend/registry.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "models/kvm/uapi.h"

namespace cvmsim::backend {

namespace {

struct Registry {
  std::vector<std::unique_ptr<Descriptor>> owned;
  std::vector<const Descriptor*> sorted;
  std::vector<config::EnumName<uint32_t>> enum_names;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

bool register_backend(Descriptor d) {
  Registry& r = registry();
  for (const auto& o : r.owned) {
    if (o->name == d.name || o->vm_type == d.vm_type) {
      std::fprintf(stderr, "cvmsim: backend \"%s\" (VM type %u) registered twice (\"%s\", %u)\n",
                   d.name.c_str(), d.vm_type, o->name.c_str(), o->vm_type);
      std::abort();
    }
  }
  r.owned.push_back(std::make_unique<Descriptor>(std::move(d)));
  r.sorted.clear();
  for (const auto& o : r.owned) r.sorted.push_back(o.get());
  std::sort(r.sorted.begin(), r.sorted.end(),
            [](const Descriptor* a, const Descriptor* b) { return a->vm_type < b->vm_type; });
  r.enum_names.clear();
  for (const Descriptor* o : r.sorted) r.enum_names.push_back({o->vm_type, o->name});
  return true;
}

const std::vector<const Descriptor*>& all() {
  return registry().sorted;
}

const Descriptor* find(std::string_view name) {
  for (const Descriptor* d : all())
    if (d->name == name) return d;
  return nullptr;
}

const Descriptor* find(uint32_t vm_type) {
  for (const Descriptor* d : all())
    if (d->vm_type == vm_type) return d;
  return nullptr;
}

std::string names() {
  std::string s;
  for (const Descriptor* d : all()) s += (s.empty() ? "" : ", ") + d->name;
  return s;
}

std::string name_of(uint32_t vm_type) {
  const Descriptor* d = find(vm_type);
  return d ? d->name : "type " + std::to_string(vm_type);
}

std::span<const config::EnumName<uint32_t>> vm_type_names() {
  return registry().enum_names;
}

// KVM_HC_MAP_GPA_RANGE (kvm-guest-memfd.md §11): gpa, number of 4 KiB pages, attributes.
std::vector<GuestOp> GuestSide::conversion_ops(Gpa gpa, uint64_t bytes, bool to_private) const {
  GuestOp op;
  op.kind = OpKind::kHypercall;
  op.nr = kvm::KVM_HC_MAP_GPA_RANGE;
  op.args[0] = gpa.value();
  op.args[1] = bytes >> kPageShift;
  op.args[2] = (to_private ? kvm::KVM_MAP_GPA_RANGE_ENCRYPTED : kvm::KVM_MAP_GPA_RANGE_DECRYPTED) |
               kvm::KVM_MAP_GPA_RANGE_PAGE_SZ_4K;
  return {op};
}

std::unique_ptr<GuestSide> default_guest_side() {
  return std::make_unique<GuestSide>();
}

}  // namespace cvmsim::backend
