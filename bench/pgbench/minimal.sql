-- The least durable work an order can cost the database: one conditional stock decrement
-- (refused when short, as Emporium's is) and the order's row, in one transaction, one commit.
-- No lines, no outbox events, no idempotency record, no cart: whatever an order costs beyond
-- this is the server's design, not the database's floor. Same database, schema and rows as
-- checkout.sql (setup.sql), products drawn uniformly over the catalog like checkout.sql.
-- Run with: pgbench -M extended -c 16 -D products=N -D customers=N
--   (-D products=1: every transaction on one product, the hot-SKU case of the database)

\set p random(1, :products)
\set q random(1, 2)
\set c random(1, :customers)
\set o random(1, 999999999999999)
BEGIN;
UPDATE products SET stock = stock - :q::bigint, version = version + 1, updated_at = now() WHERE id = 'prod_' || lpad(:p::text, 26, '0') AND stock >= :q::bigint;
INSERT INTO orders (id, customer_id, status, currency, subtotal_cents, shipping_cents, total_cents, shipping_address, payment_due_at) VALUES ('ord_' || lpad(:o::text, 26, '0'), 'cust_' || lpad(:c::text, 26, '0'), 'pending_payment', 'USD', 1999 * :q::bigint, 499, 1999 * :q::bigint + 499, '{"name":"Bench Customer","line1":"1 Load Test Way","city":"Springfield","postal_code":"12345","country":"US"}'::jsonb, now() + interval '15 minutes');
COMMIT;
