// Memory encryption key ids and the TDX memory-integrity parameters (tdx-snp.md A1, A9;
// docs/memory-integrity.md).
//
// Key ids (MKTME KeyIDs / TDX HKIDs) number [0, num_key_ids). The top range
// [first_private, num_key_ids) is TDX-private: a write under a private key sets the TD-owner bit
// of the cache lines it writes, a read under one checks it (and, in Ci mode, the MAC). Keys below
// first_private are shared (key 0 is the host's TME/no key); they carry no integrity semantics
// beyond "a read of a TD-owned line returns zeros". Linux prints the split as e.g. "private
// KeyID range: [16, 64)" (L-tdx-doc); the TDX module treats the first private KeyID as the global
// one (PAMT, TDR) and hands the rest to TDs (A1).
//
// The default configuration has no private range (first_private == num_key_ids): every key is
// shared and memory behaves as it did before integrity was modelled (SNP ASIDs, MKTME keys,
// key 0).
//
// The model carries the key id beside the address (AccessExt::key, FrameMeta::key_id) rather than
// in the HPA's top bits; an access under a key id outside [0, num_key_ids) is refused by the memory
// module (the KeyID bits would be reserved PA bits, A1).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "hw/base/result.h"

namespace cvmsim {

using KeyId = uint16_t;  // MKTME/TDX KeyID (HKID) or SEV ASID-selected key; 0 = no/host key

// TDX-BASE16 §16.2 (tdx-snp.md A9). Both keep a TD-owner bit per 64-byte line.
enum class IntegrityMode : uint8_t {
  kCi,  // cryptographic: a 28-bit MAC per line over ciphertext, tweak, TD-owner bit and a per-HKID
        // MAC key; a private-key read of a line written under another key fails the MAC
  kLi,  // logical: the TD-owner bit only; a line written under another private key is not
        // detected (it decrypts to garbage)
};

std::string_view name_of(IntegrityMode m);
std::optional<IntegrityMode> parse_integrity_mode(std::string_view s);  // "ci" / "li"

struct KeyConfig {
  // Maximum number of key ids: KeyId is 16 bits. (The TDX module's Key Ownership Table holds
  // MAX_HKIDS = 2048 entries; real parts have far fewer, e.g. 64.)
  static constexpr uint32_t kMaxKeyIds = uint32_t{1} << 16;

  uint32_t num_key_ids = kMaxKeyIds;    // key ids [0, num_key_ids) exist
  uint32_t first_private = kMaxKeyIds;  // private_hkid_min; == num_key_ids: no private keys
  IntegrityMode integrity = IntegrityMode::kCi;
  // X86_BUG_TDX_PW_MCE (L-tdx-doc): a partial (sub-64-byte) write to a TD-owned line, from outside
  // the TD (shared key: non-temporal/UC/WC host stores, device DMA), poisons the line at once, so
  // that the writer's own later read consumes the poison.
  bool partial_write_poisons = false;

  // EINVAL unless 1 <= num_key_ids <= kMaxKeyIds and 1 <= first_private <= num_key_ids (key 0
  // is never private) and `integrity` is a known mode.
  Status validate() const;

  // A TDX platform: keys [0, num_key_ids), private from first_private.
  static KeyConfig tdx(uint32_t num_key_ids, uint32_t first_private,
                       IntegrityMode mode = IntegrityMode::kCi,
                       bool partial_write_poisons = false) {
    return KeyConfig{num_key_ids, first_private, mode, partial_write_poisons};
  }

  bool valid_key(KeyId k) const { return k < num_key_ids; }
  bool is_private(KeyId k) const { return k >= first_private && k < num_key_ids; }
  bool has_private_keys() const { return first_private < num_key_ids; }
  uint32_t num_private_keys() const { return has_private_keys() ? num_key_ids - first_private : 0; }
  // The first private key id: Linux's TDX global KeyID (A1). Only meaningful with private keys.
  KeyId global_private_key() const { return static_cast<KeyId>(first_private); }

  bool operator==(const KeyConfig&) const = default;
};

}  // namespace cvmsim
