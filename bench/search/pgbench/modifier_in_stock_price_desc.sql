-- One class of bench/search's query mix for pgbench: the statements Emporium's search sends
-- for it (persistence/search_store.cpp), parameters bound as pgbench variables or, where
-- Emporium binds NULL (pgbench variables cannot be NULL), as NULL. tests/persistence/
-- search_sql_test.cpp checks that these are the statements search_store.cpp sends.
-- q = a modifier, in_stock=true, sort=price_desc (2.5 %).
-- Run with: pgbench -M extended (libpqxx's exec_params is the extended protocol, unprepared)
\set lim 21
\set m random(1, 16)
SELECT (ARRAY['{classic}', '{premium}', '{compact}', '{vintage}', '{modern}', '{rustic}', '{ergonomic}', '{portable}', '{oak}', '{bamboo}', '{steel}', '{copper}', '{linen}', '{walnut}', '{leather}', '{cobalt}'])[:m] AS words, (ARRAY['classic', 'premium', 'compact', 'vintage', 'modern', 'rustic', 'ergonomic', 'portable', 'oak', 'bamboo', 'steel', 'copper', 'linen', 'walnut', 'leather', 'cobalt'])[:m] AS text \gset
BEGIN READ ONLY;
SELECT set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true), set_config('pg_trgm.word_similarity_threshold', '0.5', true);
WITH args AS (SELECT :words::text[], :text::text, NULL::text[], NULL::bigint, NULL::bigint, true::boolean, :lim::int, NULL::text, NULL::text),
matches AS MATERIALIZED (SELECT p.id, p.category, p.price_cents, (0)::real AS score FROM products p WHERE p.search_vector @@ search_tsquery(:words::text[]) AND (NULL::bigint IS NULL OR p.price_cents >= NULL::bigint) AND (NULL::bigint IS NULL OR p.price_cents <= NULL::bigint) AND (true::boolean IS NULL OR (p.stock > 0) = true::boolean) LIMIT 10001),
capped AS (SELECT count(*) >= 10001 AS yes FROM matches),
keys AS ((SELECT m.id, m.price_cents, m.score FROM matches m WHERE NOT (SELECT yes FROM capped) AND (NULL::text[] IS NULL OR m.category = ANY (NULL::text[])) AND (NULL::text IS NULL OR (m.price_cents, m.id) < (NULL::bigint, NULL::text)) ORDER BY m.price_cents DESC, m.id DESC LIMIT :lim::int)
UNION ALL (SELECT m.id, m.price_cents, m.score FROM (SELECT p.id, p.category, p.price_cents, (0)::real AS score FROM products p WHERE (SELECT yes FROM capped) AND p.search_vector @@ search_tsquery(:words::text[]) AND (NULL::bigint IS NULL OR p.price_cents >= NULL::bigint) AND (NULL::bigint IS NULL OR p.price_cents <= NULL::bigint) AND (true::boolean IS NULL OR (p.stock > 0) = true::boolean) AND (NULL::text[] IS NULL OR p.category = ANY (NULL::text[]))) m WHERE true AND (NULL::text IS NULL OR (m.price_cents, m.id) < (NULL::bigint, NULL::text)) ORDER BY m.price_cents DESC, m.id DESC LIMIT :lim::int)),
page AS (SELECT m.id, m.price_cents, p.sku, p.name, p.currency, p.category, p.stock, p.description, (extract(epoch FROM p.created_at) * 1000)::bigint AS created_ms, m.price_cents::text AS sort_key, row_number() OVER (ORDER BY m.price_cents DESC, m.id DESC) AS ord FROM keys m JOIN products p ON p.id = m.id),
rate AS (SELECT least(100, greatest(0.1, 500000 / greatest(c.reltuples, 1)))::float8 AS pct FROM pg_class c WHERE c.oid = 'products'::regclass),
sampled AS MATERIALIZED (SELECT p.category, p.price_cents FROM products p TABLESAMPLE SYSTEM ((SELECT pct FROM rate)) REPEATABLE (42) WHERE (SELECT yes FROM capped) AND p.search_vector @@ search_tsquery(:words::text[]) AND (NULL::bigint IS NULL OR p.price_cents >= NULL::bigint) AND (NULL::bigint IS NULL OR p.price_cents <= NULL::bigint) AND (true::boolean IS NULL OR (p.stock > 0) = true::boolean)),
counted_in_categories AS (SELECT count(*) AS n FROM (SELECT 1 FROM products p WHERE (SELECT yes FROM capped) AND NULL::text[] IS NOT NULL AND p.search_vector @@ search_tsquery(:words::text[]) AND (NULL::bigint IS NULL OR p.price_cents >= NULL::bigint) AND (NULL::bigint IS NULL OR p.price_cents <= NULL::bigint) AND (true::boolean IS NULL OR (p.stock > 0) = true::boolean) AND (NULL::text[] IS NULL OR p.category = ANY (NULL::text[])) LIMIT 10001) x),
basis AS (SELECT category, price_cents, 1::float8 AS weight FROM matches WHERE NOT (SELECT yes FROM capped) UNION ALL SELECT category, price_cents, 100 / (SELECT pct FROM rate) FROM sampled)
SELECT 'i' AS kind, m.id, m.sku, m.name, m.price_cents, m.currency, m.category, m.stock > 0 AS in_stock, m.created_ms, m.sort_key, coalesce(ts_headline('english', translate(left(m.description, 2000), chr(1) || chr(2), ''), search_tsquery(:words::text[]), 'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', MaxWords=30, MinWords=12, ShortWord=3, MaxFragments=0'), '') AS snippet, m.ord AS n FROM page m
UNION ALL SELECT 'c', NULL, NULL, NULL, NULL, NULL, category, NULL, NULL, NULL, NULL, round(sum(weight))::bigint FROM basis GROUP BY category
UNION ALL SELECT 'p', NULL, NULL, NULL, width_bucket(price_cents, ARRAY[1000, 2500, 5000, 10000, 25000, 50000]::bigint[])::bigint, NULL, NULL, NULL, NULL, NULL, NULL, round(sum(weight))::bigint FROM basis GROUP BY 5
UNION ALL SELECT 't', NULL, NULL, NULL, (SELECT n FROM counted_in_categories), NULL, NULL, (SELECT yes FROM capped), NULL, NULL, NULL, round(coalesce(sum(weight) FILTER (WHERE NULL::text[] IS NULL OR category = ANY (NULL::text[])), 0))::bigint FROM basis;
COMMIT;
