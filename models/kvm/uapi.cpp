#include "models/kvm/uapi.h"

#include <array>
#include <utility>

namespace cvmsim::kvm {

namespace {

constexpr std::array<std::pair<uint32_t, std::string_view>, 6> kExitNames{{
    {KVM_EXIT_UNKNOWN, "KVM_EXIT_UNKNOWN"},
    {KVM_EXIT_HYPERCALL, "KVM_EXIT_HYPERCALL"},
    {KVM_EXIT_MMIO, "KVM_EXIT_MMIO"},
    {KVM_EXIT_SHUTDOWN, "KVM_EXIT_SHUTDOWN"},
    {KVM_EXIT_INTERNAL_ERROR, "KVM_EXIT_INTERNAL_ERROR"},
    {KVM_EXIT_MEMORY_FAULT, "KVM_EXIT_MEMORY_FAULT"},
}};

constexpr std::array<std::pair<uint32_t, std::string_view>, 8> kCapNames{{
    {KVM_CAP_EXIT_HYPERCALL, "KVM_CAP_EXIT_HYPERCALL"},
    {KVM_CAP_USER_MEMORY2, "KVM_CAP_USER_MEMORY2"},
    {KVM_CAP_MEMORY_FAULT_INFO, "KVM_CAP_MEMORY_FAULT_INFO"},
    {KVM_CAP_MEMORY_ATTRIBUTES, "KVM_CAP_MEMORY_ATTRIBUTES"},
    {KVM_CAP_GUEST_MEMFD, "KVM_CAP_GUEST_MEMFD"},
    {KVM_CAP_VM_TYPES, "KVM_CAP_VM_TYPES"},
    {KVM_CAP_PRE_FAULT_MEMORY, "KVM_CAP_PRE_FAULT_MEMORY"},
    {KVM_CAP_GUEST_MEMFD_FLAGS, "KVM_CAP_GUEST_MEMFD_FLAGS"},
}};

template <class Table>
std::string_view name_in(const Table& t, uint32_t v) {
  for (const auto& [k, n] : t)
    if (k == v) return n;
  return "?";
}

template <class Table>
std::optional<uint32_t> value_in(const Table& t, std::string_view name) {
  for (const auto& [k, n] : t)
    if (n == name) return k;
  return std::nullopt;
}

}  // namespace

std::string_view exit_reason_name(uint32_t reason) {
  return name_in(kExitNames, reason);
}
std::optional<uint32_t> parse_exit_reason(std::string_view name) {
  return value_in(kExitNames, name);
}
std::optional<uint32_t> parse_capability(std::string_view name) {
  return value_in(kCapNames, name);
}

}  // namespace cvmsim::kvm
