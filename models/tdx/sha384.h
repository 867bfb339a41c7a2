// SHA-384 (FIPS 180-4), for the TD measurement register MRTD (tdx-snp.md A2.3: TDH.MEM.PAGE.ADD
// and TDH.MR.EXTEND extend MRTD in 128-byte blocks; TDH.MR.FINALIZE finalises it). A small
// self-contained implementation, so the model needs no crypto library; it is checked against the
// FIPS 180-4 example vectors in tests/unit/tdx.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace cvmsim::tdx {

class Sha384 {
 public:
  static constexpr size_t kBlockBytes = 128;
  static constexpr size_t kDigestBytes = 48;
  using Digest = std::array<uint8_t, kDigestBytes>;

  Sha384() { reset(); }
  void reset();
  void update(std::span<const uint8_t> data);
  // Pads and returns the digest; the object must be reset() before reuse.
  Digest finalize();
  // Number of 128-byte compressions run so far (what the module's cost depends on).
  uint64_t blocks() const { return blocks_; }

  static Digest hash(std::span<const uint8_t> data) {
    Sha384 s;
    s.update(data);
    return s.finalize();
  }

 private:
  void compress(const uint8_t* block);

  std::array<uint64_t, 8> h_{};
  std::array<uint8_t, kBlockBytes> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_bytes_ = 0;
  uint64_t blocks_ = 0;
};

}  // namespace cvmsim::tdx
