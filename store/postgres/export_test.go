package postgres

// Channel returns the NOTIFY channel of the store's schema.
func (s *Store) Channel() string { return s.channel }

// Grouped returns how many Updates ran in a group of more than one.
func (s *Store) Grouped() int64 { return s.grouped.Load() }

// Speculated returns how many Updates committed in one round trip on what
// the store kept of their execution, and how many found it changed.
func (s *Store) Speculated() (ok, stale int64) { return s.speculated.Load(), s.stale.Load() }

// SpeculatedGroups returns how many groups of several Updates committed
// in one round trip on what the store kept of their executions.
func (s *Store) SpeculatedGroups() int64 { return s.specGroups.Load() }

// SharedReads returns how many reads shared a round trip with others.
func (s *Store) SharedReads() int64 { return s.sharedReads.Load() }
