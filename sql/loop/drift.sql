-- Similarity decay per hop of a caption→image→caption loop run and its baselines (`vlmdb loop --baselines`);
-- `vlmdb plot drift --run RUN` draws it.
--
-- Parameters:
--   $run   the loop run; its baselines are the loop runs whose config has "baseline_of" = $run
--
-- Output: variant, run_id, hop, then the per-hop means (metrics rows with item_id NULL) of
--   image_sim_to_hop0, image_sim_to_prev, caption_sim_to_hop0, caption_sim_to_prev, image_caption_sim
--   (NULL at hop 0 where a similarity needs an earlier hop), one row per run and hop, ordered by hop with the
--   loop first, so each hop's variants are next to each other.

WITH loop_runs AS (
    SELECT run_id, regexp_match(config, '"variant":"([a-z_]+)"')[1] AS variant
    FROM runs
    WHERE kind = 'loop'
      AND (run_id = $run OR strpos(config, concat('"baseline_of":"', $run, '"')) > 0)
)
SELECT l.variant,
       m.run_id,
       m.iteration AS hop,
       max(CASE WHEN m.name = 'image_sim_to_hop0' THEN m.value END) AS image_sim_to_hop0,
       max(CASE WHEN m.name = 'image_sim_to_prev' THEN m.value END) AS image_sim_to_prev,
       max(CASE WHEN m.name = 'caption_sim_to_hop0' THEN m.value END) AS caption_sim_to_hop0,
       max(CASE WHEN m.name = 'caption_sim_to_prev' THEN m.value END) AS caption_sim_to_prev,
       max(CASE WHEN m.name = 'image_caption_sim' THEN m.value END) AS image_caption_sim
FROM metrics m
JOIN loop_runs l ON m.run_id = l.run_id
WHERE m.item_id IS NULL
GROUP BY l.variant, m.run_id, m.iteration
ORDER BY hop, CASE l.variant WHEN 'loop' THEN 0 ELSE 1 END, l.variant;
