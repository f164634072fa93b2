-- 0003: lighter writes and claims. The tables of an execution's parts no
-- longer reference executions, the tables updated most leave room for HOT
-- updates, and claims have indexes of free and of leased tasks.
--
-- Every write of a step, journal entry, signal or task runs in an Update
-- that holds the execution's lock and has checked that the execution
-- exists, and executions are never deleted, so the foreign keys only cost:
-- each inserted row looked up and share-locked its execution's row.
ALTER TABLE steps DROP CONSTRAINT IF EXISTS steps_exec_fkey;
ALTER TABLE journal DROP CONSTRAINT IF EXISTS journal_exec_fkey;
ALTER TABLE signals DROP CONSTRAINT IF EXISTS signals_exec_fkey;
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_exec_fkey;

-- Room in each page for the new versions of the rows that are updated
-- most (an execution's progress, a step's outcome), so that the updates
-- stay on the page and leave the indexes alone (HOT updates). It applies
-- to the pages written from now on.
ALTER TABLE executions SET (fillfactor = 80);
ALTER TABLE steps SET (fillfactor = 80);

-- Claims walk only what they may take. The index on (queue, ready_at, id)
-- held every task, so a claim walked past all the tasks leased and
-- running (their ready_at is past too) and fetched each one's row to see
-- its lease: a cost that grew with the work in flight. Free tasks now have
-- an index of their own, in claim order, and leased ones one by the time
-- their lease ends (wake_at, which for a leased task is the later of its
-- ready_at and its lease's end), where a claim finds the expired ones.
CREATE INDEX tasks_free ON tasks (queue, ready_at, id) WHERE owner = '';
CREATE INDEX tasks_leased ON tasks (queue, wake_at) WHERE owner <> '';
DROP INDEX tasks_queue_ready;
