-- The members of each cluster of a clustering run that a contact sheet shows (seed S0): the data of
-- `vlmdb plot contact-sheet`, one row per cell.
--
-- Parameters:
--   $clusters      the `vlmdb cluster` run
--   $per_cluster   images per cluster: the members closest to their centroid (the most typical), ties by id
--
-- Output: cluster_id, size (the cluster's member count), place (1-based, in order of distance), item_id,
-- image (the image's bytes: the item's own for image clusters, its caption's image for caption clusters)

WITH members AS (
    SELECT m.cluster_id, m.item_id, m.distance,
           row_number() OVER (PARTITION BY m.cluster_id ORDER BY m.distance, m.item_id) AS place,
           count(*) OVER (PARTITION BY m.cluster_id) AS size
    FROM clusters m
    WHERE m.run_id = $clusters
)
SELECT m.cluster_id, m.size, m.place, m.item_id, coalesce(i.data, ci.data) AS image
FROM members m
LEFT JOIN images i ON i.image_id = m.item_id
LEFT JOIN captions c ON c.caption_id = m.item_id
LEFT JOIN images ci ON ci.image_id = c.image_id
WHERE m.place <= $per_cluster
ORDER BY m.cluster_id, m.place;
