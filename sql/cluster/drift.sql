-- Cluster drift and stability from one clustering run to the next (seed S0's iterations), written to `metrics`
-- under the current run and returned.
--
-- Parameters:
--   $from_run, $to_run   run ids of two `vlmdb cluster` runs (iteration i-1 and i), e.g. from
--                        SELECT run_id, config FROM runs WHERE kind = 'cluster' ORDER BY started_at
--   $run_id              bound by vlmdb to the current run
--
-- Output (the rows written to `metrics`): name, item_id, value, where
--   centroid_drift        per matched cluster (item_id 'cluster:<to_cluster>'): Euclidean distance between the
--                         matched centroids (clusters matched by the Hungarian algorithm on centroid similarity)
--   centroid_similarity   per matched cluster: cosine similarity of the matched centroids
--   cluster_size          per cluster of $to_run
--   mean_similarity       per cluster of $to_run: mean cosine similarity of its items to their centroid
--                         (1 - distance for cosine runs; for l2 runs on unit vectors, 1 - distance² / 2)
--   ari, nmi              stability of the assignments over the items both runs clustered

CREATE TABLE drift_matched AS SELECT * FROM cluster_matching($from_run, $to_run);

CREATE TABLE drift_metrics AS
SELECT 'centroid_drift' AS name, concat('cluster:', CAST(to_cluster AS VARCHAR)) AS item_id, drift AS value
FROM drift_matched
UNION ALL
SELECT 'centroid_similarity', concat('cluster:', CAST(to_cluster AS VARCHAR)), similarity FROM drift_matched
UNION ALL
SELECT 'cluster_size', concat('cluster:', CAST(cluster_id AS VARCHAR)), CAST(size AS DOUBLE)
FROM centroids WHERE run_id = $to_run
UNION ALL
SELECT 'mean_similarity', concat('cluster:', CAST(c.cluster_id AS VARCHAR)),
       avg(CASE WHEN r.config LIKE '%"metric":"cosine"%' THEN 1.0 - c.distance
                ELSE 1.0 - c.distance * c.distance / 2.0 END)
FROM clusters c JOIN runs r ON r.run_id = c.run_id
WHERE c.run_id = $to_run
GROUP BY c.cluster_id, r.config
UNION ALL
SELECT 'ari', CAST(NULL AS VARCHAR), ari FROM cluster_agreement($from_run, $to_run)
UNION ALL
SELECT 'nmi', CAST(NULL AS VARCHAR), nmi FROM cluster_agreement($from_run, $to_run);

INSERT INTO metrics (run_id, name, value, item_id)
SELECT $run_id, name, value, item_id FROM drift_metrics;

SELECT name, item_id, value FROM drift_metrics ORDER BY name, item_id;
