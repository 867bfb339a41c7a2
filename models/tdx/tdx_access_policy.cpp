#include "models/tdx/tdx_access_policy.h"

#include "models/tdx/kvm_tdx.h"

namespace cvmsim::tdx {

const GuestAccessPolicy* KvmTdxBackend::guest_access_policy(const kvm::Vm&) const {
  if (access_policy_) return access_policy_.get();
  if (!td_created_) return nullptr;
  const std::optional<WalkRoot> sept = walk_root();
  if (!sept) return nullptr;
  access_policy_ = std::make_unique<TdxGuestAccessPolicy>(*sept, shared_bit(), hkid_);
  return access_policy_.get();
}

}  // namespace cvmsim::tdx
