-- bench/history.sql: an order history for the benchmarks' database, then VACUUM ANALYZE of the
-- tables it wrote (as `pgbench -i` ends). Run by bench/stack.sh's bench_seed after the catalog,
-- as the tables' owner:
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
-- The history is what a shop in service holds, not only what it sold: N orders of 10,000
-- customers, one line each over the catalog, 1 in 20 still awaiting payment (due in a day) and
-- the others paid, with their payments, charges and events; a checked-out cart per order and
-- N/20 carts still open. Without the open carts and unpaid orders the statistics would say the
-- partial indexes on them (carts_unused_expires_idx, the unpaid orders') hold nothing, and the
-- planner would scan those whole indexes, dead entries and all, instead of looking a key up.
-- Ids sort before every id the server makes (a ULID of time zero); nothing of it belongs to
-- the benchmark's customers, so the accounting (bench/accounting.cpp) never counts it; every
-- deadline is a day away, so no sweep touches it during a run.
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO customers (id, email, name, password_hash)
  SELECT 'cust_00' || lpad(g::text, 24, '0'), 'history' || g || '@bench.invalid',
         'History ' || g, '!'
  FROM generate_series(1, 10000) g;
CREATE TEMP TABLE history ON COMMIT DROP AS
  SELECT 'ord_00' || lpad(g::text, 24, '0') AS id,
         'cust_00' || lpad((g % 10000 + 1)::text, 24, '0') AS customer_id,
         CASE WHEN g % 20 = 0 THEN 'pending_payment' ELSE 'paid' END AS status, g
  FROM generate_series(1, :orders) g;
INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, shipping_cents,
                    total_cents, shipping_address, payment_due_at, points_awarded, version,
                    event_seq)
  SELECT id, customer_id, status, 'EUR', 1000, 500, 1500,
         '{"name":"History","line1":"1 Main St","city":"Lyon","postal_code":"69001","country":"FR"}',
         now() + interval '1 day', CASE status WHEN 'paid' THEN 15 ELSE 0 END,
         CASE status WHEN 'paid' THEN 3 ELSE 1 END, CASE status WHEN 'paid' THEN 2 ELSE 1 END
  FROM history;
WITH p AS (SELECT array_agg(id ORDER BY id) AS ids FROM products)
INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity,
                         weight_grams)
  SELECT h.id, 1, p.ids[h.g % cardinality(p.ids) + 1], 'History', 1000, 1, 100
  FROM p, history h;
INSERT INTO payments (order_id, provider, reference, amount_cents, currency, status)
  SELECT id, 'simulated', 'ch_' || id, 1500, 'EUR', 'captured' FROM history
  WHERE status = 'paid';
INSERT INTO simulated_charges (reference, amount_cents, currency, method, status)
  SELECT 'ch_' || id, 1500, 'EUR', 'tok_visa', 'captured' FROM history WHERE status = 'paid';
INSERT INTO carts (id, customer_id, order_id, version, expires_at)
  SELECT 'cart_00' || lpad(g::text, 24, '0'), customer_id, id, 3, now() + interval '1 day'
  FROM history;
INSERT INTO carts (id, customer_id, items, version, expires_at)
  SELECT 'cart_01' || lpad(g::text, 24, '0'), 'cust_00' || lpad((g % 10000 + 1)::text, 24, '0'),
         '[]', 1, now() + interval '1 day'
  FROM generate_series(1, greatest(:orders / 20, 1)) g;
INSERT INTO events (entity, seq, type, payload)
  SELECT 'order:' || h.id, s, 'order_status',
         jsonb_build_object('order_id', h.id, 'status',
                            CASE s WHEN 1 THEN 'pending_payment' ELSE 'paid' END)
  FROM history h, generate_series(1, 2) s
  WHERE s = 1 OR h.status = 'paid';
COMMIT;
-- Only the tables given a history (and the catalog): an ANALYZE of an empty table would tell
-- the planner it is empty, which is worse than the guess of ten pages it makes for a table
-- never analyzed.
VACUUM ANALYZE customers, orders, order_lines, payments, simulated_charges, carts, events,
  products;
