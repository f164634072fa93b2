-- 0004: workers waiting for tasks. A worker whose claim leaves slots of a
-- queue free is noted here until a moment later (each claim renews or
-- removes its row); a transaction that makes one task claimable names one
-- waiting worker of the task's queue in its notification, so that only
-- that worker claims, instead of every idle one racing for the task.
CREATE TABLE waiting (
	queue text NOT NULL,
	worker text NOT NULL,
	until timestamptz NOT NULL,
	PRIMARY KEY (queue, worker)
);
