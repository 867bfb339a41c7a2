// KVM's user API as the simulator exposes it: constants, structures and exit records with
// Linux's names and values (docs/reference/kvm-guest-memfd.md §0, §1). Scenario steps, the VMM
// model and tests speak this vocabulary; models/kvm/kvm.h implements the ioctls over it.
//
// Structures keep Linux's field names and layout order. A pointer argument that is null models
// a copy_from_user/copy_to_user failure (EFAULT), which the spec lists as a validation step.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace cvmsim::kvm {

// ---- §0 constants ------------------------------------------------------------------------
// Memslot flags.
inline constexpr uint32_t KVM_MEM_LOG_DIRTY_PAGES = 1u << 0;
inline constexpr uint32_t KVM_MEM_READONLY = 1u << 1;
inline constexpr uint32_t KVM_MEM_GUEST_MEMFD = 1u << 2;

// Memory attributes (bits 0-2 reserved for future R/W/X).
inline constexpr uint64_t KVM_MEMORY_ATTRIBUTE_PRIVATE = 1ull << 3;
// kvm_run.memory_fault.flags
inline constexpr uint64_t KVM_MEMORY_EXIT_FLAG_PRIVATE = 1ull << 3;

// guest_memfd creation flags.
inline constexpr uint64_t GUEST_MEMFD_FLAG_MMAP = 1ull << 0;
inline constexpr uint64_t GUEST_MEMFD_FLAG_INIT_SHARED = 1ull << 1;

// fallocate modes (include/uapi/linux/falloc.h). ALLOCATE_RANGE is "no mode bit"; the modes in
// FALLOC_FL_MODE_MASK are exclusive, KEEP_SIZE is a flag beside them (vfs_fallocate).
inline constexpr int FALLOC_FL_ALLOCATE_RANGE = 0x00;
inline constexpr int FALLOC_FL_KEEP_SIZE = 0x01;
inline constexpr int FALLOC_FL_PUNCH_HOLE = 0x02;
inline constexpr int FALLOC_FL_COLLAPSE_RANGE = 0x08;
inline constexpr int FALLOC_FL_ZERO_RANGE = 0x10;  // one of the modes guest_memfd refuses
inline constexpr int FALLOC_FL_INSERT_RANGE = 0x20;
inline constexpr int FALLOC_FL_UNSHARE_RANGE = 0x40;
inline constexpr int FALLOC_FL_WRITE_ZEROES = 0x80;
inline constexpr int FALLOC_FL_MODE_MASK = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE |
                                           FALLOC_FL_ZERO_RANGE | FALLOC_FL_INSERT_RANGE |
                                           FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES;

// Host mm uAPI used on a guest_memfd mapping (include/uapi/asm-generic/mman-common.h). Like the
// FALLOC_FL_ names above these are macros in libc headers: a file including <sys/mman.h> or
// <fcntl.h> must not include this header.
inline constexpr int PROT_NONE = 0x0;
inline constexpr int PROT_READ = 0x1;
inline constexpr int PROT_WRITE = 0x2;
inline constexpr int PROT_EXEC = 0x4;
inline constexpr int MADV_NORMAL = 0;
inline constexpr int MADV_RANDOM = 1;
inline constexpr int MADV_SEQUENTIAL = 2;
inline constexpr int MADV_WILLNEED = 3;
inline constexpr int MADV_DONTNEED = 4;
inline constexpr int MADV_REMOVE = 9;
inline constexpr int MADV_HUGEPAGE = 14;
inline constexpr int MADV_NOHUGEPAGE = 15;
inline constexpr int MADV_COLLAPSE = 25;

// Exit reasons.
inline constexpr uint32_t KVM_EXIT_UNKNOWN = 0;
inline constexpr uint32_t KVM_EXIT_HYPERCALL = 3;
inline constexpr uint32_t KVM_EXIT_MMIO = 6;
inline constexpr uint32_t KVM_EXIT_SHUTDOWN = 8;
inline constexpr uint32_t KVM_EXIT_INTERNAL_ERROR = 17;
inline constexpr uint32_t KVM_EXIT_MEMORY_FAULT = 39;

// Capabilities.
inline constexpr uint32_t KVM_CAP_EXIT_HYPERCALL = 201;
inline constexpr uint32_t KVM_CAP_USER_MEMORY2 = 231;
inline constexpr uint32_t KVM_CAP_MEMORY_FAULT_INFO = 232;
inline constexpr uint32_t KVM_CAP_MEMORY_ATTRIBUTES = 233;
inline constexpr uint32_t KVM_CAP_GUEST_MEMFD = 234;
inline constexpr uint32_t KVM_CAP_VM_TYPES = 235;
inline constexpr uint32_t KVM_CAP_PRE_FAULT_MEMORY = 236;
inline constexpr uint32_t KVM_CAP_GUEST_MEMFD_FLAGS = 244;

// Hypercalls (include/uapi/linux/kvm_para.h).
inline constexpr uint64_t KVM_HC_MAP_GPA_RANGE = 12;
inline constexpr uint64_t KVM_MAP_GPA_RANGE_PAGE_SZ_4K = 0;
inline constexpr uint64_t KVM_MAP_GPA_RANGE_PAGE_SZ_2M = 1;
inline constexpr uint64_t KVM_MAP_GPA_RANGE_PAGE_SZ_1G = 2;
inline constexpr uint64_t KVM_MAP_GPA_RANGE_ENCRYPTED = 1ull << 4;
inline constexpr uint64_t KVM_MAP_GPA_RANGE_DECRYPTED = 0;
inline constexpr uint64_t KVM_EXIT_HYPERCALL_LONG_MODE = 1ull << 0;
// Values a hypercall returns to the guest (include/uapi/linux/kvm_para.h): negated in RAX.
inline constexpr uint64_t KVM_ENOSYS = 1000;
inline constexpr uint64_t KVM_EINVAL = 22;

// x86 VM types (§0). tdx/snp/pkvm become creatable when their backends register.
inline constexpr uint32_t KVM_X86_DEFAULT_VM = 0;
inline constexpr uint32_t KVM_X86_SW_PROTECTED_VM = 1;
inline constexpr uint32_t KVM_X86_SEV_VM = 2;
inline constexpr uint32_t KVM_X86_SEV_ES_VM = 3;
inline constexpr uint32_t KVM_X86_SNP_VM = 4;
inline constexpr uint32_t KVM_X86_TDX_VM = 5;
// pKVM is an arm64 VM type in Linux (KVM_VM_TYPE_ARM_PROTECTED, bit 31); the simulator gives it
// a number in the same space so one enum names every backend.
inline constexpr uint32_t KVM_VM_TYPE_ARM_PROTECTED = 1u << 31;

// Limits (x86 values: KVM_USER_MEM_SLOTS = 32767, KVM_ADDRESS_SPACE_NUM = 2 with SMM).
inline constexpr uint32_t KVM_USER_MEM_SLOTS = 32767;
inline constexpr uint32_t KVM_MEM_SLOTS_NUM = 32767;
inline constexpr uint64_t KVM_MEM_MAX_NR_PAGES = (1ull << 31) - 1;

// ---- §1 structures -----------------------------------------------------------------------
struct kvm_create_guest_memfd {
  uint64_t size = 0;
  uint64_t flags = 0;
  uint64_t reserved[6] = {};
};

struct kvm_userspace_memory_region {
  uint32_t slot = 0;  // bits 0-15 slot id, bits 16-31 address-space id
  uint32_t flags = 0;
  uint64_t guest_phys_addr = 0;
  uint64_t memory_size = 0;  // 0 = delete
  uint64_t userspace_addr = 0;
};

struct kvm_userspace_memory_region2 {
  uint32_t slot = 0;
  uint32_t flags = 0;
  uint64_t guest_phys_addr = 0;
  uint64_t memory_size = 0;
  uint64_t userspace_addr = 0;
  uint64_t guest_memfd_offset = 0;
  uint32_t guest_memfd = 0;  // fd (unsigned in the struct; -1 is 0xffffffff)
  uint32_t pad1 = 0;
  uint64_t pad2[14] = {};
};

struct kvm_memory_attributes {
  uint64_t address = 0;
  uint64_t size = 0;
  uint64_t attributes = 0;
  uint64_t flags = 0;
};

struct kvm_pre_fault_memory {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint64_t flags = 0;
  uint64_t padding[5] = {};
};

// KVM_MEMORY_ENCRYPT_OP on a VM fd (arch/x86/kvm/x86.c kvm_arch_vm_ioctl -> the vendor's
// kvm_x86_ops.mem_enc_ioctl): one command of the VM type's encryption API. Linux passes a
// vendor struct (struct kvm_tdx_cmd, struct kvm_sev_cmd) whose first word is the command id and
// whose `data` points to the command's own argument struct; this is their common shape.
struct kvm_memory_encrypt_cmd {
  uint32_t id = 0;        // KVM_TDX_* / KVM_SEV_* command
  uint32_t flags = 0;     // command flags (KVM_TDX_MEASURE_MEMORY_REGION, ...)
  void* data = nullptr;   // the command's argument struct (null: EFAULT where one is needed)
  uint64_t hw_error = 0;  // out: the firmware's status when the command failed in firmware
};

struct kvm_enable_cap {
  uint32_t cap = 0;
  uint32_t flags = 0;
  uint64_t args[4] = {};
};

// The part of struct kvm_run the simulator fills.
struct kvm_run {
  uint32_t exit_reason = KVM_EXIT_UNKNOWN;
  struct {
    uint64_t flags = 0;
    uint64_t gpa = 0;
    uint64_t size = 0;
  } memory_fault;
  struct {
    uint64_t nr = 0;
    uint64_t args[6] = {};
    uint64_t ret = 0;
    uint64_t flags = 0;
  } hypercall;
  struct {
    uint64_t phys_addr = 0;
    uint32_t len = 0;
    uint8_t is_write = 0;
  } mmio;
};

// Names for traces, scenario files and expectation messages.
std::string_view exit_reason_name(uint32_t reason);  // "KVM_EXIT_MEMORY_FAULT", ...
std::optional<uint32_t> parse_exit_reason(std::string_view name);
std::optional<uint32_t> parse_capability(std::string_view name);  // "KVM_CAP_GUEST_MEMFD" -> 234

}  // namespace cvmsim::kvm
