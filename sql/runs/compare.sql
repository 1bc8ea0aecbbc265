-- Runs side by side: how their configurations differ, then their metrics, row by row.
--
-- Parameters:
--   $runs   run ids, comma-separated (e.g. a training run and its baseline)
--
-- Output (two results):
--   1. setting, run_id, value — every setting (`run_configs`: kind, name, seed and the flattened config) whose
--      value is not the same in all the runs, one row per run that has it; a setting missing from a run counts
--      as a difference
--   2. metric, direction, k, dim, split, run_id, step, iteration, value — each metric of each run at its last
--      step (or its only value when it has no step) and, of those, at its last iteration (a training run's last
--      round, a loop's last hop); values of several items there averaged; ordered so the runs' numbers for the
--      same metric are next to each other

CREATE TABLE compare_settings AS SELECT * FROM run_configs($runs);

SELECT s.key AS setting, s.run_id, s.value
FROM compare_settings s
JOIN (SELECT key
      FROM compare_settings
      GROUP BY key
      HAVING count(DISTINCT coalesce(value, '<NULL>')) > 1
          OR count(*) < (SELECT count(DISTINCT run_id) FROM compare_settings)) differing
  ON s.key = differing.key
ORDER BY setting, s.run_id;

CREATE TABLE compare_metrics AS
SELECT run_id, name, direction, k, dim, split, step, iteration, value
FROM metrics
WHERE array_has(string_to_array($runs, ','), run_id);

SELECT m.name AS metric, m.direction, m.k, m.dim, m.split, m.run_id, m.step, m.iteration, avg(m.value) AS value
FROM compare_metrics m
JOIN (SELECT run_id, name, direction, k, dim, split, max(step) AS last
      FROM compare_metrics
      GROUP BY run_id, name, direction, k, dim, split) l
  ON m.run_id = l.run_id AND m.name = l.name
 AND (m.direction IS NOT DISTINCT FROM l.direction) AND (m.k IS NOT DISTINCT FROM l.k)
 AND (m.dim IS NOT DISTINCT FROM l.dim) AND (m.split IS NOT DISTINCT FROM l.split)
 AND (m.step IS NOT DISTINCT FROM l.last)
JOIN (SELECT run_id, name, direction, k, dim, split, step, max(iteration) AS last
      FROM compare_metrics
      GROUP BY run_id, name, direction, k, dim, split, step) li
  ON m.run_id = li.run_id AND m.name = li.name
 AND (m.direction IS NOT DISTINCT FROM li.direction) AND (m.k IS NOT DISTINCT FROM li.k)
 AND (m.dim IS NOT DISTINCT FROM li.dim) AND (m.split IS NOT DISTINCT FROM li.split)
 AND (m.step IS NOT DISTINCT FROM li.step) AND (m.iteration IS NOT DISTINCT FROM li.last)
GROUP BY m.name, m.direction, m.k, m.dim, m.split, m.run_id, m.step, m.iteration
ORDER BY metric, m.direction, m.k, m.dim, m.split, m.run_id;
