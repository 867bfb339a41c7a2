// Where hardware structures get frames from (page-table pages, for instance). hw declares the
// interface; the host page allocator (models/host) or a test fixture implements it, so hw never
// reaches upward (ARCHITECTURE.md principle 2).
#pragma once

#include "hw/base/addr.h"
#include "hw/base/page_size.h"
#include "hw/base/result.h"

namespace cvmsim {

class FrameAllocator {
 public:
  virtual ~FrameAllocator() = default;
  // A naturally aligned block of bytes_of(size); ENOMEM when none is left.
  virtual Result<Pfn> alloc(PageSize size = PageSize::k4K) = 0;
  virtual void free(Pfn pfn, PageSize size = PageSize::k4K) = 0;
};

}  // namespace cvmsim
