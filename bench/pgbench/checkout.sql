-- "Today's order SQL": one checkout as the database saw it from the first place_order()
-- (persistence/order_store.cpp) for a cart of two products (the checkout scenario's carts hold
-- 1 to 3), statement for statement, each its own round trip:
--   conditional stock decrement per line (in product id order), the customer's row locked
--   and its unpaid orders counted (the open-unpaid cap), the order row, its lines,
--   an outbox event per stock change and one for the order (each bumping its entity's event
--   counter and notifying channel emporium_events, in one statement), the idempotency record,
--   and the cart marked checked out.
-- It stays as it is when place_order() changes: it is the fixed reference a faster order path
-- is measured against (bench/compare.sh, "today's order SQL"); minimal.sql is the floor.
-- (No ':name' inside string literals: pgbench would take it for a variable, hence the
-- jsonb_build_object for the stored outcome, where Emporium sends the same JSON as text.)
-- Run with: pgbench -M extended (libpqxx's exec_params is the extended protocol, unprepared)
--   -D products=N -D customers=N -D carts=N   (the counts given to setup.sql)

\set p1 random(1, :products)
\set p2 random(1, :products)
\set pa least(:p1, :p2)
\set pb greatest(:p1, :p2)
\set qa random(1, 2)
\set qb random(1, 2)
\set c random(1, :customers)
\set cart random(1, :carts)
\set o random(1, 999999999999999)
BEGIN;
UPDATE products SET stock = stock - :qa::bigint, version = version + 1, updated_at = now() WHERE id = 'prod_' || lpad(:pa::text, 26, '0') AND stock >= :qa::bigint RETURNING stock AS sa, version AS va
\gset
UPDATE products SET stock = stock - :qb::bigint, version = version + 1, updated_at = now() WHERE id = 'prod_' || lpad(:pb::text, 26, '0') AND stock >= :qb::bigint RETURNING stock AS sb, version AS vb
\gset
SELECT 1 FROM customers WHERE id = 'cust_' || lpad(:c::text, 26, '0') FOR UPDATE;
SELECT count(*) FROM orders WHERE customer_id = 'cust_' || lpad(:c::text, 26, '0') AND status = 'pending_payment';
INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, shipping_cents, total_cents, shipping_address, payment_due_at) VALUES ('ord_' || lpad(:o::text, 26, '0'), 'cust_' || lpad(:c::text, 26, '0'), 'pending_payment', 'USD', 1999 * (:qa::bigint + :qb::bigint), 499, 1999 * (:qa::bigint + :qb::bigint) + 499, '{"name":"Bench Customer","line1":"1 Load Test Way","city":"Springfield","postal_code":"12345","country":"US"}'::jsonb, to_timestamp((extract(epoch FROM now()) * 1000 + 900000)::double precision / 1000)) RETURNING version, (extract(epoch FROM created_at) * 1000)::bigint, (extract(epoch FROM updated_at) * 1000)::bigint;
INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity, weight_grams) VALUES ('ord_' || lpad(:o::text, 26, '0'), 1, 'prod_' || lpad(:pa::text, 26, '0'), 'Bench product', 1999, :qa, 500);
INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity, weight_grams) VALUES ('ord_' || lpad(:o::text, 26, '0'), 2, 'prod_' || lpad(:pb::text, 26, '0'), 'Bench product', 1999, :qb, 500);
WITH s AS (UPDATE products SET event_seq = event_seq + 1 WHERE id = 'prod_' || lpad(:pa::text, 26, '0') RETURNING event_seq) INSERT INTO events (entity, seq, type, payload) SELECT 'product:' || 'prod_' || lpad(:pa::text, 26, '0'), s.event_seq, 'stock_changed', ('{"product_id":"prod_' || lpad(:pa::text, 26, '0') || '","stock":' || :sa::text || '}')::jsonb FROM s RETURNING seq, pg_notify('emporium_events', entity || E'\t' || seq || E'\t' || type || E'\t' || payload::text);
WITH s AS (UPDATE products SET event_seq = event_seq + 1 WHERE id = 'prod_' || lpad(:pb::text, 26, '0') RETURNING event_seq) INSERT INTO events (entity, seq, type, payload) SELECT 'product:' || 'prod_' || lpad(:pb::text, 26, '0'), s.event_seq, 'stock_changed', ('{"product_id":"prod_' || lpad(:pb::text, 26, '0') || '","stock":' || :sb::text || '}')::jsonb FROM s RETURNING seq, pg_notify('emporium_events', entity || E'\t' || seq || E'\t' || type || E'\t' || payload::text);
WITH s AS (UPDATE orders SET event_seq = event_seq + 1 WHERE id = 'ord_' || lpad(:o::text, 26, '0') RETURNING event_seq) INSERT INTO events (entity, seq, type, payload) SELECT 'order:' || 'ord_' || lpad(:o::text, 26, '0'), s.event_seq, 'order_status', ('{"order_id":"ord_' || lpad(:o::text, 26, '0') || '","status":"pending_payment"}')::jsonb FROM s RETURNING seq, pg_notify('emporium_events', entity || E'\t' || seq || E'\t' || type || E'\t' || payload::text);
INSERT INTO idempotency_keys (customer_id, key, request_hash, status, outcome) VALUES ('cust_' || lpad(:c::text, 26, '0'), 'pgbench-' || :o::text, '3f1c0b5e9a7d2c4b8e6f1a0d3c5b7e9f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b', 201, jsonb_build_object('id', 'ord_' || lpad(:o::text, 26, '0'), 'customer_id', 'cust_' || lpad(:c::text, 26, '0'), 'status', 'pending_payment', 'currency', 'USD', 'subtotal_cents', 3998, 'shipping_cents', 499, 'total_cents', 4497, 'items', jsonb_build_array(jsonb_build_object('product_id', 'prod_' || lpad(:pa::text, 26, '0'), 'name', 'Bench product', 'unit_price_cents', 1999, 'quantity', 1, 'line_total_cents', 1999, 'weight_grams', 500), jsonb_build_object('product_id', 'prod_' || lpad(:pb::text, 26, '0'), 'name', 'Bench product', 'unit_price_cents', 1999, 'quantity', 1, 'line_total_cents', 1999, 'weight_grams', 500)), 'shipping_address', jsonb_build_object('name', 'Bench Customer', 'line1', '1 Load Test Way', 'city', 'Springfield', 'postal_code', '12345', 'country', 'US'), 'payment', NULL)) ON CONFLICT (customer_id, key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, outcome = excluded.outcome, created_at = now() WHERE idempotency_keys.status <> ALL ('{201,1002,1012}'::int[]);
UPDATE carts SET order_id = 'ord_' || lpad(:o::text, 26, '0'), version = version + 1, updated_at = now() WHERE id = 'cart_' || lpad(:cart::text, 26, '0') AND order_id IS NULL;
COMMIT;
