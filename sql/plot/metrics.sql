-- Metric curves of one or more runs: the data `vlmdb plot metrics` draws, one line per series.
--
-- Parameters:
--   $runs      run ids, comma-separated (e.g. a training run and its baseline)
--   $metrics   metric names, comma-separated; NULL: every metric the runs have on the x axis
--   $x         'step', 'iteration', or NULL: the step where there is one, else the iteration
--
-- Output: run_id, series, x, y (ordered by run, series, x), where
--   series   the metric name with the qualifiers that tell its values apart: direction, k=, dim=, split
--   x        the step or iteration (rows with neither are left out: they are not on a curve)
--   y        the value; several values of one series at one x (per-item metrics) are averaged
--   x_axis   'step' or 'iteration': what x counts (names the axis; optional in a --query file)

SELECT run_id, series, x, avg(value) AS y, x_axis
FROM (
    SELECT run_id,
           concat(name, ' ' || direction, ' k=' || CAST(k AS VARCHAR), ' dim=' || CAST(dim AS VARCHAR),
                  ' ' || split) AS series,
           CAST(CASE $x WHEN 'step' THEN step
                        WHEN 'iteration' THEN CAST(iteration AS BIGINT)
                        ELSE coalesce(step, CAST(iteration AS BIGINT)) END AS DOUBLE) AS x,
           CASE WHEN $x = 'iteration' OR ($x IS NULL AND step IS NULL) THEN 'iteration' ELSE 'step' END AS x_axis,
           value
    FROM metrics
    WHERE array_has(string_to_array($runs, ','), run_id)
      AND ($metrics IS NULL OR array_has(string_to_array($metrics, ','), name))
) points
WHERE x IS NOT NULL
GROUP BY run_id, series, x, x_axis
ORDER BY run_id, series, x;
