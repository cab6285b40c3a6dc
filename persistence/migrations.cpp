#include "persistence/migrations.hpp"

namespace emporium::persistence {

namespace {

// Any constant, as long as every node uses the same one.
constexpr long long migration_lock_key = 0x656d706f7269756dLL; // "emporium"

constexpr const char* create_migrations_table = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer     PRIMARY KEY,
  name       text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
))sql";

constexpr const char* lock_migrations = "SELECT pg_advisory_xact_lock($1)";
constexpr const char* is_applied = "SELECT 1 FROM schema_migrations WHERE version = $1";
constexpr const char* record_applied =
  "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)";
constexpr const char* max_version = "SELECT coalesce(max(version), 0) FROM schema_migrations";

} // namespace

const std::vector<migration>& migrations() {
  static const std::vector<migration> all{
    {1, "products", R"sql(
CREATE TABLE products (
  id           text        PRIMARY KEY,
  sku          text        NOT NULL UNIQUE CHECK (length(sku) BETWEEN 1 AND 64),
  name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description  text        NOT NULL DEFAULT '',
  price_cents  bigint      NOT NULL CHECK (price_cents >= 0),
  currency     char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  category     text        NOT NULL DEFAULT 'uncategorized',
  stock        bigint      NOT NULL CHECK (stock >= 0),
  weight_grams bigint      NOT NULL DEFAULT 0 CHECK (weight_grams >= 0),
  images       jsonb       NOT NULL DEFAULT '[]'::jsonb,
  version      bigint      NOT NULL DEFAULT 1,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Keyset paging within a category walks this index; paging over all products walks the pkey.
CREATE INDEX products_category_id_idx ON products (category, id);
)sql"},
    {2, "admin_credentials", R"sql(
-- The admin key is stored only as a SHA-256 hash (it is 256 random bits, so no stretching is
-- needed). One row: the key generated at first start when none is configured.
CREATE TABLE admin_credentials (
  id         smallint    PRIMARY KEY CHECK (id = 1),
  key_hash   text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
)sql"},
    {3, "commerce", R"sql(
CREATE TABLE customers (
  id             text        PRIMARY KEY,
  email          text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
  name           text        NOT NULL,
  password_hash  text        NOT NULL,
  loyalty_points bigint      NOT NULL DEFAULT 0 CHECK (loyalty_points >= 0),
  version        bigint      NOT NULL DEFAULT 1,
  created_at     timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique case-insensitively.
CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));

-- Bearer tokens are 256 random bits, stored only as their SHA-256.
CREATE TABLE sessions (
  token_hash  text        PRIMARY KEY,
  customer_id text        NOT NULL REFERENCES customers (id),
  expires_at  timestamptz NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE carts (
  id          text        PRIMARY KEY,
  customer_id text        NOT NULL REFERENCES customers (id),
  items       jsonb       NOT NULL DEFAULT '[]'::jsonb,
  order_id    text,
  version     bigint      NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);

CREATE TABLE orders (
  id               text        PRIMARY KEY,
  customer_id      text        NOT NULL REFERENCES customers (id),
  status           text        NOT NULL CHECK (status IN
                     ('pending_payment', 'paid', 'shipped', 'delivered', 'cancelled')),
  currency         char(3)     NOT NULL,
  subtotal_cents   bigint      NOT NULL CHECK (subtotal_cents >= 0),
  shipping_cents   bigint      NOT NULL CHECK (shipping_cents >= 0),
  total_cents      bigint      NOT NULL CHECK (total_cents = subtotal_cents + shipping_cents),
  shipping_address jsonb       NOT NULL,
  points_awarded   bigint      NOT NULL DEFAULT 0 CHECK (points_awarded >= 0),
  version          bigint      NOT NULL DEFAULT 1,
  payment_due_at   timestamptz NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_idx ON orders (customer_id, id DESC);
-- The payment-timeout sweep reads only unpaid orders.
CREATE INDEX orders_payment_due_idx ON orders (payment_due_at) WHERE status = 'pending_payment';

CREATE TABLE order_lines (
  order_id         text   NOT NULL REFERENCES orders (id),
  line_no          int    NOT NULL,
  product_id       text   NOT NULL REFERENCES products (id),
  name             text   NOT NULL,
  unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
  quantity         bigint NOT NULL CHECK (quantity > 0),
  weight_grams     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_lines_product_idx ON order_lines (product_id);

-- One captured payment per order: the primary key makes a double charge unrecordable.
CREATE TABLE payments (
  order_id     text        PRIMARY KEY REFERENCES orders (id),
  provider     text        NOT NULL,
  reference    text        NOT NULL,
  amount_cents bigint      NOT NULL,
  currency     char(3)     NOT NULL,
  status       text        NOT NULL CHECK (status IN ('captured', 'refunded')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key records, scoped to the customer, written in the transaction of the outcome.
CREATE TABLE idempotency_keys (
  customer_id  text        NOT NULL,
  key          text        NOT NULL,
  request_hash text        NOT NULL,
  status       int         NOT NULL,
  outcome      jsonb       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- The outbox: every stock or status change, with a per-entity sequence number, committed with
-- the change itself, for the real-time streams to publish.
CREATE TABLE events (
  id         bigserial   PRIMARY KEY,
  entity     text        NOT NULL,
  seq        bigint      NOT NULL,
  type       text        NOT NULL,
  payload    jsonb       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (entity, seq)
);
)sql"},
    {4, "search", R"sql(
-- Product search (GET /search; persistence/search_store.cpp). Adding the stored column rewrites
-- the products table: on a large catalog that outlasts the sessions' statement timeout.
SET LOCAL statement_timeout = 0;
-- pg_trgm is trusted in PostgreSQL 13+: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- What full text matches, weighted A name, B category, C description. Generated and stored,
-- so PostgreSQL keeps it current on every INSERT and UPDATE, whichever path writes the row.
-- The name is indexed both stemmed ('english': "kettles" finds "kettle") and as typed
-- ('simple': a prefix such as "ergonomi" finds "ergonomic", whose stem is "ergonom").
ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
  setweight(to_tsvector('english', name), 'A') || setweight(to_tsvector('simple', name), 'A')
  || setweight(to_tsvector('simple', category), 'B')
  || setweight(to_tsvector('english', description), 'C')
) STORED;
CREATE INDEX products_search_idx ON products USING gin (search_vector);
-- Typo tolerance: word similarity of the query to the name (name %> q).
CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops);
-- Price filters and price sorts (keyset on price, id). Newest is id order: the primary key;
-- a category filter walks products_category_id_idx.
CREATE INDEX products_price_idx ON products (price_cents, id);

-- The words of a query (letters and digits only; the server splits them) as a tsquery: every
-- word must match, each as a prefix, stemmed or as typed. Stop words ("the", "and") are left
-- out, as the index leaves them out; NULL when no word is left. Lexemes are quoted, so no
-- input can inject tsquery operators.
CREATE FUNCTION search_tsquery(words text[]) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
  result tsquery;
  stemmed text;
  typed text;
  term tsquery;
  w text;
  lexeme text;
BEGIN
  FOREACH w IN ARRAY words LOOP
    stemmed := NULL;
    typed := NULL;
    FOREACH lexeme IN ARRAY tsvector_to_array(to_tsvector('english', w)) LOOP
      stemmed := coalesce(stemmed || ' & ', '')
                 || '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''':*';
    END LOOP;
    CONTINUE WHEN stemmed IS NULL;
    FOREACH lexeme IN ARRAY tsvector_to_array(to_tsvector('simple', w)) LOOP
      typed := coalesce(typed || ' & ', '')
               || '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''':*';
    END LOOP;
    term := CASE WHEN typed IS NULL OR typed = stemmed THEN stemmed::tsquery
                 ELSE stemmed::tsquery || typed::tsquery END;
    result := CASE WHEN result IS NULL THEN term ELSE result && term END;
  END LOOP;
  RETURN result;
END
$fn$;

ANALYZE products;
)sql"},
    {5, "limits_and_retention", R"sql(
-- Building these indexes on large tables outlasts the sessions' statement timeout.
SET LOCAL statement_timeout = 0;
-- The open-unpaid-orders cap counts a customer's pending orders inside the placing transaction.
CREATE INDEX orders_customer_unpaid_idx ON orders (customer_id) WHERE status = 'pending_payment';
-- Retention deletes expired carts that were never checked out, and outbox events by age
-- (sessions and idempotency keys already have their indexes).
CREATE INDEX carts_unused_expires_idx ON carts (expires_at) WHERE order_id IS NULL;
CREATE INDEX events_created_idx ON events (created_at);
)sql"},
    {6, "payment_intents", R"sql(
-- A payment is a saga step outside the database workers: the order is marked `paying` with the
-- charge reference (derived from the order, so every attempt and every reconciliation names the
-- same charge) before the provider is called, and the outcome is recorded after. An order left
-- `paying` (a crash, a lost answer) is reconciled by asking the provider about that reference.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN
  ('pending_payment', 'paying', 'paid', 'shipped', 'delivered', 'cancelled'));
ALTER TABLE orders ADD COLUMN payment_reference text, ADD COLUMN paying_since timestamptz;
CREATE INDEX orders_paying_idx ON orders (paying_since) WHERE status = 'paying';

-- The ledger of the built-in simulated provider (actors/payment_provider.cpp). It stands for
-- the provider's own records: it survives a crash of this server, so reconciliation can ask
-- whether a reference was charged. A real provider keeps this on its side.
CREATE TABLE simulated_charges (
  reference    text        PRIMARY KEY,
  amount_cents bigint      NOT NULL,
  currency     char(3)     NOT NULL,
  method       text        NOT NULL,
  status       text        NOT NULL CHECK (status IN ('captured', 'refunded')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  refunded_at  timestamptz
);
)sql"},
    {7, "dense_event_seq", R"sql(
-- Renumbering the outbox rewrites it: on a large one that outlasts the statement timeout.
SET LOCAL statement_timeout = 0;
-- Each entity counts its events: the statement that writes an outbox row bumps the counter and
-- takes the new value as the event's seq (order_store::insert_event), so seqs grow by exactly
-- one per event and a subscriber can tell a gap from a quiet topic.
ALTER TABLE products ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;
-- Events written so far took the row's version as seq, which skips numbers (a version bump
-- without an event). No feed has published them, so they are renumbered 1, 2, ... per entity
-- in their order, through negative values so that the unique (entity, seq) never collides.
UPDATE events e SET seq = -r.n
FROM (SELECT id, row_number() OVER (PARTITION BY entity ORDER BY seq) AS n FROM events) r
WHERE e.id = r.id AND e.seq <> r.n;
UPDATE events SET seq = -seq WHERE seq < 0;
-- Each counter starts at its entity's largest seq.
UPDATE products p SET event_seq = m.seq
FROM (SELECT substr(entity, 9) AS id, max(seq) AS seq FROM events
      WHERE entity LIKE 'product:%' GROUP BY entity) m
WHERE p.id = m.id;
UPDATE orders o SET event_seq = m.seq
FROM (SELECT substr(entity, 7) AS id, max(seq) AS seq FROM events
      WHERE entity LIKE 'order:%' GROUP BY entity) m
WHERE o.id = m.id;
)sql"},
    {8, "batched_placement", R"sql(
-- Places a batch of orders in the calling transaction: one round trip, one commit for them all
-- (order_store::place_orders). `batch` is a JSON array of orders, each
--   {id, customer_id, status, currency, subtotal_cents, shipping_cents, total_cents,
--    shipping_address, payment_due_at_ms, lines: [{product_id, name, unit_price_cents,
--    quantity, weight_grams}], max_unpaid (or null), idem: {key, request_hash, outcome} (or
--    null), cart_id (or null), cart_version}.
-- The answer is an array of as many outcomes, in the batch's order, each one of
--   {placed: true, version, created_at_ms, updated_at_ms, changes: [[product, stock, version,
--    event seq], ...]}, {short: [product, ...]}, {open_unpaid: n} or {sqlstate, message}.
-- Each order is all-or-nothing (its writes run in a block of their own, a subtransaction): a
-- short, capped or conflicting order leaves no trace and the others are placed.
--
-- Every product row of the batch is locked first, in id order, then every capped customer's
-- row, in id order: the lock order of single placements, payments and cancellations (products,
-- then the customer), so batches on several nodes and those writers never wait for each other
-- in a cycle. With the rows locked, the stock each order sees is the stock left by the orders
-- before it in the batch; an order that does not fit is short while later ones that fit are
-- placed. One UPDATE at the end takes the stock of every placed order of a product at once, still
-- conditional (stock >= taken, and CHECK (stock >= 0)): the database stays the last guard.
-- Each placed order gets, per product, the stock after it, a version one higher than the order
-- before it, and a stock_changed event whose seq is the product's next one; events and their
-- notifications of an order that rolled back are gone with it, so seqs stay dense.
CREATE FUNCTION emporium_place_orders(batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  pids text[];
  pstock bigint[];
  pver bigint[];
  pseq bigint[];
  ptaken bigint[];
  o jsonb;
  ln record;
  i int;
  n bigint;
  short text[];
  unpaid bigint;
  ver bigint;
  created_ms bigint;
  updated_ms bigint;
  changes jsonb;
  payload jsonb;
  results jsonb := '[]'::jsonb;
BEGIN
  SELECT coalesce(array_agg(id ORDER BY id), '{}'), coalesce(array_agg(stock ORDER BY id), '{}'),
         coalesce(array_agg(version ORDER BY id), '{}'),
         coalesce(array_agg(event_seq ORDER BY id), '{}')
    INTO pids, pstock, pver, pseq
    FROM (SELECT p.id, p.stock, p.version, p.event_seq FROM products p
          WHERE p.id IN (SELECT l->>'product_id' FROM jsonb_array_elements(batch) b,
                                jsonb_array_elements(b->'lines') l)
          ORDER BY p.id FOR UPDATE) locked;
  ptaken := array_fill(0::bigint, ARRAY[greatest(cardinality(pids), 1)]);
  PERFORM 1 FROM customers
    WHERE id IN (SELECT b->>'customer_id' FROM jsonb_array_elements(batch) b
                 WHERE jsonb_typeof(b->'max_unpaid') = 'number')
    ORDER BY id FOR UPDATE;

  FOR o IN SELECT value FROM jsonb_array_elements(batch) WITH ORDINALITY ORDER BY ordinality LOOP
    short := '{}';
    FOR ln IN SELECT l->>'product_id' AS pid, sum((l->>'quantity')::bigint) AS qty
              FROM jsonb_array_elements(o->'lines') l GROUP BY 1 ORDER BY 1 LOOP
      i := array_position(pids, ln.pid);
      IF i IS NULL OR pstock[i] < ln.qty THEN
        short := short || ln.pid;
      END IF;
    END LOOP;
    IF cardinality(short) > 0 THEN
      results := results || jsonb_build_array(jsonb_build_object('short', to_jsonb(short)));
      CONTINUE;
    END IF;
    IF jsonb_typeof(o->'max_unpaid') = 'number' THEN
      SELECT count(*) INTO unpaid FROM orders
        WHERE customer_id = o->>'customer_id' AND status = 'pending_payment';
      IF unpaid >= (o->>'max_unpaid')::bigint THEN
        results := results || jsonb_build_array(jsonb_build_object('open_unpaid', unpaid));
        CONTINUE;
      END IF;
    END IF;
    BEGIN
      INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, shipping_cents,
                          total_cents, shipping_address, payment_due_at, event_seq)
        VALUES (o->>'id', o->>'customer_id', o->>'status', o->>'currency',
                (o->>'subtotal_cents')::bigint, (o->>'shipping_cents')::bigint,
                (o->>'total_cents')::bigint, o->'shipping_address',
                to_timestamp((o->>'payment_due_at_ms')::double precision / 1000), 1)
        RETURNING version, (extract(epoch FROM created_at) * 1000)::bigint,
                  (extract(epoch FROM updated_at) * 1000)::bigint
        INTO ver, created_ms, updated_ms;
      INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity,
                               weight_grams)
        SELECT o->>'id', l.n, l.v->>'product_id', l.v->>'name', (l.v->>'unit_price_cents')::bigint,
               (l.v->>'quantity')::bigint, (l.v->>'weight_grams')::bigint
        FROM jsonb_array_elements(o->'lines') WITH ORDINALITY AS l(v, n);
      changes := '[]'::jsonb;
      FOR ln IN SELECT l->>'product_id' AS pid, sum((l->>'quantity')::bigint) AS qty
                FROM jsonb_array_elements(o->'lines') l GROUP BY 1 ORDER BY 1 LOOP
        i := array_position(pids, ln.pid);
        payload := jsonb_build_object('product_id', ln.pid, 'stock', pstock[i] - ln.qty);
        INSERT INTO events (entity, seq, type, payload)
          VALUES ('product:' || ln.pid, pseq[i] + 1, 'stock_changed', payload);
        PERFORM pg_notify('emporium_events', 'product:' || ln.pid || E'\t' || (pseq[i] + 1)
                                             || E'\tstock_changed\t' || payload::text);
        changes := changes
                   || jsonb_build_array(jsonb_build_array(ln.pid, pstock[i] - ln.qty, pver[i] + 1,
                                                          pseq[i] + 1));
      END LOOP;
      payload := jsonb_build_object('order_id', o->>'id', 'status', o->>'status');
      INSERT INTO events (entity, seq, type, payload)
        VALUES ('order:' || (o->>'id'), 1, 'order_status', payload);
      PERFORM pg_notify('emporium_events', 'order:' || (o->>'id') || E'\t1\torder_status\t'
                                           || payload::text);
      IF jsonb_typeof(o->'idem') = 'object' THEN
        -- A row of a kind that is not replayed (idem.replayable: the statuses) is taken over.
        INSERT INTO idempotency_keys AS k (customer_id, key, request_hash, status, outcome)
          VALUES (o->>'customer_id', o->'idem'->>'key', o->'idem'->>'request_hash', 201,
                  (o->'idem'->'outcome') || jsonb_build_object('version', ver, 'created_at_ms',
                  created_ms, 'updated_at_ms', updated_ms))
          ON CONFLICT (customer_id, key) DO UPDATE SET request_hash = excluded.request_hash,
            status = excluded.status, outcome = excluded.outcome, created_at = now()
          WHERE k.status <> ALL (ARRAY(SELECT jsonb_array_elements_text(o->'idem'->'replayable'))::int[]);
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> 1 THEN
          RAISE unique_violation USING MESSAGE = 'idempotency key recorded concurrently';
        END IF;
      END IF;
      IF jsonb_typeof(o->'cart_id') = 'string' THEN
        UPDATE carts SET order_id = o->>'id', version = version + 1, updated_at = now()
          WHERE id = o->>'cart_id' AND order_id IS NULL
            AND ((o->>'cart_version')::bigint = 0 OR version = (o->>'cart_version')::bigint);
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> 1 THEN
          RAISE unique_violation USING MESSAGE = 'the cart was checked out or changed concurrently';
        END IF;
      END IF;
      -- Every statement of the order succeeded: the batch's running stock moves past it.
      FOR ln IN SELECT l->>'product_id' AS pid, sum((l->>'quantity')::bigint) AS qty
                FROM jsonb_array_elements(o->'lines') l GROUP BY 1 LOOP
        i := array_position(pids, ln.pid);
        pstock[i] := pstock[i] - ln.qty;
        pver[i] := pver[i] + 1;
        pseq[i] := pseq[i] + 1;
        ptaken[i] := ptaken[i] + ln.qty;
      END LOOP;
      results := results || jsonb_build_array(jsonb_build_object(
        'placed', true, 'version', ver, 'created_at_ms', created_ms, 'updated_at_ms', updated_ms,
        'changes', changes));
    EXCEPTION WHEN OTHERS THEN
      results := results || jsonb_build_array(jsonb_build_object('sqlstate', SQLSTATE,
                                                                 'message', SQLERRM));
    END;
  END LOOP;

  -- One statement per batch takes the stock of every placed order.
  UPDATE products p SET stock = p.stock - t.taken, version = t.version, event_seq = t.seq,
                        updated_at = now()
    FROM unnest(pids, ptaken, pver, pseq) AS t(id, taken, version, seq)
    WHERE p.id = t.id AND t.taken > 0 AND p.stock >= t.taken;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n <> (SELECT count(*) FROM unnest(ptaken) AS t(taken) WHERE t.taken > 0) THEN
    RAISE check_violation USING MESSAGE = 'a product''s stock moved under a locked batch';
  END IF;
  RETURN results;
END
$fn$;
)sql"},
    {9, "set_based_placement", R"sql(
-- A batch of placements in a few set-based statements for the whole batch instead of a block of
-- statements per order (emporium_place_orders_together): the decisions (which orders fit, which
-- are over their customer's unpaid cap) are made on arrays in one loop with no statement per
-- order; the orders, lines, events, notifications, idempotency records and carts are then
-- written by one statement each. A block per order is a subtransaction per order, which
-- costs PostgreSQL more than the statements in it: measured on checkout, this took 11 % of
-- PostgreSQL's CPU per order away (bench/README.md, "Writes: placement set-based, jemalloc,
-- product loads batched").
--
-- When a statement of that run fails (an Idempotency-Key taken meanwhile, a cart changed since,
-- a constraint), its one subtransaction rolls back and the batch is placed order by order as
-- before (emporium_place_orders_each, the function of migration 8 renamed), each order
-- all-or-nothing: both give the same outcomes, the second also for batches the first refuses.
-- The outcomes' shape is migration 8's.
ALTER FUNCTION emporium_place_orders(jsonb) RENAME TO emporium_place_orders_each;

CREATE FUNCTION emporium_place_orders_together(batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  pids text[];
  pstock bigint[];
  pver bigint[];
  pseq bigint[];
  ptaken bigint[];
  -- Each order's quantity of each product, by order, then product.
  lord bigint[];
  lpid text[];
  lqty bigint[];
  -- Each order's customer, unpaid cap (null: none), status and id, and what it writes besides.
  ocust text[];
  ocap bigint[];
  ostatus text[];
  oids text[];
  oidem boolean[];
  ocart boolean[];
  -- The unpaid orders of each customer with a capped order in the batch.
  ucust text[];
  ucount bigint[];
  n int;
  k int;
  m int;
  j int := 1;
  j2 int;
  i int;
  ci int;
  cnt bigint;
  want_idem bigint := 0;
  want_carts bigint := 0;
  short text[];
  placed boolean[];
  outs jsonb[];
  changes jsonb;
  ev_pid text[] := '{}';
  ev_seq bigint[] := '{}';
  ev_stock bigint[] := '{}';
  rid text[];
  rver bigint[];
  rcreated bigint[];
  rupdated bigint[];
  replayable jsonb;
  results jsonb := '[]'::jsonb;
BEGIN
  -- The locks of migration 8, in its order: products by id, then capped customers by id.
  SELECT coalesce(array_agg(id ORDER BY id), '{}'), coalesce(array_agg(stock ORDER BY id), '{}'),
         coalesce(array_agg(version ORDER BY id), '{}'),
         coalesce(array_agg(event_seq ORDER BY id), '{}')
    INTO pids, pstock, pver, pseq
    FROM (SELECT p.id, p.stock, p.version, p.event_seq FROM products p
          WHERE p.id IN (SELECT l->>'product_id' FROM jsonb_array_elements(batch) b,
                                jsonb_array_elements(b->'lines') l)
          ORDER BY p.id FOR UPDATE) locked;
  ptaken := array_fill(0::bigint, ARRAY[greatest(cardinality(pids), 1)]);
  PERFORM 1 FROM customers
    WHERE id IN (SELECT b->>'customer_id' FROM jsonb_array_elements(batch) b
                 WHERE jsonb_typeof(b->'max_unpaid') = 'number')
    ORDER BY id FOR UPDATE;

  SELECT coalesce(array_agg(x.ord ORDER BY x.ord, x.pid), '{}'),
         coalesce(array_agg(x.pid ORDER BY x.ord, x.pid), '{}'),
         coalesce(array_agg(x.qty ORDER BY x.ord, x.pid), '{}')
    INTO lord, lpid, lqty
    FROM (SELECT b.ord, l->>'product_id' AS pid, sum((l->>'quantity')::bigint) AS qty
          FROM jsonb_array_elements(batch) WITH ORDINALITY b(o, ord),
               jsonb_array_elements(b.o->'lines') l
          GROUP BY 1, 2) x;
  SELECT array_agg(o->>'customer_id' ORDER BY ord),
         array_agg(CASE WHEN jsonb_typeof(o->'max_unpaid') = 'number'
                        THEN (o->>'max_unpaid')::bigint END ORDER BY ord),
         array_agg(o->>'status' ORDER BY ord), array_agg(o->>'id' ORDER BY ord),
         array_agg(jsonb_typeof(o->'idem') = 'object' ORDER BY ord),
         array_agg(jsonb_typeof(o->'cart_id') = 'string' ORDER BY ord)
    INTO ocust, ocap, ostatus, oids, oidem, ocart
    FROM jsonb_array_elements(batch) WITH ORDINALITY b(o, ord);
  n := coalesce(cardinality(oids), 0);
  SELECT coalesce(array_agg(c.id), '{}'),
         coalesce(array_agg((SELECT count(*) FROM orders o
                             WHERE o.customer_id = c.id AND o.status = 'pending_payment')), '{}')
    INTO ucust, ucount
    FROM (SELECT DISTINCT b->>'customer_id' AS id FROM jsonb_array_elements(batch) b
          WHERE jsonb_typeof(b->'max_unpaid') = 'number') c;

  -- The decisions, in the batch's order: each order sees the stock and the unpaid orders the
  -- orders placed before it left.
  placed := array_fill(false, ARRAY[greatest(n, 1)]);
  outs := array_fill(NULL::jsonb, ARRAY[greatest(n, 1)]);
  FOR k IN 1..n LOOP
    short := '{}';
    j2 := j;
    WHILE j2 <= cardinality(lord) AND lord[j2] = k LOOP
      i := array_position(pids, lpid[j2]);
      IF i IS NULL OR pstock[i] < lqty[j2] THEN
        short := short || lpid[j2];
      END IF;
      j2 := j2 + 1;
    END LOOP;
    ci := array_position(ucust, ocust[k]);
    IF cardinality(short) > 0 THEN
      outs[k] := jsonb_build_object('short', to_jsonb(short));
    ELSIF ocap[k] IS NOT NULL AND ucount[ci] >= ocap[k] THEN
      outs[k] := jsonb_build_object('open_unpaid', ucount[ci]);
    ELSE
      changes := '[]'::jsonb;
      FOR m IN j..j2 - 1 LOOP
        i := array_position(pids, lpid[m]);
        pstock[i] := pstock[i] - lqty[m];
        pver[i] := pver[i] + 1;
        pseq[i] := pseq[i] + 1;
        ptaken[i] := ptaken[i] + lqty[m];
        ev_pid := ev_pid || lpid[m];
        ev_seq := ev_seq || pseq[i];
        ev_stock := ev_stock || pstock[i];
        changes := changes || jsonb_build_array(jsonb_build_array(lpid[m], pstock[i], pver[i],
                                                                  pseq[i]));
      END LOOP;
      placed[k] := true;
      outs[k] := changes;
      IF ci IS NOT NULL AND ostatus[k] = 'pending_payment' THEN
        ucount[ci] := ucount[ci] + 1;
      END IF;
      IF oidem[k] THEN
        want_idem := want_idem + 1;
      END IF;
      IF ocart[k] THEN
        want_carts := want_carts + 1;
      END IF;
    END IF;
    j := j2;
  END LOOP;

  IF true = ANY(placed) THEN
    WITH ins AS (
      INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, shipping_cents,
                          total_cents, shipping_address, payment_due_at, event_seq)
        SELECT o->>'id', o->>'customer_id', o->>'status', o->>'currency',
               (o->>'subtotal_cents')::bigint, (o->>'shipping_cents')::bigint,
               (o->>'total_cents')::bigint, o->'shipping_address',
               to_timestamp((o->>'payment_due_at_ms')::double precision / 1000), 1
        FROM jsonb_array_elements(batch) WITH ORDINALITY b(o, ord)
        WHERE placed[b.ord::int]
        RETURNING id, version, (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
                  (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms)
    SELECT array_agg(id), array_agg(version), array_agg(created_ms), array_agg(updated_ms)
      INTO rid, rver, rcreated, rupdated FROM ins;

    INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity,
                             weight_grams)
      SELECT b.o->>'id', l.n, l.v->>'product_id', l.v->>'name',
             (l.v->>'unit_price_cents')::bigint, (l.v->>'quantity')::bigint,
             (l.v->>'weight_grams')::bigint
      FROM jsonb_array_elements(batch) WITH ORDINALITY b(o, ord),
           jsonb_array_elements(b.o->'lines') WITH ORDINALITY AS l(v, n)
      WHERE placed[b.ord::int];

    -- The events: each placed order's stock_changed per product (the stock after it), then
    -- each one's order_status; a notification each, in that order, so a product's events are
    -- notified in seq order.
    WITH ev AS (
      SELECT 'product:' || e.pid AS entity, e.seq, 'stock_changed' AS type,
             jsonb_build_object('product_id', e.pid, 'stock', e.stock) AS payload, e.n AS pos
        FROM unnest(ev_pid, ev_seq, ev_stock) WITH ORDINALITY AS e(pid, seq, stock, n)
      UNION ALL
      SELECT 'order:' || (b.o->>'id'), 1, 'order_status',
             jsonb_build_object('order_id', b.o->>'id', 'status', b.o->>'status'),
             cardinality(ev_pid) + b.ord
        FROM jsonb_array_elements(batch) WITH ORDINALITY b(o, ord)
        WHERE placed[b.ord::int]),
    stored AS (INSERT INTO events (entity, seq, type, payload)
                 SELECT entity, seq, type, payload FROM ev)
    -- A subquery's ORDER BY is done before the query above it evaluates its volatile calls.
    SELECT count(*) INTO cnt
      FROM (SELECT pg_notify('emporium_events', entity || E'\t' || seq || E'\t' || type || E'\t'
                                                || payload::text)
            FROM (SELECT * FROM ev ORDER BY pos) in_order) notified;

    IF want_idem > 0 THEN
      -- Every order of the batch offers the same statuses as replayable (order_store.cpp).
      SELECT count(DISTINCT b->'idem'->'replayable'), (array_agg(b->'idem'->'replayable'))[1]
        INTO cnt, replayable FROM jsonb_array_elements(batch) b
        WHERE jsonb_typeof(b->'idem') = 'object';
      IF cnt <> 1 THEN
        RAISE feature_not_supported USING MESSAGE = 'orders offering different replays';
      END IF;
      INSERT INTO idempotency_keys AS k (customer_id, key, request_hash, status, outcome)
        SELECT b.o->>'customer_id', b.o->'idem'->>'key', b.o->'idem'->>'request_hash', 201,
               (b.o->'idem'->'outcome') || jsonb_build_object('version', rver[r.i],
                 'created_at_ms', rcreated[r.i], 'updated_at_ms', rupdated[r.i])
        FROM jsonb_array_elements(batch) WITH ORDINALITY b(o, ord),
             LATERAL array_position(rid, b.o->>'id') AS r(i)
        WHERE placed[b.ord::int] AND oidem[b.ord::int]
        ON CONFLICT (customer_id, key) DO UPDATE SET request_hash = excluded.request_hash,
          status = excluded.status, outcome = excluded.outcome, created_at = now()
        WHERE k.status <> ALL (ARRAY(SELECT jsonb_array_elements_text(replayable))::int[]);
      GET DIAGNOSTICS cnt = ROW_COUNT;
      IF cnt <> want_idem THEN
        RAISE unique_violation USING MESSAGE = 'idempotency key recorded concurrently';
      END IF;
    END IF;

    IF want_carts > 0 THEN
      UPDATE carts c SET order_id = b.o->>'id', version = c.version + 1, updated_at = now()
        FROM jsonb_array_elements(batch) WITH ORDINALITY b(o, ord)
        WHERE placed[b.ord::int] AND ocart[b.ord::int] AND c.id = b.o->>'cart_id'
          AND c.order_id IS NULL
          AND ((b.o->>'cart_version')::bigint = 0 OR c.version = (b.o->>'cart_version')::bigint);
      GET DIAGNOSTICS cnt = ROW_COUNT;
      IF cnt <> want_carts THEN
        RAISE unique_violation USING MESSAGE = 'the cart was checked out or changed concurrently';
      END IF;
    END IF;

    -- One statement per batch takes the stock of every placed order.
    UPDATE products p SET stock = p.stock - t.taken, version = t.version, event_seq = t.seq,
                          updated_at = now()
      FROM unnest(pids, ptaken, pver, pseq) AS t(id, taken, version, seq)
      WHERE p.id = t.id AND t.taken > 0 AND p.stock >= t.taken;
    GET DIAGNOSTICS cnt = ROW_COUNT;
    IF cnt <> (SELECT count(*) FROM unnest(ptaken) AS t(taken) WHERE t.taken > 0) THEN
      RAISE check_violation USING MESSAGE = 'a product''s stock moved under a locked batch';
    END IF;
  END IF;

  FOR k IN 1..n LOOP
    IF placed[k] THEN
      i := array_position(rid, oids[k]);
      results := results || jsonb_build_array(jsonb_build_object(
        'placed', true, 'version', rver[i], 'created_at_ms', rcreated[i],
        'updated_at_ms', rupdated[i], 'changes', outs[k]));
    ELSE
      results := results || jsonb_build_array(outs[k]);
    END IF;
  END LOOP;
  RETURN results;
END
$fn$;

-- Set-based first; order by order when that fails (rolled back: one subtransaction).
CREATE FUNCTION emporium_place_orders(batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
BEGIN
  BEGIN
    RETURN emporium_place_orders_together(batch);
  EXCEPTION WHEN OTHERS THEN
    NULL; -- placed order by order below
  END;
  RETURN emporium_place_orders_each(batch);
END
$fn$;
)sql"},
    {10, "refunds_owed", R"sql(
-- A paid order's cancellation marks its payment refunded; the provider's refund follows, after
-- the commit, and may fail or never run (a crash, a provider down). Until the provider confirms
-- it the refund is owed, and the payment sweeper asks for it again, backing off after each
-- attempt. Refunds marked before this migration count as confirmed: the old code asked for each
-- once, and asking the provider again for every past refund at once (some from before its
-- ledger existed, which it would refuse forever) is not for a migration to do.
ALTER TABLE payments ADD COLUMN refund_confirmed_at timestamptz,
                     ADD COLUMN refund_attempts integer NOT NULL DEFAULT 0;
UPDATE payments SET refund_confirmed_at = updated_at WHERE status = 'refunded';
CREATE INDEX payments_refunds_owed ON payments (updated_at)
  WHERE status = 'refunded' AND refund_confirmed_at IS NULL;
)sql"},
  };
  return all;
}

std::vector<int> migrate(pg_session& session) {
  auto& conn = session.connection();
  {
    pqxx::work tx{conn};
    tx.exec_params(lock_migrations, migration_lock_key);
    tx.exec(create_migrations_table);
    tx.commit();
  }
  std::vector<int> applied;
  for (const auto& m : migrations()) {
    pqxx::work tx{conn};
    tx.exec_params(lock_migrations, migration_lock_key);
    if (!tx.exec_params(is_applied, m.version).empty())
      continue;
    tx.exec(m.sql);
    tx.exec_params(record_applied, m.version, m.name);
    tx.commit();
    applied.push_back(m.version);
  }
  return applied;
}

int schema_version(pg_session& session) {
  pqxx::work tx{session.connection()};
  if (tx.exec("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0].as<bool>() == false)
    return 0;
  return tx.exec(max_version)[0][0].as<int>();
}

} // namespace emporium::persistence
