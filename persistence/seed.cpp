#include "persistence/seed.hpp"

#include "core/ids.hpp"

#include <array>
#include <random>
#include <string_view>
#include <tuple>

namespace emporium::persistence {

namespace {

struct category {
  std::string_view name;
  std::array<std::string_view, 6> nouns;
  std::int64_t min_price, max_price, min_weight, max_weight;
};

constexpr std::array<category, 12> categories{{
  {"electronics",
   {"Headphones", "Bluetooth Speaker", "USB-C Charger", "Mechanical Keyboard", "Wireless Mouse",
    "Webcam"},
   1499,
   39999,
   40,
   2500},
  {"kitchen",
   {"Kettle", "Cast Iron Skillet", "Chef Knife", "Blender", "Teapot", "Cutting Board"},
   899,
   24999,
   200,
   4500},
  {"outdoor",
   {"Tent", "Hiking Backpack", "Sleeping Bag", "Camping Lantern", "Water Bottle", "Trekking Poles"},
   1299,
   59999,
   150,
   6000},
  {"home",
   {"Table Lamp", "Throw Blanket", "Cushion", "Flower Vase", "Area Rug", "Scented Candle"},
   599,
   29999,
   100,
   8000},
  {"fashion",
   {"Rain Jacket", "Scarf", "Sneakers", "Leather Wallet", "Sunglasses", "Beanie"},
   999,
   19999,
   50,
   1500},
  {"sports",
   {"Yoga Mat", "Dumbbell", "Jump Rope", "Tennis Racket", "Football", "Cycling Gloves"},
   499,
   14999,
   100,
   10000},
  {"books",
   {"Notebook", "Travel Journal", "Cookbook", "Daily Planner", "Sketchbook", "Atlas"},
   399,
   4999,
   150,
   1200},
  {"toys",
   {"Jigsaw Puzzle", "Building Blocks", "Kite", "Board Game", "Plush Bear", "Toy Train"},
   499,
   9999,
   100,
   2500},
  {"beauty",
   {"Bar Soap", "Shampoo", "Hand Lotion", "Perfume", "Lip Balm", "Face Serum"},
   299,
   12999,
   30,
   600},
  {"garden",
   {"Watering Can", "Planter", "Pruning Shears", "Garden Hose", "Seed Starter Kit", "Bird Feeder"},
   599,
   14999,
   100,
   7000},
  {"office",
   {"Desk Organizer", "Fountain Pen", "Stapler", "Desk Lamp", "Monitor Stand", "Whiteboard"},
   299,
   19999,
   50,
   5000},
  {"pets",
   {"Dog Leash", "Cat Bed", "Pet Bowl", "Chew Toy", "Bird Cage", "Aquarium Filter"},
   299,
   15999,
   50,
   6000},
}};

constexpr std::array<std::string_view, 16> adjectives{
  "Classic",  "Premium",    "Compact",    "Deluxe", "Vintage",  "Modern",
  "Rustic",   "Ultralight", "Ergonomic",  "Eco",    "Handmade", "Smart",
  "Portable", "Heavy-Duty", "Minimalist", "Organic"};

constexpr std::array<std::string_view, 16> materials{
  "Oak",    "Bamboo", "Steel",  "Copper",  "Ceramic",  "Linen",   "Leather", "Wool",
  "Cotton", "Glass",  "Walnut", "Granite", "Midnight", "Crimson", "Sage",    "Cobalt"};

constexpr std::array<std::string_view, 10> benefits{
  "built to last for years of daily use",        "designed for comfort and easy cleaning",
  "a favourite gift for the holidays",           "tested by our team on long weekend trips",
  "with a two-year warranty and free returns",   "light enough to carry anywhere",
  "made in small batches by independent makers", "finished by hand with natural oils",
  "the quiet, reliable choice for busy homes",   "packed in recycled, plastic-free packaging"};

constexpr const char* count_products = "SELECT count(*) FROM products";

} // namespace

std::int64_t seed_catalog(pg_session& session, const seed_options& opts) {
  pqxx::work tx{session.connection()};
  // A large COPY outlasts the per-statement timeout meant for requests; seeding is an
  // operator's command, not a request.
  tx.exec("SET LOCAL statement_timeout = 0");
  if (opts.if_empty && tx.exec(count_products)[0][0].as<std::int64_t>() > 0)
    return 0;
  std::mt19937_64 rng{opts.random_seed};
  auto pick = [&rng](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>{lo, hi}(rng);
  };
  pqxx::stream_to out{
    tx, "products",
    std::vector<std::string>{"id", "sku", "name", "description", "price_cents", "currency",
                             "category", "stock", "weight_grams", "images"}};
  for (std::int64_t i = 0; i < opts.products; ++i) {
    const auto& cat = categories[static_cast<std::size_t>(pick(0, categories.size() - 1))];
    auto noun = cat.nouns[static_cast<std::size_t>(pick(0, cat.nouns.size() - 1))];
    auto adj = adjectives[static_cast<std::size_t>(pick(0, adjectives.size() - 1))];
    auto mat = materials[static_cast<std::size_t>(pick(0, materials.size() - 1))];
    auto benefit = benefits[static_cast<std::size_t>(pick(0, benefits.size() - 1))];
    auto id = core::new_id("prod");
    std::string name;
    name.append(adj).append(" ").append(mat).append(" ").append(noun);
    std::string description = "A ";
    description.append(adj).append(" ").append(noun).append(" in ").append(mat).append(", ");
    description.append(benefit).append(". Part of our ").append(cat.name).append(" collection.");
    // Round prices end in 99 cents, as shops price them; a tenth of the catalog is sold out.
    auto price = pick(cat.min_price / 100, cat.max_price / 100) * 100 + 99;
    auto stock = pick(0, 9) == 0 ? 0 : pick(1, 500);
    auto weight = pick(cat.min_weight, cat.max_weight);
    std::string sku = "SEED-" + id.substr(5);
    std::string images = "[\"https://images.example.com/" + id + ".jpg\"]";
    out << std::make_tuple(id, sku, name, description, price, std::string{"USD"},
                           std::string{cat.name}, stock, weight, images);
  }
  out.complete();
  tx.commit();
  return opts.products;
}

} // namespace emporium::persistence
