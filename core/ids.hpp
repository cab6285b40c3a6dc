#pragma once
/// Entity ids: `<prefix>_<26 Crockford base32 chars>`, a ULID. 48 bits of milliseconds since the
/// epoch then 80 random bits, so ids are unique without coordination between nodes and sort by
/// creation time; within one process and millisecond they are strictly increasing.
/// Also the rest of what libsodium provides here: random bytes, hashes, the signature every signed
/// value carries, and URL-safe base64.

#include <optional>
#include <string>
#include <string_view>

namespace emporium::core {

/// A new id such as `prod_01JD3Z6W4N9M1S8P0Q2R5T7V9X`. Thread-safe.
std::string new_id(std::string_view prefix);

/// True when `id` has the given prefix and a well-formed ULID body.
bool is_valid_id(std::string_view id, std::string_view prefix);

/// `n` random bytes from the operating system's CSPRNG, hex-encoded (2n characters).
std::string random_hex(std::size_t n);

/// SHA-256 of `text`, hex-encoded.
std::string sha256_hex(std::string_view text);

/// HMAC-SHA-256 of `message` under `key` (libsodium; any key length), hex-encoded.
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

/// Compares two strings in time independent of where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

/// The signature of `message` under `key`: the first 32 hex digits (128 bits) of its
/// HMAC-SHA-256. Every signed value (session tokens, search cursors) carries one, after a '.'.
std::string sign(std::string_view key, std::string_view message);

/// True when `signature` is sign(key, message); compared in constant time.
bool verify(std::string_view key, std::string_view message, std::string_view signature);

/// URL-safe base64 without padding (RFC 4648 section 5), libsodium's codec.
std::string base64url_encode(std::string_view in);

/// The bytes of base64url_encode's output, or nothing for any other text (other characters,
/// padding, a length no encoding has, or unused bits that are not zero).
std::optional<std::string> base64url_decode(std::string_view in);

} // namespace emporium::core
