-- Cosine similarities of positive and negative caption–image pairs in one space (seed S3's similarity
-- distributions): the data of `vlmdb plot similarity`.
--
-- Parameters:
--   $space       the space (it must hold the dataset's images and captions)
--   $dataset     the dataset
--   $split       only this split (NULL: all)
--   $negatives   negative images per caption
--   $seed        which negatives: the images are put in an order seeded by md5(id, seed), and caption c of
--                image i is paired with the $negatives images that follow i in that order (wrapping round),
--                so no caption is paired with its own image and the choice is the same for the same seed
--
-- Output: pair ('positive' or 'negative'), caption_id, image_id, similarity

WITH img AS (
    SELECT item_id, vector,
           row_number() OVER (ORDER BY md5(concat(item_id, '/', CAST($seed AS VARCHAR))), item_id) - 1 AS place,
           count(*) OVER () AS n
    FROM vectors($space, $dataset, $split, 'image')
),
cap AS (
    SELECT v.item_id, v.vector, c.image_id
    FROM vectors($space, $dataset, $split, 'caption') v
    JOIN captions c ON c.caption_id = v.item_id
),
offsets AS (
    SELECT unnest(range(1, $negatives + 1)) AS step
)
SELECT 'positive' AS pair, cap.item_id AS caption_id, img.item_id AS image_id,
       cosine_similarity(cap.vector, img.vector) AS similarity
FROM cap JOIN img ON img.item_id = cap.image_id
UNION ALL
SELECT 'negative', cap.item_id, neg.item_id, cosine_similarity(cap.vector, neg.vector)
FROM cap
JOIN img own ON own.item_id = cap.image_id
CROSS JOIN offsets
JOIN img neg ON neg.place = (own.place + offsets.step) % own.n
WHERE offsets.step < own.n
ORDER BY pair DESC, caption_id, image_id;
