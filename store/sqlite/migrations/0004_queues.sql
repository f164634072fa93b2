-- 0004: task queues and pins, workers' liveness, earlier runs, deletable
-- signals.

-- The earlier runs of an execution: a JSON array of
-- {"run","started_at","ended_at","steps"}, or null.
ALTER TABLE executions ADD COLUMN runs TEXT NOT NULL DEFAULT 'null';

-- The highest signal Seq an execution ever gave out. Signals can be
-- deleted, and their Seqs are never given out again, so the next Seq comes
-- from this counter rather than from max(seq) of the inbox.
ALTER TABLE executions ADD COLUMN signal_seq INTEGER NOT NULL DEFAULT 0;
UPDATE executions SET signal_seq = (SELECT coalesce(max(seq), 0) FROM signals WHERE signals.exec = executions.id);

-- The worker that ran a step's last attempt.
ALTER TABLE steps ADD COLUMN worker TEXT NOT NULL DEFAULT '';

-- Tasks are claimed per queue ('' is the default queue). worker, when not
-- '', pins a task to that worker while it is alive (see workers).
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN worker TEXT NOT NULL DEFAULT '';

-- Claim reads the ready tasks of one queue, oldest first.
DROP INDEX tasks_ready;
CREATE INDEX tasks_queue_ready ON tasks (queue, ready_at, id);

-- Workers' liveness: ExtendLeases records that a worker is alive until a
-- time. One row per worker; rows of workers that have been dead for more
-- than a day are deleted as others are written.
CREATE TABLE workers (
	id          TEXT    PRIMARY KEY,
	alive_until INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX workers_alive ON workers (alive_until);
