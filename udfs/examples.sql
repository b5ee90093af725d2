-- Example queries for `sql-dl sql -f udfs/examples.sql` (run `make demo` first: it writes data/photos/).

-- Top-1 label per photo, from encoded bytes (binaryFile's content column).
SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0(content) AS label
FROM binaryFile.`data/photos/*.jpg`
ORDER BY file;

-- Top-3 with scores, from Spark's image data source (the BGR image struct).
SELECT regexp_extract(image.origin, '[^/]+$', 0) AS file, predict_efficientnet_lite0_topk(image, 3) AS top3
FROM image.`data/photos/*.jpg`
ORDER BY file;

-- Filter on the model's confidence, and keep label and score as flat columns.
SELECT file, top[0].label AS label, round(top[0].score, 3) AS score
FROM (SELECT regexp_extract(path, '[^/]+$', 0) AS file, predict_efficientnet_lite0_topk(content, 1) AS top
      FROM binaryFile.`data/photos/*.jpg`)
WHERE top[0].score > 0.3
ORDER BY score DESC;

-- 1280-dimensional features for transfer learning or similarity search.
SELECT regexp_extract(path, '[^/]+$', 0) AS file, size(featurize_efficientnet_lite0(content)) AS dims
FROM binaryFile.`data/photos/*.jpg`
ORDER BY file;
