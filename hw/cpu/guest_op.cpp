#include "hw/cpu/guest_op.h"

namespace cvmsim {

std::string_view name_of(OpKind k) {
  switch (k) {
    case OpKind::kLoad: return "load";
    case OpKind::kStore: return "store";
    case OpKind::kCompute: return "compute";
    case OpKind::kFence: return "fence";
    case OpKind::kHypercall: return "hypercall";
  }
  return "?";
}

}  // namespace cvmsim
