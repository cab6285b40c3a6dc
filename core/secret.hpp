#pragma once
/// A secret (a password on its way to be hashed or verified) that is wiped exactly once: when
/// the last holder lets go of it. Jobs capture it by `std::shared_ptr<const secret>` and only
/// read it, so a job that a database worker runs again after a lost connection sees the same
/// bytes as the first attempt; the wipe happens after the last attempt, when the job is gone.

#include <sodium.h>

#include <memory>
#include <string>
#include <string_view>

namespace emporium::core {

class secret {
 public:
  /// Takes the bytes of `plain` and wipes `plain` itself (a moved-from short string keeps its
  /// characters in the small-string buffer, so moving alone would leave a copy behind).
  explicit secret(std::string& plain) : bytes_(plain) {
    sodium_memzero(plain.data(), plain.size());
    plain.clear();
  }
  ~secret() { sodium_memzero(bytes_.data(), bytes_.size()); }
  secret(const secret&) = delete;
  secret& operator=(const secret&) = delete;

  std::string_view view() const { return bytes_; }
  const char* data() const { return bytes_.data(); }
  std::size_t size() const { return bytes_.size(); }

 private:
  std::string bytes_;
};

/// `plain` as a shared secret; `plain` is wiped.
inline std::shared_ptr<const secret> make_secret(std::string& plain) {
  return std::make_shared<const secret>(plain);
}

} // namespace emporium::core
