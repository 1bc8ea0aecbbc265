-- The lineage sheet of a caption→image→caption loop run (seed S0): the data of `vlmdb plot lineage`, one row per
-- cell — per item, hop 0 (the dataset image the loop started from) to hop N, each image with the caption the loop
-- wrote for it.
--
-- Parameters:
--   $run     the `vlmdb loop` run (a baseline run works the same way)
--   $items   how many items (the first by id)
--
-- Output: item (the dataset image the item started from), hop, image_id, image (bytes), caption (NULL where the
-- hop has none yet)

WITH hops AS (
    SELECT c.image_id AS item, 0 AS hop, c.image_id AS image_id, c.text AS caption
    FROM captions c
    WHERE c.run_id = $run AND c.iteration = 0
    UNION ALL
    -- Generated images are <run>/<item>/hop<N> (src/caption_loop/lineage.rs).
    SELECT regexp_replace(substr(i.image_id, char_length($run) + 2), '/hop[0-9]+$', '') AS item,
           i.iteration AS hop, i.image_id, c.text AS caption
    FROM images i
    LEFT JOIN captions c ON c.image_id = i.image_id AND c.run_id = $run
    WHERE i.run_id = $run
),
chosen AS (
    SELECT item FROM (SELECT item, dense_rank() OVER (ORDER BY item) AS n FROM (SELECT DISTINCT item FROM hops) d) r
    WHERE n <= $items
)
SELECT h.item, h.hop, h.image_id, im.data AS image, h.caption
FROM hops h
JOIN chosen USING (item)
JOIN images im ON im.image_id = h.image_id
ORDER BY h.item, h.hop;
