-- How hard negatives changed between two mining rounds: which persist, which appear and which resolve.
--
-- Parameters:
--   $from_iteration, $to_iteration   the two rounds (each is the latest mining run with that iteration)
--
-- Output: status (persisted / appeared / resolved), query_id, negative_id, and the negative's rank and score in
-- each round (NULL where it was not a hard negative). A last statement counts each status.

CREATE TABLE diff_runs AS
SELECT (SELECT max(run_id) FROM hard_negatives WHERE iteration = $from_iteration) AS from_run,
       (SELECT max(run_id) FROM hard_negatives WHERE iteration = $to_iteration) AS to_run;

CREATE TABLE diff_rows AS
SELECT CASE WHEN a.query_id IS NULL THEN 'appeared'
            WHEN b.query_id IS NULL THEN 'resolved'
            ELSE 'persisted' END AS status,
       coalesce(a.query_id, b.query_id) AS query_id,
       coalesce(a.negative_id, b.negative_id) AS negative_id,
       a.rank AS from_rank, b.rank AS to_rank, a.score AS from_score, b.score AS to_score
FROM (SELECT h.query_id, h.negative_id, h.rank, h.score
      FROM hard_negatives h JOIN diff_runs r ON h.run_id = r.from_run) a
FULL OUTER JOIN
     (SELECT h.query_id, h.negative_id, h.rank, h.score
      FROM hard_negatives h JOIN diff_runs r ON h.run_id = r.to_run) b
  ON a.query_id = b.query_id AND a.negative_id = b.negative_id;

SELECT * FROM diff_rows ORDER BY status, query_id, negative_id;

SELECT status, count(*) AS negatives FROM diff_rows GROUP BY status ORDER BY status;
