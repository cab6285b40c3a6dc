-- Data for the pgbench run of bench/compare.sh, in a database of its own (emporium_pgbench)
-- whose schema `emporium migrate` created: the same tables, columns and constraints as the
-- server's. Ids have the shape of Emporium's (a prefix and 26 characters) but are computable
-- from a number, so checkout.sql can name rows without a lookup.
--   psql -v products=100000 -v customers=1000 -v carts=300000 -f setup.sql
-- Stock is ample: pgbench cannot branch on an UPDATE that found no row (a 409 in Emporium).

INSERT INTO products (id, sku, name, description, price_cents, currency, category, stock,
                      weight_grams, images)
SELECT 'prod_' || lpad(n::text, 26, '0'), 'PGB-' || n, 'Bench product ' || n,
       'A product for pgbench', 1999, 'USD', 'bench', 1000000000, 500, '[]'
  FROM generate_series(1, :products) AS n;

INSERT INTO customers (id, email, name, password_hash)
SELECT 'cust_' || lpad(n::text, 26, '0'), 'pgbench-' || n || '@example.com', 'Bench Customer',
       'not-a-hash'
  FROM generate_series(1, :customers) AS n;

-- One open cart per transaction to come (checkout marks it checked out).
INSERT INTO carts (id, customer_id, expires_at)
SELECT 'cart_' || lpad(n::text, 26, '0'), 'cust_' || lpad((1 + n % :customers)::text, 26, '0'),
       now() + interval '1 day'
  FROM generate_series(1, :carts) AS n;

VACUUM ANALYZE products, customers, carts;
