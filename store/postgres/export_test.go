package postgres

import "context"

// Setting returns a server setting as the store's pooled connections have it.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v)
	return v, err
}

// Channel returns the NOTIFY channel of the store's schema.
func (s *Store) Channel() string { return s.channel }

// Grouped returns how many Updates ran in a group of more than one.
func (s *Store) Grouped() int64 { return s.grouped.Load() }

// Speculated returns how many Updates committed in one round trip on what
// the store kept of their execution, and how many found it changed.
func (s *Store) Speculated() (ok, stale int64) {
	st := s.Stats()
	return st.Speculated, st.Stale
}

// SpeculatedGroups returns how many groups of several Updates committed
// in one round trip on what the store kept of their executions.
func (s *Store) SpeculatedGroups() int64 { return s.specGroups.Load() }

// SharedReads returns how many reads shared a round trip with others.
func (s *Store) SharedReads() int64 { return s.sharedReads.Load() }
