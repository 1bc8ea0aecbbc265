-- tour.sql — a first look at a vlmdb store.
-- Purpose: record a toy retrieval result for dataset $dataset under the current run, then read it back the way
--          researchers query the store: metrics joined to the run that produced them.
-- Parameters: $dataset (text, e.g. --param dataset=demo); $run_id is bound by vlmdb.
-- Output: 1) row counts of the insert; 2) the run's metrics per direction; 3) the store's runs.

INSERT INTO metrics (run_id, name, value, split, direction, k) VALUES
  ($run_id, 'recall_at_k', 0.50, 'test', 't2i', 1),
  ($run_id, 'recall_at_k', 0.75, 'test', 't2i', 5),
  ($run_id, 'recall_at_k', 0.40, 'test', 'i2t', 1),
  ($run_id, 'recall_at_k', 0.90, 'test', 'i2t', 5);

SELECT m.direction, m.k, m.value AS recall, r.kind, $dataset AS dataset
FROM metrics m JOIN runs r ON m.run_id = r.run_id
WHERE m.run_id = $run_id
ORDER BY m.direction, m.k;

SELECT kind, status, count(*) AS runs FROM runs GROUP BY kind, status ORDER BY kind;
