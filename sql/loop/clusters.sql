-- Clusters tracked from one hop of a caption→image→caption loop run to the next (seed S0): the clusters of two
-- `vlmdb cluster --run LOOP --iteration H` runs (hops H-1 and H, same kind) matched one-to-one by centroid
-- similarity, and how many of the loop's items followed each match (an item's image, or caption, at hop H-1 in the
-- one cluster and at hop H in the other).
--
-- Parameters:
--   $from_run, $to_run   run ids of the two `vlmdb cluster` runs (the earlier hop first), e.g. from
--                        SELECT run_id, config FROM runs WHERE kind = 'cluster' AND strpos(config, $loop) > 0
--
-- Output: from_cluster, to_cluster, similarity (cosine of the matched centroids), drift (their Euclidean
-- distance), from_size, to_size, followed (items in from_cluster at the earlier hop and in to_cluster at the
-- later one), follow_rate (followed / from_size; 1 = the cluster's items stayed together)

WITH loop_run AS (
    SELECT regexp_match(config, '"run":"([^"]+)"')[1] AS run FROM runs WHERE run_id = $to_run
),
members AS (
    -- Hop H items are <loop run>/<item>/hop<H>[/caption] (src/caption_loop/lineage.rs); hop 0 images are the
    -- dataset's own ids.
    SELECT c.run_id, c.cluster_id,
           regexp_replace(regexp_replace(c.item_id, '/hop[0-9]+(/caption)?$', ''), concat('^', l.run, '/'), '')
               AS item
    FROM clusters c CROSS JOIN loop_run l
    WHERE c.run_id = $from_run OR c.run_id = $to_run
),
moves AS (
    SELECT f.cluster_id AS from_cluster, t.cluster_id AS to_cluster, count(*) AS n
    FROM members f JOIN members t ON f.item = t.item
    WHERE f.run_id = $from_run AND t.run_id = $to_run
    GROUP BY f.cluster_id, t.cluster_id
)
SELECT m.from_cluster, m.to_cluster, m.similarity, m.drift, m.from_size, m.to_size,
       coalesce(v.n, 0) AS followed,
       coalesce(v.n, 0) / CAST(m.from_size AS DOUBLE) AS follow_rate
FROM cluster_matching($from_run, $to_run) m
LEFT JOIN moves v ON v.from_cluster = m.from_cluster AND v.to_cluster = m.to_cluster
ORDER BY m.from_cluster;
