#include "core/ids.hpp"

#include <sodium.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stdexcept>

namespace emporium::core {

namespace {

constexpr char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr std::size_t ulid_chars = 26;

void ensure_sodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok)
    throw std::runtime_error("libsodium failed to initialise");
}

struct ulid_state {
  std::mutex mtx;
  std::uint64_t last_ms = 0;
  std::array<std::uint8_t, 10> last_rand{};
};

ulid_state& state() {
  static ulid_state s;
  return s;
}

/// Adds one to a big-endian 80-bit number; false on overflow.
bool increment(std::array<std::uint8_t, 10>& r) {
  for (auto i = r.size(); i-- > 0;)
    if (++r[i] != 0)
      return true;
  return false;
}

} // namespace

std::string new_id(std::string_view prefix) {
  ensure_sodium();
  std::array<std::uint8_t, 16> bytes{};
  {
    auto& s = state();
    std::lock_guard<std::mutex> guard{s.mtx};
    auto now = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
    // Monotonic within the process: a clock step backwards or a burst within one millisecond
    // continues from the last id instead of producing one that sorts earlier.
    if (now <= s.last_ms) {
      if (!increment(s.last_rand)) {
        ++s.last_ms;
        randombytes_buf(s.last_rand.data(), s.last_rand.size());
      }
    } else {
      s.last_ms = now;
      randombytes_buf(s.last_rand.data(), s.last_rand.size());
      s.last_rand[0] &= 0x7f; // headroom so increments within a millisecond never overflow
    }
    for (int i = 0; i < 6; ++i)
      bytes[i] = static_cast<std::uint8_t>(s.last_ms >> (40 - 8 * i));
    std::copy(s.last_rand.begin(), s.last_rand.end(), bytes.begin() + 6);
  }
  // 128 bits as 26 base32 digits: the first digit carries the top 3 bits.
  std::string out;
  out.reserve(prefix.size() + 1 + ulid_chars);
  out.append(prefix).push_back('_');
  unsigned __int128 v = 0;
  for (auto b : bytes)
    v = (v << 8) | b;
  char body[ulid_chars];
  for (std::size_t i = ulid_chars; i-- > 0;) {
    body[i] = crockford[static_cast<unsigned>(v & 31)];
    v >>= 5;
  }
  out.append(body, ulid_chars);
  return out;
}

bool is_valid_id(std::string_view id, std::string_view prefix) {
  if (id.size() != prefix.size() + 1 + ulid_chars || id.substr(0, prefix.size()) != prefix
      || id[prefix.size()] != '_')
    return false;
  auto body = id.substr(prefix.size() + 1);
  if (body[0] > '7') // the first digit holds only 3 bits
    return false;
  for (char c : body)
    if (std::string_view{crockford}.find(c) == std::string_view::npos)
      return false;
  return true;
}

std::string random_hex(std::size_t n) {
  ensure_sodium();
  std::string raw(n, '\0');
  randombytes_buf(raw.data(), n);
  std::string hex(2 * n + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(raw.data()), n);
  hex.pop_back();
  sodium_memzero(raw.data(), raw.size());
  return hex;
}

std::string sha256_hex(std::string_view text) {
  ensure_sodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  char hex[2 * crypto_hash_sha256_BYTES + 1];
  sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
  return std::string(hex, 2 * crypto_hash_sha256_BYTES);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  ensure_sodium();
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(message.data()),
                                message.size());
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_final(&st, mac);
  char hex[2 * crypto_auth_hmacsha256_BYTES + 1];
  sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
  return std::string(hex, 2 * crypto_auth_hmacsha256_BYTES);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {
constexpr std::size_t signature_chars = 32;
}

std::string sign(std::string_view key, std::string_view message) {
  return hmac_sha256_hex(key, message).substr(0, signature_chars);
}

bool verify(std::string_view key, std::string_view message, std::string_view signature) {
  return signature.size() == signature_chars && constant_time_equal(sign(key, message), signature);
}

std::string base64url_encode(std::string_view in) {
  constexpr int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_encoded_len(in.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(in.data()),
                    in.size(), variant);
  out.pop_back(); // the terminating NUL
  return out;
}

std::optional<std::string> base64url_decode(std::string_view in) {
  std::string out(in.size() * 3 / 4 + 1, '\0');
  std::size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), in.data(),
                        in.size(), nullptr, &length, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING)
      != 0)
    return std::nullopt;
  out.resize(length);
  return out;
}

} // namespace emporium::core
