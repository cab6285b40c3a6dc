#include "bench/scenarios.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <fstream>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

namespace emporium::bench {

using json = nlohmann::json;

// -- helpers ------------------------------------------------------------------------------------

namespace {

bool success(int status) {
  return status >= 200 && status < 400;
}

std::string url_encode(const std::string& s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

/// Values of `"key":"value"` pairs, found by scanning: list pages are parsed at thousands per
/// second, and a full JSON parse would make the generator the bottleneck. Escapes inside the
/// values are not expected (ids and cursors are [A-Za-z0-9_-]).
std::vector<std::string> string_values(const std::string& body, const std::string& key,
                                       std::size_t max = 1000) {
  std::vector<std::string> out;
  std::string needle = "\"" + key + "\"";
  for (auto pos = body.find(needle); pos != std::string::npos && out.size() < max;
       pos = body.find(needle, pos)) {
    pos += needle.size();
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == ':'))
      ++pos;
    if (pos >= body.size() || body[pos] != '"')
      continue;
    auto end = body.find('"', pos + 1);
    if (end == std::string::npos)
      break;
    out.push_back(body.substr(pos + 1, end - pos - 1));
    pos = end;
  }
  return out;
}

/// A JSON object's string field, or empty.
std::string field(const json& j, const char* key) {
  if (j.is_object())
    if (auto it = j.find(key); it != j.end() && it->is_string())
      return it->get<std::string>();
  return {};
}

json parse(const std::string& body) {
  return json::parse(body, nullptr, false);
}

const json shipping_address = {{"name", "Bench Customer"},
                               {"line1", "1 Load Test Way"},
                               {"city", "Springfield"},
                               {"postal_code", "12345"},
                               {"country", "US"}};

// The seeded catalog's vocabulary (persistence/seed.cpp), for search queries.
constexpr std::array<const char*, 12> categories{"electronics", "kitchen", "outdoor", "home",
                                                 "fashion",     "sports",  "books",   "toys",
                                                 "beauty",      "garden",  "office",  "pets"};
constexpr std::array<const char*, 24> nouns{
  "headphones", "speaker",  "charger", "keyboard", "kettle",  "skillet", "knife", "blender",
  "tent",       "backpack", "lantern", "lamp",     "blanket", "jacket",  "scarf", "sneakers",
  "yoga mat",   "notebook", "puzzle",  "shampoo",  "planter", "pen",     "leash", "cat bed"};
constexpr std::array<const char*, 16> modifiers{
  "classic", "premium", "compact", "vintage", "modern", "rustic", "ergonomic", "portable",
  "oak",     "bamboo",  "steel",   "copper",  "linen",  "walnut", "leather",   "cobalt"};
constexpr std::array<const char*, 6> misspelt{"kettel",   "headfones", "backpak",
                                              "blankett", "xyzzy",     "qwertyuiop"};

template <class Array>
const char* any_of(const Array& a, std::mt19937_64& rng) {
  return a[std::uniform_int_distribution<std::size_t>{0, a.size() - 1}(rng)];
}

int uniform(std::mt19937_64& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>{lo, hi}(rng);
}

double coin(std::mt19937_64& rng) {
  return std::uniform_real_distribution<double>{0, 1}(rng);
}

} // namespace

// -- catalog ------------------------------------------------------------------------------------

catalog::catalog(std::vector<std::string> ids, double zipf_exponent, std::uint64_t seed)
  : ids_(std::move(ids)) {
  if (ids_.empty())
    throw std::runtime_error("the catalog is empty: seed products first");
  if (zipf_exponent > 0) {
    zipf_ = std::make_unique<zipf_distribution>(ids_.size(), zipf_exponent);
    rank_to_index_.resize(ids_.size());
    std::iota(rank_to_index_.begin(), rank_to_index_.end(), 0u);
    std::mt19937_64 rng{seed};
    std::shuffle(rank_to_index_.begin(), rank_to_index_.end(), rng);
  }
}

const std::string& catalog::pick(std::mt19937_64& rng) const {
  if (zipf_)
    return ids_[rank_to_index_[(*zipf_)(rng)]];
  return ids_[std::uniform_int_distribution<std::size_t>{0, ids_.size() - 1}(rng)];
}

std::vector<std::string> load_ids_http(const target& where, std::size_t limit) {
  std::vector<std::string> ids;
  std::string cursor;
  for (;;) {
    std::string path = "/products?limit=100";
    if (!cursor.empty())
      path += "&cursor=" + url_encode(cursor);
    auto r = fetch(where, "GET", path);
    if (r.status != 200)
      throw std::runtime_error("GET " + path + " answered "
                               + (r.status ? std::to_string(r.status) : r.error));
    auto page = parse(r.body);
    if (!page.is_object() || !page.contains("items") || !page["items"].is_array())
      throw std::runtime_error("GET /products: not a page of items");
    for (const auto& item : page["items"]) {
      ids.push_back(field(item, "id"));
      if (limit && ids.size() >= limit)
        return ids;
    }
    cursor = field(page, "next_cursor");
    if (cursor.empty())
      return ids;
  }
}

// -- customers ----------------------------------------------------------------------------------

void commerce_state::load_customers(const std::string& file) {
  std::ifstream in{file};
  std::string line;
  while (std::getline(in, line)) {
    auto j = parse(line);
    if (!j.is_object())
      continue;
    customer c;
    c.email = field(j, "email");
    c.password = field(j, "password");
    c.id = field(j, "id");
    c.token = field(j, "token");
    if (!c.email.empty() && !c.password.empty())
      customers.push_back(std::move(c));
  }
}

void commerce_state::save_customers(const std::string& file) const {
  std::ofstream out{file, std::ios::trunc};
  for (std::size_t i = 0; i < std::min(accounts, customers.size()); ++i)
    if (const auto& c = customers[i]; !c.failed && !c.token.empty())
      out << json{{"email", c.email}, {"password", c.password}, {"id", c.id}, {"token", c.token}}
               .dump()
          << "\n";
}

std::vector<std::string> commerce_state::customer_ids() const {
  std::vector<std::string> ids;
  std::set<std::string> seen;
  for (const auto& c : customers)
    if (!c.id.empty() && seen.insert(c.id).second)
      ids.push_back(c.id);
  return ids;
}

void prepare_accounts(commerce_state& s, const target& where, std::size_t accounts,
                      std::size_t parallel) {
  accounts = std::max<std::size_t>(1, std::min(accounts, s.customers.size()));
  std::atomic<std::size_t> next{0};
  auto note = [&s](const std::string& what, const std::string& body) {
    std::lock_guard lock{s.mu};
    if (s.setup_errors.size() < 10)
      s.setup_errors.emplace(what, body.substr(0, 200));
  };
  // Overloaded answers are retried, for up to about a minute: on a loaded machine the password
  // hashing queue answers 503/504 for a while. A sign-up that timed out may have happened (then
  // 409).
  constexpr int attempts = 36;
  auto call = [&](const std::string& path, const json& body, int want) -> std::optional<json> {
    for (int attempt = 0; attempt < attempts; ++attempt) {
      auto r = fetch(where, "POST", path, body.dump(), {}, 30);
      if (r.status == want || (path == "/customers" && r.status == 409))
        return r.status == 409 ? json::object() : parse(r.body);
      if (r.status == 404 || r.status == 405) {
        std::lock_guard lock{s.mu};
        s.unavailable = "POST " + path + " answered " + std::to_string(r.status);
        return std::nullopt;
      }
      if (r.status != 0 && r.status != 429 && r.status != 503 && r.status != 504) {
        note("POST " + path + " " + std::to_string(r.status), r.body);
        return std::nullopt;
      }
      if (r.status == 0)
        note("POST " + path + " no answer", r.error);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(200 * (attempt + 1), 2000)));
    }
    note("POST " + path + " gave up", "overloaded " + std::to_string(attempts) + " times");
    return std::nullopt;
  };
  auto work = [&] {
    for (auto i = next++; i < accounts; i = next++) {
      auto& c = s.customers[i]; // each index is this thread's alone
      if (!c.token.empty())
        continue;
      if (c.id.empty()) {
        auto r = call("/customers",
                      {{"email", c.email}, {"name", "Bench Customer"}, {"password", c.password}},
                      201);
        if (!r) {
          c.failed = true;
          continue;
        }
        c.id = field(*r, "id");
      }
      auto r = call("/sessions", {{"email", c.email}, {"password", c.password}}, 200);
      if (!r || field(*r, "token").empty()) {
        c.failed = true;
        continue;
      }
      c.token = field(*r, "token");
      c.id = field(*r, "customer_id").empty() ? c.id : field(*r, "customer_id");
    }
  };
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < std::max<std::size_t>(1, parallel); ++t)
    threads.emplace_back(work);
  for (auto& t : threads)
    t.join();
  // Every other simulated customer shops on an account's credentials, with a cart of its own.
  for (std::size_t i = accounts; i < s.customers.size(); ++i) {
    const auto& a = s.customers[i % accounts];
    auto& c = s.customers[i];
    c.email = a.email;
    c.password = a.password;
    c.id = a.id;
    c.token = a.token;
    c.failed = a.failed;
  }
  s.accounts = accounts;
}

namespace {

// -- get, product-get -----------------------------------------------------------------------

class fixed_user : public user {
 public:
  explicit fixed_user(std::string path) : path_(std::move(path)) {}
  bool next(request& out) override {
    out.target = path_;
    out.op = 0;
    return true;
  }
  bool on_answer(const request&, int status, const std::string&, bool) override {
    return success(status);
  }

 private:
  std::string path_;
};

/// Random products; or, with `once`, every product of the catalog exactly once, in catalog
/// order, handed out from a shared counter (activates every product actor; the run ends when
/// all are done).
class product_get_user : public user {
 public:
  product_get_user(const catalog& c, std::atomic<std::size_t>* once, std::uint64_t seed)
    : cat_(c), once_(once), rng_(seed) {}
  bool next(request& out) override {
    out.op = 0;
    out.target = "/products/";
    if (once_) {
      auto i = once_->fetch_add(1);
      if (i >= cat_.size())
        return false;
      out.target += cat_.ids()[i];
      return true;
    }
    out.target += cat_.pick(rng_);
    return true;
  }
  bool on_answer(const request&, int status, const std::string&, bool) override {
    return status == 200;
  }

 private:
  const catalog& cat_;
  std::atomic<std::size_t>* once_;
  std::mt19937_64 rng_;
};

class product_get_scenario : public scenario {
 public:
  product_get_scenario(const catalog& c, bool once) : cat_(c), once_(once) {}
  std::vector<std::string> operations() const override { return {"product"}; }
  std::unique_ptr<user> make_user(std::size_t, std::uint64_t seed) override {
    return std::make_unique<product_get_user>(cat_, once_ ? &next_ : nullptr, seed);
  }

 private:
  const catalog& cat_;
  bool once_;
  std::atomic<std::size_t> next_{0};
};

template <class User, class... Args>
class simple_scenario : public scenario {
 public:
  simple_scenario(std::vector<std::string> ops, Args... args)
    : ops_(std::move(ops)), args_(std::move(args)...) {}
  std::vector<std::string> operations() const override { return ops_; }
  std::unique_ptr<user> make_user(std::size_t, std::uint64_t seed) override {
    return std::apply([seed](auto&... a) { return make(seed, a...); }, args_);
  }

 private:
  template <class... A>
  static std::unique_ptr<user> make(std::uint64_t seed, A&... a) {
    if constexpr (std::is_constructible_v<User, A&..., std::uint64_t>)
      return std::make_unique<User>(a..., seed);
    else
      return std::make_unique<User>(a...);
  }
  std::vector<std::string> ops_;
  std::tuple<Args...> args_;
};

// -- stock-patch --------------------------------------------------------------------------------

/// Admin PATCHes of the stock of the first `products` catalog ids, in turn, each to a value no
/// other request of the run sets (a shared counter): every one is a change, and so an event of
/// the product's feed.
class stock_patch_user : public user {
 public:
  stock_patch_user(const catalog& c, std::size_t products, std::string admin_key,
                   std::atomic<std::int64_t>& counter)
    : cat_(c),
      products_(std::max<std::size_t>(1, std::min(products, c.size()))),
      key_(std::move(admin_key)),
      counter_(counter) {}
  bool next(request& out) override {
    auto n = counter_.fetch_add(1);
    out.op = 0;
    out.method = "PATCH";
    out.target = "/products/" + cat_.ids()[static_cast<std::size_t>(n) % products_];
    out.body = json{{"stock", 1'000'000 + n % 100'000'000}}.dump();
    out.bearer = key_;
    return true;
  }
  bool on_answer(const request&, int status, const std::string&, bool) override {
    return status == 200;
  }

 private:
  const catalog& cat_;
  std::size_t products_;
  std::string key_;
  std::atomic<std::int64_t>& counter_;
};

class stock_patch_scenario : public scenario {
 public:
  stock_patch_scenario(const catalog& c, std::size_t products, std::string key)
    : cat_(c), products_(products), key_(std::move(key)) {}
  std::vector<std::string> operations() const override { return {"patch-stock"}; }
  std::unique_ptr<user> make_user(std::size_t, std::uint64_t) override {
    return std::make_unique<stock_patch_user>(cat_, products_, key_, counter_);
  }

 private:
  const catalog& cat_;
  std::size_t products_;
  std::string key_;
  std::atomic<std::int64_t> counter_{0};
};

// -- browse ---------------------------------------------------------------------------------

/// A shopper leafing through the catalog: a list page (a category one time in two), one to
/// three products from it, then the next page (six times in ten) or a fresh start.
class browse_user : public user {
 public:
  enum op { list = 0, product = 1 };
  browse_user(const catalog&, std::uint64_t seed) : rng_(seed) {}

  bool next(request& out) override {
    fill(out);
    return true;
  }

  /// The next request (never the last: these users run until the window closes).
  void fill(request& out) {
    if (!to_view_.empty()) {
      out.target = "/products/" + to_view_.back();
      to_view_.pop_back();
      out.op = product;
      return;
    }
    out.target = "/products?limit=20";
    if (!category_.empty())
      out.target += "&category=" + category_;
    if (!cursor_.empty())
      out.target += "&cursor=" + url_encode(cursor_);
    out.op = list;
  }

  bool on_answer(const request& req, int status, const std::string& body, bool) override {
    if (req.op == product)
      return status == 200;
    if (status != 200) {
      restart();
      return false;
    }
    auto ids = string_values(body, "id", 100);
    std::shuffle(ids.begin(), ids.end(), rng_);
    ids.resize(std::min<std::size_t>(ids.size(), static_cast<std::size_t>(uniform(rng_, 1, 3))));
    to_view_ = std::move(ids);
    auto cursors = string_values(body, "next_cursor", 1);
    if (!cursors.empty() && coin(rng_) < 0.6)
      cursor_ = cursors.front();
    else
      restart();
    return true;
  }

  void on_failure(const request&, error_kind) override {
    to_view_.clear();
    restart();
  }

 private:
  void restart() {
    cursor_.clear();
    category_ = coin(rng_) < 0.5 ? any_of(categories, rng_) : "";
  }
  std::mt19937_64 rng_;
  std::vector<std::string> to_view_;
  std::string cursor_;
  std::string category_;
};

// -- search ---------------------------------------------------------------------------------

/// A query mix shaped like a shop's search box: mostly one or two words, some narrowed by
/// category, price or availability, some sorted, a few misspelt or empty-handed, and now and
/// then the next page of the same query.
class search_user : public user {
 public:
  search_user(const catalog&, std::uint64_t seed) : rng_(seed) {}

  bool next(request& out) override {
    fill(out);
    return true;
  }

  /// The next request (never the last: these users run until the window closes).
  void fill(request& out) {
    out.op = 0;
    if (!next_page_.empty()) {
      out.target = next_page_;
      next_page_.clear();
      return;
    }
    std::string q;
    std::string extra;
    double r = coin(rng_);
    if (r < 0.40) {
      q = any_of(nouns, rng_);
    } else if (r < 0.60) {
      q = std::string{any_of(modifiers, rng_)} + " " + any_of(nouns, rng_);
    } else if (r < 0.75) {
      q = any_of(nouns, rng_);
      extra = std::string{"&category="} + any_of(categories, rng_);
    } else if (r < 0.85) {
      q = any_of(nouns, rng_);
      int lo = uniform(rng_, 0, 50) * 100;
      extra = "&min_price=" + std::to_string(lo)
              + "&max_price=" + std::to_string(lo + uniform(rng_, 10, 200) * 100);
    } else if (r < 0.90) {
      q = any_of(modifiers, rng_);
      extra = coin(rng_) < 0.5 ? "&in_stock=true&sort=price_asc" : "&in_stock=true&sort=price_desc";
    } else if (r < 0.95) {
      extra = std::string{"&category="} + any_of(categories, rng_) + "&sort=newest";
    } else {
      q = any_of(misspelt, rng_);
    }
    base_ = "/search?limit=20";
    if (!q.empty())
      base_ += "&q=" + url_encode(q);
    base_ += extra;
    out.target = base_;
  }

  bool on_answer(const request&, int status, const std::string& body, bool) override {
    if (status != 200)
      return false;
    if (coin(rng_) < 0.2) {
      auto cursors = string_values(body, "next_cursor", 1);
      if (!cursors.empty())
        next_page_ = base_ + "&cursor=" + url_encode(cursors.front());
    }
    return true;
  }

 private:
  std::mt19937_64 rng_;
  std::string base_;
  std::string next_page_;
};

// -- customers' set-up, shared by checkout and mix ----------------------------------------

/// Opens a cart for every simulated customer (and registers or logs in any whose account is
/// not ready), from a shared queue: every connection helps, so thousands are ready quickly.
class customer_setup {
 public:
  enum op { op_register = 100, op_login, op_cart };

  /// Only `active` set-ups run.
  customer_setup(commerce_state& s, bool active) : s_(s), active_(active) {}

  bool next(request& out) {
    if (!active_)
      return false;
    std::lock_guard lock{s_.mu};
    for (;;) {
      if (!s_.unavailable.empty())
        return false;
      if (cur_ == none) {
        if (s_.next_setup >= s_.customers.size())
          return false;
        cur_ = s_.next_setup++;
      }
      auto& c = s_.customers[cur_];
      out = request{};
      if (c.failed || c.login_attempts > 2) {
        c.failed = true;
        ++s_.setup_failed_customers;
        cur_ = none;
        continue;
      }
      if (c.id.empty()) {
        out.method = "POST";
        out.target = "/customers";
        out.body =
          json{{"email", c.email}, {"name", "Bench Customer"}, {"password", c.password}}.dump();
        out.op = op_register;
      } else if (c.token.empty()) {
        ++c.login_attempts;
        out.method = "POST";
        out.target = "/sessions";
        out.body = json{{"email", c.email}, {"password", c.password}}.dump();
        out.op = op_login;
      } else if (c.cart_id.empty()) {
        out.method = "POST";
        out.target = "/carts";
        out.bearer = c.token;
        out.body = "{}";
        out.op = op_cart;
      } else {
        s_.free.push_back(cur_);
        cur_ = none;
        continue;
      }
      return true;
    }
  }

  bool on_answer(const request& req, int status, const std::string& body) {
    std::lock_guard lock{s_.mu};
    auto& c = s_.customers[cur_];
    if (status == 404 || status == 405 || status == 501) {
      s_.unavailable = req.method + " " + req.target + " answered " + std::to_string(status);
      return false;
    }
    if ((status == 429 || status == 503 || status == 504) && ++c.retries <= 5) {
      // Overloaded: the same step again (a 504'd sign-up may have happened: 409 then logs in).
      if (req.op == op_login)
        --c.login_attempts;
      return true;
    }
    auto j = parse(body);
    switch (req.op) {
      case op_register:
        if (status == 201) {
          c.id = field(j, "id");
          return !c.id.empty();
        }
        if (status == 409) { // registered already (an earlier run, or a retried sign-up)
          c.id = "?";
          return true;
        }
        break;
      case op_login:
        if (status == 200) {
          c.token = field(j, "token");
          auto id = field(j, "customer_id");
          if (!id.empty())
            c.id = id;
          return !c.token.empty();
        }
        break;
      case op_cart:
        if (status == 201) {
          c.cart_id = field(j, "id");
          c.cart.clear();
          return !c.cart_id.empty();
        }
        if (status == 401) { // a saved token expired
          c.token.clear();
          return false;
        }
        break;
    }
    c.failed = true;
    auto what = req.method + " " + (req.op == op_cart ? std::string{"/carts"} : req.target) + " "
                + std::to_string(status);
    if (s_.setup_errors.size() < 10)
      s_.setup_errors.emplace(what, body.substr(0, 200));
    return false;
  }

  void on_failure(const request& req, error_kind kind) {
    std::lock_guard lock{s_.mu};
    if (cur_ != none)
      s_.customers[cur_].failed = true;
    if (s_.setup_errors.size() < 10)
      s_.setup_errors.emplace(
        req.method + " " + req.target + " " + error_kind_names[static_cast<std::size_t>(kind)],
        "no answer");
  }

 private:
  static constexpr std::size_t none = ~std::size_t{0};
  commerce_state& s_;
  std::size_t cur_ = none;
  bool active_;
};

/// Takes a random ready customer for the length of one flow.
std::size_t acquire(commerce_state& s, std::mt19937_64& rng) {
  std::lock_guard lock{s.mu};
  if (s.free.empty())
    throw std::logic_error("no free customer (fewer customers than connections?)");
  auto i = std::uniform_int_distribution<std::size_t>{0, s.free.size() - 1}(rng);
  std::swap(s.free[i], s.free.back());
  auto c = s.free.back();
  s.free.pop_back();
  return c;
}

void release(commerce_state& s, std::size_t c) {
  std::lock_guard lock{s.mu};
  s.free.push_back(c);
}

/// Records a 201 checkout answer; returns the order id (empty when the answer has none).
std::string acknowledge(commerce_state& s, const customer& c, const std::string& body,
                        bool measured) {
  auto j = parse(body);
  accounting::acknowledged_order a;
  a.order_id = field(j, "id");
  a.customer_id = c.id;
  if (j.is_object() && j.contains("items") && j["items"].is_array()) {
    for (const auto& item : j["items"])
      if (item.is_object() && item.contains("quantity") && item["quantity"].is_number_integer())
        a.lines.emplace_back(field(item, "product_id"), item["quantity"].get<std::int64_t>());
  } else {
    a.lines = c.cart;
  }
  std::lock_guard lock{s.mu};
  if (!a.order_id.empty()) {
    s.acks.push_back(a);
    if (measured)
      ++s.acks_measured;
    if (s.checkout_409)
      ++s.acks_after_first_409;
  }
  return a.order_id;
}

/// A correct refusal of a checkout or a cart line: 409 short of stock, 422 a parcel no
/// shipping zone takes (too heavy). Counted, and not an error of the server.
bool refusal(commerce_state& s, int status) {
  if (status != 409 && status != 422)
    return false;
  std::lock_guard lock{s.mu};
  ++(status == 409 ? s.out_of_stock : s.unshippable);
  return true;
}

std::string next_key(commerce_state& s) {
  std::lock_guard lock{s.mu};
  return s.run_id + "-" + std::to_string(++s.keys);
}

/// The steps that change a cart and buy it, shared by checkout and mix.
struct shop_flow {
  enum op { cart_create, cart_add, checkout, pay };

  static void put_item(request& out, const customer& c, const std::string& pid, std::int64_t q,
                       int op) {
    out.method = "PUT";
    out.target = "/carts/" + c.cart_id + "/items/" + pid;
    out.bearer = c.token;
    out.body = "{\"quantity\":" + std::to_string(q) + "}";
    out.op = op;
  }
  static void new_cart(request& out, const customer& c, int op) {
    out.method = "POST";
    out.target = "/carts";
    out.bearer = c.token;
    out.body = "{}";
    out.op = op;
  }
  static void check_out(request& out, commerce_state& s, const customer& c, int op) {
    out.method = "POST";
    out.target = "/carts/" + c.cart_id + "/checkout";
    out.bearer = c.token;
    out.idempotency_key = next_key(s);
    out.body = json{{"shipping_address", shipping_address}}.dump();
    out.op = op;
  }
  static void pay_order(request& out, const customer& c, const std::string& order_id, int op) {
    out.method = "POST";
    out.target = "/orders/" + order_id + "/payments";
    out.bearer = c.token;
    out.body = R"({"payment_method":"tok_visa"})";
    out.op = op;
  }
  static void set_line(customer& c, const std::string& pid, std::int64_t q) {
    for (auto& [p, n] : c.cart)
      if (p == pid) {
        n = q;
        return;
      }
    c.cart.emplace_back(pid, q);
  }
};

// -- checkout -------------------------------------------------------------------------------

/// One customer at a time: open a cart if needed, put 1..max_lines products in it (1 or 2 of
/// each), check out (201: an order to account for; 409: short of stock, a correct refusal),
/// pay with tok_visa, then the next customer.
class checkout_user : public user {
 public:
  checkout_user(commerce_state& s, bool sets_up, int max_lines, std::int64_t quantity,
                std::uint64_t seed)
    : s_(s), setup_(s, sets_up), max_lines_(max_lines), quantity_(quantity), rng_(seed) {}

  bool setup(request& out) override { return setup_.next(out); }

  bool next(request& out) override {
    fill(out);
    return true;
  }

  /// The next request (never the last: these users run until the window closes).
  void fill(request& out) {
    if (cur_ == none) {
      cur_ = acquire(s_, rng_);
      plan();
    }
    auto& c = s_.customers[cur_];
    if (!order_id_.empty())
      return shop_flow::pay_order(out, c, order_id_, shop_flow::pay);
    if (c.cart_id.empty())
      return shop_flow::new_cart(out, c, shop_flow::cart_create);
    if (!plan_.empty()) {
      auto [pid, q] = plan_.back();
      return shop_flow::put_item(out, c, pid, q, shop_flow::cart_add);
    }
    shop_flow::check_out(out, s_, c, shop_flow::checkout);
  }

  bool on_answer(const request& req, int status, const std::string& body, bool measured) override {
    if (req.op >= customer_setup::op_register)
      return setup_.on_answer(req, status, body);
    auto& c = s_.customers[cur_];
    switch (req.op) {
      case shop_flow::cart_create:
        if (status == 201) {
          c.cart_id = field(parse(body), "id");
          c.cart.clear();
          return true;
        }
        done();
        return false;
      case shop_flow::cart_add: {
        auto [pid, q] = plan_.back();
        plan_.pop_back();
        if (status == 200) {
          shop_flow::set_line(c, pid, q);
          return true;
        }
        bool refused = refusal(s_, status);
        if (status == 404 || status == 410) // the cart is gone: start over
          c.cart_id.clear();
        if (c.cart.empty() && plan_.empty())
          done();
        return refused;
      }
      case shop_flow::checkout:
        if (status == 201) {
          order_id_ = acknowledge(s_, c, body, measured);
          c.cart_id.clear();
          c.cart.clear();
          if (order_id_.empty())
            done();
          return true;
        }
        {
          // Refused (leave that cart) or failed; a 5xx may have committed all the same.
          bool refused = refusal(s_, status);
          if (status == 409) {
            std::lock_guard lock{s_.mu};
            ++s_.checkout_409;
          }
          if (status >= 500)
            count_ambiguous();
          c.cart_id.clear();
          c.cart.clear();
          done();
          return refused;
        }
      case shop_flow::pay: {
        bool ok = status == 200;
        {
          std::lock_guard lock{s_.mu};
          ++(ok ? s_.payments_ok : s_.payments_failed);
        }
        order_id_.clear();
        done();
        return ok;
      }
    }
    return false;
  }

  void on_failure(const request& req, error_kind kind) override {
    if (req.op >= customer_setup::op_register)
      return setup_.on_failure(req, kind);
    if (cur_ == none)
      return;
    auto& c = s_.customers[cur_];
    if (req.op == shop_flow::checkout)
      count_ambiguous();
    if (req.op != shop_flow::pay) {
      c.cart_id.clear(); // its state is unknown now
      c.cart.clear();
    }
    order_id_.clear();
    done();
  }

 private:
  static constexpr std::size_t none = ~std::size_t{0};

  void plan() {
    plan_.clear();
    auto n = uniform(rng_, 1, std::max(1, max_lines_));
    for (int i = 0; i < n; ++i) {
      const auto& pid =
        s_.stocked[std::uniform_int_distribution<std::size_t>{0, s_.stocked.size() - 1}(rng_)];
      bool dup = std::any_of(plan_.begin(), plan_.end(), [&](auto& l) { return l.first == pid; });
      if (!dup)
        plan_.emplace_back(pid, quantity_ > 0 ? quantity_ : uniform(rng_, 1, 2));
    }
  }
  void done() {
    if (cur_ != none)
      release(s_, cur_);
    cur_ = none;
    plan_.clear();
  }
  void count_ambiguous() {
    std::lock_guard lock{s_.mu};
    ++s_.ambiguous;
  }

  commerce_state& s_;
  customer_setup setup_;
  int max_lines_;
  std::int64_t quantity_;
  std::mt19937_64 rng_;
  std::size_t cur_ = none;
  std::vector<std::pair<std::string, std::int64_t>> plan_;
  std::string order_id_;
};

class commerce_scenario : public scenario {
 public:
  enum kind { checkout, mix };
  commerce_scenario(kind k, commerce_state& s, const catalog* cat, int max_lines,
                    std::int64_t quantity)
    : k_(k), s_(s), cat_(cat), max_lines_(max_lines), quantity_(quantity) {}
  std::vector<std::string> operations() const override;
  std::unique_ptr<user> make_user(std::size_t, std::uint64_t seed) override;
  bool has_setup() const override { return true; }

 private:
  kind k_;
  commerce_state& s_;
  const catalog* cat_;
  int max_lines_;
  std::int64_t quantity_;
};

// -- mix ------------------------------------------------------------------------------------

/// Online Boutique's load generator ratios: browse 10 : view cart 3 : add to cart 2 : index 1 :
/// checkout 1. Each action is done for a random customer of a large pool (their carts persist
/// between actions); checkout means check out (adding an item first if the cart is empty), pay,
/// and open a new cart.
class mix_user : public user {
 public:
  enum op { browse = 0, view_cart, add_to_cart, index, checkout, pay, cart_create };

  mix_user(commerce_state& s, bool sets_up, const catalog& cat, std::uint64_t seed)
    : s_(s), setup_(s, sets_up), cat_(cat), rng_(seed) {}

  bool setup(request& out) override { return setup_.next(out); }

  bool next(request& out) override {
    fill(out);
    return true;
  }

  /// The next request (never the last: these users run until the window closes).
  void fill(request& out) {
    if (phase_ != phase::idle)
      return continue_checkout(out);
    int r = uniform(rng_, 1, 17);
    if (r <= 10) {
      out.target = "/products/" + cat_.pick(rng_);
      out.op = browse;
    } else if (r <= 15) {
      cur_ = acquire(s_, rng_);
      phase_ = phase::single;
      auto& c = s_.customers[cur_];
      if (c.cart_id.empty())
        return shop_flow::new_cart(out, c, cart_create);
      if (r <= 13) {
        out.target = "/carts/" + c.cart_id;
        out.bearer = c.token;
        out.op = view_cart;
      } else {
        pending_pid_ = pick_stocked();
        pending_q_ = uniform(rng_, 1, 3);
        shop_flow::put_item(out, c, pending_pid_, pending_q_, add_to_cart);
      }
    } else if (r == 16) {
      out.target = "/products?limit=20";
      if (coin(rng_) < 0.5)
        out.target += std::string{"&category="} + any_of(categories, rng_);
      out.op = index;
    } else {
      cur_ = acquire(s_, rng_);
      phase_ = phase::cart;
      continue_checkout(out);
    }
  }

  bool on_answer(const request& req, int status, const std::string& body, bool measured) override {
    if (req.op >= customer_setup::op_register)
      return setup_.on_answer(req, status, body);
    if (req.op == browse || req.op == index)
      return status == 200;
    auto& c = s_.customers[cur_];
    switch (req.op) {
      case cart_create: {
        bool ok = status == 201;
        if (ok) {
          c.cart_id = field(parse(body), "id");
          c.cart.clear();
        }
        if (ok && phase_ == phase::cart)
          phase_ = phase::fill;
        else
          done();
        return ok;
      }
      case view_cart:
        if (status == 404)
          c.cart_id.clear();
        done();
        return status == 200;
      case add_to_cart: {
        bool refused = status != 200 && refusal(s_, status);
        if (status == 200)
          shop_flow::set_line(c, pending_pid_, pending_q_);
        else if (status == 404)
          c.cart_id.clear();
        if (status == 200 && phase_ == phase::fill)
          phase_ = phase::buy;
        else
          done();
        return status == 200 || refused;
      }
      case checkout: {
        bool refused = false;
        if (status == 201) {
          order_id_ = acknowledge(s_, c, body, measured);
        } else {
          refused = refusal(s_, status);
          if (status >= 500) {
            std::lock_guard lock{s_.mu};
            ++s_.ambiguous;
          }
        }
        // Bought or refused, this cart is finished: pay, then open the next one.
        c.cart_id.clear();
        c.cart.clear();
        phase_ = order_id_.empty() ? phase::reopen : phase::pay;
        return status == 201 || refused;
      }
      case pay: {
        bool ok = status == 200;
        {
          std::lock_guard lock{s_.mu};
          ++(ok ? s_.payments_ok : s_.payments_failed);
        }
        order_id_.clear();
        phase_ = phase::reopen;
        return ok;
      }
    }
    return false;
  }

  void on_failure(const request& req, error_kind kind) override {
    if (req.op >= customer_setup::op_register)
      return setup_.on_failure(req, kind);
    if (cur_ == none)
      return;
    auto& c = s_.customers[cur_];
    if (req.op == checkout) {
      std::lock_guard lock{s_.mu};
      ++s_.ambiguous;
    }
    if (req.op != view_cart) { // its state is unknown now: the next action opens a new one
      c.cart_id.clear();
      c.cart.clear();
    }
    order_id_.clear();
    done();
  }

 private:
  static constexpr std::size_t none = ~std::size_t{0};
  /// Where a customer's current action is. Checkout: cart → fill → buy → pay → reopen.
  enum class phase { idle, single, cart, fill, buy, pay, reopen };

  void continue_checkout(request& out) {
    auto& c = s_.customers[cur_];
    if (phase_ == phase::cart) {
      if (c.cart_id.empty())
        return shop_flow::new_cart(out, c, cart_create);
      phase_ = phase::fill;
    }
    if (phase_ == phase::fill) {
      if (c.cart.empty()) {
        pending_pid_ = pick_stocked();
        pending_q_ = 1;
        return shop_flow::put_item(out, c, pending_pid_, pending_q_, add_to_cart);
      }
      phase_ = phase::buy;
    }
    if (phase_ == phase::buy)
      return shop_flow::check_out(out, s_, c, checkout);
    if (phase_ == phase::pay)
      return shop_flow::pay_order(out, c, order_id_, pay);
    shop_flow::new_cart(out, c, cart_create); // reopen
  }

  std::string pick_stocked() {
    return s_.stocked[std::uniform_int_distribution<std::size_t>{0, s_.stocked.size() - 1}(rng_)];
  }

  void done() {
    if (cur_ != none)
      release(s_, cur_);
    cur_ = none;
    phase_ = phase::idle;
  }

  commerce_state& s_;
  customer_setup setup_;
  const catalog& cat_;
  std::mt19937_64 rng_;
  std::size_t cur_ = none;
  phase phase_ = phase::idle;
  std::string order_id_;
  std::string pending_pid_;
  std::int64_t pending_q_ = 1;
};

std::vector<std::string> commerce_scenario::operations() const {
  if (k_ == checkout)
    return {"cart_create", "cart_add", "checkout", "pay"};
  return {"browse", "view_cart", "add_to_cart", "index", "checkout", "pay", "cart_create"};
}

std::unique_ptr<user> commerce_scenario::make_user(std::size_t, std::uint64_t seed) {
  bool sets_up = true; // carts only: accounts were prepared before (prepare_accounts)
  if (k_ == checkout)
    return std::make_unique<checkout_user>(s_, sets_up, max_lines_, quantity_, seed);
  return std::make_unique<mix_user>(s_, sets_up, *cat_, seed);
}

// -- a fixed number of requests --------------------------------------------------------------

class capped_user : public user {
 public:
  capped_user(std::unique_ptr<user> inner, std::atomic<std::int64_t>& left)
    : inner_(std::move(inner)), left_(left) {}
  bool setup(request& out) override { return inner_->setup(out); }
  bool next(request& out) override { return left_.fetch_sub(1) > 0 && inner_->next(out); }
  bool on_answer(const request& req, int status, const std::string& body, bool measured) override {
    return inner_->on_answer(req, status, body, measured);
  }
  void on_failure(const request& req, error_kind kind) override { inner_->on_failure(req, kind); }

 private:
  std::unique_ptr<user> inner_;
  std::atomic<std::int64_t>& left_;
};

class capped_scenario : public scenario {
 public:
  capped_scenario(std::unique_ptr<scenario> inner, std::uint64_t n)
    : inner_(std::move(inner)), left_(static_cast<std::int64_t>(n)) {}
  std::vector<std::string> operations() const override { return inner_->operations(); }
  std::unique_ptr<user> make_user(std::size_t index, std::uint64_t seed) override {
    return std::make_unique<capped_user>(inner_->make_user(index, seed), left_);
  }
  bool has_setup() const override { return inner_->has_setup(); }

 private:
  std::unique_ptr<scenario> inner_;
  std::atomic<std::int64_t> left_;
};

} // namespace

std::unique_ptr<scenario> cap_requests(std::unique_ptr<scenario> inner,
                                       std::uint64_t max_requests) {
  return std::make_unique<capped_scenario>(std::move(inner), max_requests);
}

const std::vector<std::string>& scenario_names() {
  static const std::vector<std::string> names{"get",    "product-get", "browse",
                                              "search", "checkout",    "hot-sku",
                                              "mix",    "stock-patch", "subscribe"};
  return names;
}

std::unique_ptr<scenario> make_scenario(const scenario_options& o, const catalog* cat,
                                        commerce_state* shop) {
  if (o.name == "get")
    return std::make_unique<simple_scenario<fixed_user, std::string>>(
      std::vector<std::string>{"get"}, o.path);
  if (!cat && o.name != "hot-sku")
    throw std::invalid_argument("scenario " + o.name + " needs the catalog's ids");
  if (o.name == "product-get")
    return std::make_unique<product_get_scenario>(*cat, o.once);
  if (o.name == "browse")
    return std::make_unique<simple_scenario<browse_user, std::reference_wrapper<const catalog>>>(
      std::vector<std::string>{"list", "product"}, std::cref(*cat));
  if (o.name == "search")
    return std::make_unique<simple_scenario<search_user, std::reference_wrapper<const catalog>>>(
      std::vector<std::string>{"search"}, std::cref(*cat));
  if (o.name == "stock-patch") {
    if (o.admin_key.empty())
      throw std::invalid_argument(
        "scenario stock-patch changes products: give --admin-key (or EMPORIUM_ADMIN_KEY)");
    return std::make_unique<stock_patch_scenario>(*cat, o.products, o.admin_key);
  }
  if (o.name == "checkout" || o.name == "mix" || o.name == "hot-sku") {
    if (!shop)
      throw std::invalid_argument("scenario " + o.name + " needs the shop state");
    // hot-sku is checkout's flow on a one-product list (shop->stocked), one line per order.
    bool hot = o.name == "hot-sku";
    return std::make_unique<commerce_scenario>(
      o.name == "mix" ? commerce_scenario::mix : commerce_scenario::checkout, *shop, cat,
      hot ? 1 : o.max_lines, hot && o.quantity <= 0 ? 1 : o.quantity);
  }
  throw std::invalid_argument("unknown scenario '" + o.name + "'");
}

} // namespace emporium::bench
