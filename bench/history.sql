-- bench/history.sql: an order history for the benchmarks' database, then VACUUM ANALYZE of the
-- tables it wrote (as `pgbench -i` ends). Run by bench/stack.sh's bench_seed after the catalog, as the table owner:
--   psql -v orders=N -f bench/history.sql
--
-- Why: the write runs would otherwise start on empty order tables. PostgreSQL plans a prepared
-- statement on the sizes it sees then and keeps that plan until an ANALYZE changes the table's
-- statistics, which autovacuum does a minute later at the earliest. Planned on an empty
-- `orders`, the payment statements scanned the whole table per batch for the whole window, a
-- cost that grew with every order placed and that a shop in service, its tables long analyzed,
-- never pays (bench/README.md, "Plans made on empty tables"). With a history, the runs measure
-- that shop: its indexes as deep as N orders make them.
--
-- The history is N paid orders of 100 customers, one line each over the catalog, with their
-- payments, checked-out carts and one order_status event each. Ids sort before every id the
-- server makes (a ULID of time zero); nothing of it belongs to the benchmark's customers, so
-- the accounting (bench/accounting.cpp) never counts it; timestamps are now(), so the
-- retention sweeps leave it alone during the run.
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO customers (id, email, name, password_hash)
  SELECT 'cust_00' || lpad(g::text, 24, '0'), 'history' || g || '@bench.invalid',
         'History ' || g, '!'
  FROM generate_series(1, 100) g;
INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, shipping_cents,
                    total_cents, shipping_address, payment_due_at, points_awarded, version,
                    event_seq)
  SELECT 'ord_00' || lpad(g::text, 24, '0'), 'cust_00' || lpad((g % 100 + 1)::text, 24, '0'),
         'paid', 'EUR', 1000, 500, 1500,
         '{"name":"History","line1":"1 Main St","city":"Lyon","postal_code":"69001","country":"FR"}',
         now(), 15, 3, 2
  FROM generate_series(1, :orders) g;
WITH p AS (SELECT array_agg(id ORDER BY id) AS ids FROM products)
INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity,
                         weight_grams)
  SELECT 'ord_00' || lpad(g::text, 24, '0'), 1, p.ids[g % cardinality(p.ids) + 1], 'History',
         1000, 1, 100
  FROM p, generate_series(1, :orders) g;
INSERT INTO payments (order_id, provider, reference, amount_cents, currency, status)
  SELECT 'ord_00' || lpad(g::text, 24, '0'), 'simulated', 'ch_ord_00' || lpad(g::text, 24, '0'),
         1500, 'EUR', 'captured'
  FROM generate_series(1, :orders) g;
INSERT INTO simulated_charges (reference, amount_cents, currency, method, status)
  SELECT 'ch_ord_00' || lpad(g::text, 24, '0'), 1500, 'EUR', 'tok_visa', 'captured'
  FROM generate_series(1, :orders) g;
INSERT INTO carts (id, customer_id, order_id, version, expires_at)
  SELECT 'cart_00' || lpad(g::text, 24, '0'), 'cust_00' || lpad((g % 100 + 1)::text, 24, '0'),
         'ord_00' || lpad(g::text, 24, '0'), 3, now() + interval '1 day'
  FROM generate_series(1, :orders) g;
INSERT INTO events (entity, seq, type, payload)
  SELECT 'order:ord_00' || lpad(g::text, 24, '0'), s, 'order_status',
         jsonb_build_object('order_id', 'ord_00' || lpad(g::text, 24, '0'), 'status',
                            CASE s WHEN 1 THEN 'pending_payment' ELSE 'paid' END)
  FROM generate_series(1, :orders) g, generate_series(1, 2) s;
COMMIT;
-- Only the tables given a history (and the catalog): an ANALYZE of an empty table would tell
-- the planner it is empty, which is worse than the guess of ten pages it makes for a table
-- never analyzed.
VACUUM ANALYZE customers, orders, order_lines, payments, simulated_charges, carts, events,
  products;
