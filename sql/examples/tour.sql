-- tour.sql — a first look at a dataset in a vlmdb store.
-- Purpose: the shape of dataset $dataset (images and captions per split, image formats and sizes), an example
--          caption per split, and the runs that wrote the store.
-- Parameters: $dataset (text, e.g. --param dataset=shapes); $run_id is bound by vlmdb but not used here.
-- Output: 1) per split: images, captions, captions per image; 2) formats and sizes; 3) one caption per split;
--         4) the store's runs.

SELECT i.split,
       count(DISTINCT i.image_id) AS images,
       count(c.caption_id) AS captions,
       round(CAST(count(c.caption_id) AS DOUBLE) / count(DISTINCT i.image_id), 2) AS captions_per_image
FROM images i LEFT JOIN captions c ON c.image_id = i.image_id
WHERE i.dataset = $dataset
GROUP BY i.split
ORDER BY i.split;

SELECT format, width, height, count(*) AS images
FROM images
WHERE dataset = $dataset
GROUP BY format, width, height
ORDER BY images DESC, format;

SELECT split, min(text) AS example_caption
FROM captions
WHERE dataset = $dataset
GROUP BY split
ORDER BY split;

SELECT kind, name, status, count(*) AS runs FROM runs GROUP BY kind, name, status ORDER BY kind, name;
