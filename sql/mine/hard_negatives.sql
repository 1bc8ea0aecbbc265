-- Hard negatives of one retrieval direction, mined from the exact top-k of every query, written to
-- `hard_negatives` under the current run and summarised.
--
-- Parameters:
--   $space       the space (emb_ table, space name, or the model that made it)
--   $dataset     the dataset; $split its split (NULL: the whole dataset)
--   $direction   t2i (caption -> image), i2t (image -> caption) or composed (pair -> image)
--   $k           negatives kept per query
--   $depth       neighbours fetched per query (>= $k + the most positives a query has; filters may drop more)
--   $margin      absolute margin: keep a negative only when score <= positive_score - $margin (NULL: no filter)
--   $max_ratio   relative margin: keep only when score <= $max_ratio * positive_score (NULL: no filter)
--   $max_positive_similarity  false-negative guard: skip a candidate whose similarity to the positive item
--                exceeds this (a near-duplicate of the answer; NULL: no guard)
--   $iteration   the mining round
--   $augmented   composed queries: 'include' (every pair), 'exclude' (the dataset's own only) or 'only' (the
--                pairs `vlmdb augment pairs` wrote)
--   $run_id      bound by vlmdb to the current run
--
-- Rows written: one per (query, negative): the query's best-ranked positive with its score and rank, the
-- negative's rank among all candidates (positives included) and its score. Positives are never negatives.
-- Output: direction, queries, negatives, mean_gap (positive_score - score).

CREATE TABLE mine_truth AS
SELECT 't2i' AS direction, caption_id AS query_id, image_id AS positive_id
FROM captions WHERE dataset = $dataset AND ($split IS NULL OR split = $split)
UNION ALL
SELECT 'i2t', image_id, caption_id
FROM captions WHERE dataset = $dataset AND ($split IS NULL OR split = $split)
UNION ALL
SELECT 'composed', pair_id, target_id
FROM pairs WHERE dataset = $dataset AND ($split IS NULL OR split = $split) AND target_id IS NOT NULL;

-- Each query's best-ranked positive.
CREATE TABLE mine_positive AS
SELECT query_id, positive_id, rank AS positive_rank, score AS positive_score
FROM (SELECT query_id, positive_id, rank, score,
             row_number() OVER (PARTITION BY query_id ORDER BY rank) AS nth
      FROM retrieval_ranks($space, $dataset, $split)
      WHERE direction = $direction
        AND ($direction <> 'composed'
             OR query_id IN (SELECT pair_id FROM pairs
                             WHERE dataset = $dataset
                               AND ($augmented = 'include'
                                    OR ($augmented = 'exclude' AND source IS NULL)
                                    OR ($augmented = 'only' AND source IS NOT NULL)))))
WHERE nth = 1;

CREATE TABLE mine_neighbors AS
SELECT * FROM knn(
    concat($space, ':', CASE $direction WHEN 't2i' THEN 'caption' WHEN 'i2t' THEN 'image' ELSE 'pair' END),
    concat($space, ':', CASE $direction WHEN 'i2t' THEN 'caption' ELSE 'image' END),
    $depth, $dataset, $split);

CREATE TABLE mine_items AS
SELECT item_id, vector
FROM vectors($space, $dataset, NULL, CASE $direction WHEN 'i2t' THEN 'caption' ELSE 'image' END);

CREATE TABLE mine_result AS
SELECT query_id, positive_id, negative_id, rank, score, positive_score, positive_rank
FROM (SELECT n.query_id, p.positive_id, n.neighbor_id AS negative_id, n.rank, n.score,
             p.positive_score, p.positive_rank,
             row_number() OVER (PARTITION BY n.query_id ORDER BY n.rank) AS nth
      FROM mine_neighbors n
      JOIN mine_positive p ON p.query_id = n.query_id
      LEFT JOIN mine_items vn ON vn.item_id = n.neighbor_id
      LEFT JOIN mine_items vp ON vp.item_id = p.positive_id
      WHERE NOT EXISTS (SELECT 1 FROM mine_truth t
                        WHERE t.direction = $direction AND t.query_id = n.query_id
                          AND t.positive_id = n.neighbor_id)
        AND ($margin IS NULL OR n.score <= p.positive_score - $margin)
        AND ($max_ratio IS NULL OR n.score <= $max_ratio * p.positive_score)
        AND ($max_positive_similarity IS NULL
             OR cosine_similarity(vn.vector, vp.vector) <= $max_positive_similarity))
WHERE nth <= $k;

INSERT INTO hard_negatives (run_id, iteration, query_id, query_kind, positive_id, negative_id, rank, score,
                            positive_score)
SELECT $run_id, CAST($iteration AS INT), query_id,
       CASE $direction WHEN 't2i' THEN 'caption' WHEN 'i2t' THEN 'image' ELSE 'pair' END,
       positive_id, negative_id, CAST(rank AS INT), score, positive_score
FROM mine_result;

SELECT $direction AS direction,
       count(DISTINCT query_id) AS queries,
       count(*) AS negatives,
       avg(positive_score - score) AS mean_gap
FROM mine_result;
