-- Topical training batches from a clustering run (seed S1): the items of one cluster together, each batch from
-- a single cluster, deterministic for a seed.
--
-- Parameters:
--   $run          run id of a `vlmdb cluster` run (its clusters table rows)
--   $batch_size   items per batch (a cluster's last batch may be smaller)
--   $seed         order of items within a cluster and of the batches (same seed, same batches)
--
-- Output: batch (0-based, in training order), position (0-based within the batch), item_id, cluster_id.
-- Order comes from md5 of (id, seed) — a seeded shuffle that needs no state and is the same on every machine.

CREATE TABLE topical_items AS
SELECT c.item_id, c.cluster_id AS topic,
       (row_number() OVER (PARTITION BY c.cluster_id
                           ORDER BY md5(concat(c.item_id, ':', CAST($seed AS VARCHAR))), c.item_id) - 1) AS nth
FROM clusters c
WHERE c.run_id = $run;

CREATE TABLE topical_chunks AS
SELECT t.item_id, t.topic, t.nth / $batch_size AS chunk, t.nth % $batch_size AS position
FROM topical_items t;

SELECT CAST(dense_rank() OVER (ORDER BY md5(concat(CAST(t.topic AS VARCHAR), ':', CAST(t.chunk AS VARCHAR), ':',
                                                      CAST($seed AS VARCHAR))),
                                        t.topic, t.chunk) - 1 AS BIGINT) AS batch,
       t.position, t.item_id, t.topic AS cluster_id
FROM topical_chunks t
ORDER BY batch, t.position;
