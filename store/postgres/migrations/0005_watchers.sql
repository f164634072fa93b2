-- 0005: who listens for an execution's status. A transaction that only
-- creates or ends an execution notifies other processes only when one of
-- them is named here (the one that created it, those that signalled it or
-- asked to watch it); otherwise its store tells its own listeners itself.
-- Each name is one store's ID, given at Open; a name whose store is gone
-- only costs a notification nobody needed.
ALTER TABLE executions ADD COLUMN watchers text[];
