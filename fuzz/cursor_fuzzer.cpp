// Fuzz target: the opaque cursors clients send back. Listing cursors (codec::decode_cursor)
// must only ever yield a well-formed id of the asked kind, and encode → decode must give the id
// back; search cursors (search_codec::decode_cursor) must reject anything not signed for the
// query they page: a cursor accepted for one query is rejected for another query and under
// another key, and what it yields is a position of that query. The first byte picks what the
// rest is. The corpus holds genuine search cursors (signed with the key below) for the
// mutations to start from.

#include "core/ids.hpp"
#include "fuzz/check.hpp"
#include "http/json_codec.hpp"
#include "http/search_codec.hpp"

#include <cstdint>
#include <string>

namespace codec = emporium::http::codec;
namespace search_codec = emporium::http::search_codec;

namespace {

emporium::model::search_query query_of(const char* sort, const std::string& key) {
  auto q = search_codec::decode_query({{"q", "red shoes"}, {"sort", sort}}, key);
  expect(q.ok());
  return q.value();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  static const char* prefixes[] = {"prod", "ord", "cust", "cart"};
  std::string prefix = prefixes[data[0] % 4];
  switch ((data[0] / 4) % 3) {
    case 0:
      // A cursor as a client sends it.
      if (auto id = codec::decode_cursor(rest, prefix))
        expect(emporium::core::is_valid_id(*id, prefix));
      break;
    case 1:
      // The round trip of an id the server might page after.
      if (emporium::core::is_valid_id(rest, prefix)) {
        auto back = codec::decode_cursor(codec::encode_cursor(rest), prefix);
        expect(back && *back == rest);
      }
      break;
    case 2: {
      // A search cursor for a fixed query: genuine, mutated, signed for another query or with
      // another key, or made up.
      static const std::string key = search_codec::cursor_key("fuzz-secret");
      static const std::string other_key = search_codec::cursor_key("another-secret");
      static const auto query = query_of("price_asc", key);
      static const auto other_query = query_of("price_desc", key);
      auto pos = search_codec::decode_cursor(rest, query, key);
      auto for_other_query = search_codec::decode_cursor(rest, other_query, key);
      if (pos) {
        expect(!for_other_query);
        expect(!search_codec::decode_cursor(rest, query, other_key));
        expect(emporium::core::is_valid_id(pos->id, "prod"));
        expect(!pos->key.empty()); // a price-sorted query's position carries the price
        // What the server would issue for that position pages from the same place.
        auto again = search_codec::decode_cursor(search_codec::encode_cursor(query, *pos, key),
                                                 query, key);
        expect(again && again->id == pos->id && again->key == pos->key && again->mode == pos->mode);
      }
      if (for_other_query)
        expect(!search_codec::decode_cursor(rest, other_query, other_key));
      break;
    }
  }
  return 0;
}
