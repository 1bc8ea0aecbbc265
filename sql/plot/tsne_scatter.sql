-- A 2-D t-SNE view of a space's items, coloured by the clusters of a clustering run: the data of
-- `vlmdb plot scatter --method tsne`.
--
-- Parameters:
--   $space, $dataset, $split, $kind, $clusters, $run, $iteration   as in pca_scatter.sql
--   $perplexity    effective neighbours per item (below the item count)
--   $iterations    gradient steps
--   $seed          seed of the layout's RNG
--
-- Output: item_id, x, y, label (the cluster, NULL when unclustered)

SELECT t.item_id, t.x, t.y, CAST(c.cluster_id AS VARCHAR) AS label
FROM tsne($space, $perplexity, $iterations, $seed, $dataset, $split, $kind, NULL, $run, $iteration) t
LEFT JOIN (SELECT item_id, cluster_id FROM clusters WHERE run_id = $clusters) c ON c.item_id = t.item_id
ORDER BY t.item_id;
