package postgres

import "time"

// Stats are running totals of a Store's work since Open, for telling how
// busy its group commit is (see "Group commit" in the package
// documentation). Differences of two Stats give the figures of the time
// between them.
type Stats struct {
	// Updates is how many Updates (Creates among them) have run to their
	// outcome, committed or failed; Groups is how many groups they ran in,
	// each one transaction (two when it found a kept execution changed,
	// see Stale). Updates / Groups is the mean size of a group.
	Updates, Groups int64
	// Waiting is the Updates' time in the queue: from each Update's call
	// to the start of the group that ran it. Running is the groups' time,
	// from taking a connection to reading the COMMIT's answer.
	Waiting, Running time.Duration
	// Queued is how many Updates wait for a leader at the moment Stats is
	// called (Sub keeps the later figure).
	Queued int
	// Leaders is how many groups may run at once: a quarter of the pool's
	// connections, at least one. Running divided by the time elapsed and
	// by Leaders is the share of that time the leaders were busy; near 1,
	// Updates queue for a leader and wait about half a group's time more
	// than the group itself takes.
	Leaders int
	// Speculated is how many Updates committed in one round trip on what
	// this process kept of their execution; Stale is how many found it
	// changed by someone else and ran the ordinary way instead. Checked
	// is how many of the Speculated needed no guard: their writes checked
	// the versions kept as they wrote (see "Speculative Updates" in the
	// package documentation).
	Speculated, Stale, Checked int64
	// Reads is how many reads of executions (Execution, Snapshot) went
	// through the shared read queue, in ReadBatches batches of one round
	// trip each (more when a read failed and the others went again).
	Reads, ReadBatches int64
}

// Stats returns the store's running totals. It is cheap (atomic loads
// and a moment's lock of the queue) and safe to call at any time, also
// after Close.
func (s *Store) Stats() Stats {
	return Stats{
		Updates:     s.updates.counts.calls.Load(),
		Groups:      s.updates.counts.batches.Load(),
		Waiting:     time.Duration(s.updates.counts.waited.Load()),
		Running:     time.Duration(s.updates.counts.ran.Load()),
		Queued:      s.updates.queued(),
		Leaders:     s.updates.maxLeaders,
		Speculated:  s.speculated.Load(),
		Stale:       s.stale.Load(),
		Checked:     s.checked.Load(),
		Reads:       s.reads.counts.calls.Load(),
		ReadBatches: s.reads.counts.batches.Load(),
	}
}

// Sub returns the totals of the time between earlier and s.
func (s Stats) Sub(earlier Stats) Stats {
	return Stats{
		Updates:     s.Updates - earlier.Updates,
		Groups:      s.Groups - earlier.Groups,
		Waiting:     s.Waiting - earlier.Waiting,
		Running:     s.Running - earlier.Running,
		Queued:      s.Queued,
		Leaders:     s.Leaders,
		Speculated:  s.Speculated - earlier.Speculated,
		Stale:       s.Stale - earlier.Stale,
		Checked:     s.Checked - earlier.Checked,
		Reads:       s.Reads - earlier.Reads,
		ReadBatches: s.ReadBatches - earlier.ReadBatches,
	}
}
