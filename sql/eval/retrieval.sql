-- Retrieval metrics of one embedding space on one dataset split, per direction, in long format, written to
-- `metrics` under the current run and returned.
--
-- Parameters:
--   $space     the space (emb_ table, space name, or the model that made it)
--   $dataset   the dataset whose captions / pairs are the ground truth
--   $split     the split (NULL: the whole dataset as one pool)
--   $dim       Matryoshka (MRL) width: the first $dim dimensions, re-normalised (NULL: the full width)
--   $combiner  composed queries: 'sum' (normalise(reference + text)), 'image' or 'text'
--   $step      recorded on the metrics rows (NULL for `vlmdb eval`; the training step for `vlmdb train`'s epochs)
--   $iteration recorded on the metrics rows (NULL for `vlmdb eval`; the round for `vlmdb train --rounds`)
--   $run_id    bound by vlmdb to the current run
--
-- Output: direction, name, k, dim, value — one row per number, exactly the rows written to `metrics`.
--
-- Definitions (CLIP_benchmark): scores are cosine similarities; a query's ranks are those of its positives among
-- all candidates of the split (ties broken by item id, see `\df retrieval_ranks`); its best rank is the smallest.
--   r_at_K        share of queries whose best rank <= K ("any positive in the top K"), K = 1, 5, 10 (and 50 for
--                 composed retrieval, as CIRR reports)
--   median_rank   median of the best ranks (the mean of the two middle ones for an even count)
--   mean_rank     mean of the best ranks
--   map_at_10     mean over queries of AP@10 = (1 / min(P, 10)) * sum over positives ranked r <= 10 of
--                 (positives ranked <= r) / r, with P the query's number of positives
--   recall_subset_at_K   composed queries with a candidate set: share whose target is within the first K of the set
--                 (K = 1, 2, 3; CIRR's Recall_subset)

-- Composed queries are the dataset's own pairs: augmented ones (`vlmdb augment pairs`) are for training and mining.
CREATE TABLE eval_ranks AS
SELECT * FROM retrieval_ranks($space, $dataset, $split, $dim, $combiner)
WHERE direction <> 'composed'
   OR query_id IN (SELECT pair_id FROM pairs WHERE dataset = $dataset AND source IS NULL);

CREATE TABLE eval_queries AS
SELECT direction,
       query_id,
       min(rank) AS best_rank,
       sum(CASE WHEN rank <= 10 THEN hits / CAST(rank AS DOUBLE) ELSE 0.0 END)
           / CAST(least(count(*), 10) AS DOUBLE) AS ap_at_10
FROM (SELECT direction, query_id, rank,
             CAST(row_number() OVER (PARTITION BY direction, query_id ORDER BY rank) AS DOUBLE) AS hits
      FROM eval_ranks)
GROUP BY direction, query_id;

CREATE TABLE eval_metrics AS
SELECT direction, concat('r_at_', CAST(k AS VARCHAR)) AS name, k,
       avg(CASE WHEN best_rank <= k THEN 1.0 ELSE 0.0 END) AS value
FROM eval_queries
CROSS JOIN (VALUES (1), (5), (10), (50)) AS ks(k)
WHERE k < 50 OR direction = 'composed'
GROUP BY direction, k
UNION ALL
SELECT direction, 'median_rank', CAST(NULL AS BIGINT), median(CAST(best_rank AS DOUBLE))
FROM eval_queries GROUP BY direction
UNION ALL
SELECT direction, 'mean_rank', CAST(NULL AS BIGINT), avg(CAST(best_rank AS DOUBLE))
FROM eval_queries GROUP BY direction
UNION ALL
SELECT direction, 'map_at_10', 10, avg(ap_at_10)
FROM eval_queries GROUP BY direction
UNION ALL
SELECT direction, concat('recall_subset_at_', CAST(k AS VARCHAR)), k,
       avg(CASE WHEN subset_rank <= k THEN 1.0 ELSE 0.0 END)
FROM eval_ranks
CROSS JOIN (VALUES (1), (2), (3)) AS ks(k)
WHERE subset_rank IS NOT NULL
GROUP BY direction, k;

INSERT INTO metrics (run_id, name, value, step, iteration, split, direction, k, dim)
SELECT $run_id, name, value, CAST($step AS BIGINT) AS step, CAST($iteration AS INT) AS iteration, $split,
       direction, CAST(k AS INT), CAST($dim AS INT) AS dim
FROM eval_metrics;

SELECT direction, name, k, CAST($dim AS INT) AS dim, value
FROM eval_metrics
ORDER BY direction, name LIKE 'r_at_%' DESC, k, name;
