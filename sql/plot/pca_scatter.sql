-- A 2-D PCA view of a space's items, coloured by the clusters of a clustering run: the data of
-- `vlmdb plot scatter --method pca`.
--
-- Parameters:
--   $space      the space (emb_ table, space name, or the model that made it)
--   $dataset    only this dataset's items (NULL: all)
--   $split      only this split (NULL: all)
--   $kind       the kind of item: image, caption, pair_text
--   $clusters   the `vlmdb cluster` run whose assignments colour the points (NULL: one colour)
--   $run        only the items this loop run wrote (NULL: all)
--   $iteration  only the items of this loop hop (NULL: all)
--
-- Output: item_id, x, y (first two principal components), label (the cluster, NULL when unclustered)

SELECT p.item_id, p.pc1 AS x, p.pc2 AS y, CAST(c.cluster_id AS VARCHAR) AS label
FROM pca($space, 2, $dataset, $split, $kind, $run, $iteration) p
LEFT JOIN (SELECT item_id, cluster_id FROM clusters WHERE run_id = $clusters) c ON c.item_id = p.item_id
ORDER BY p.item_id;
