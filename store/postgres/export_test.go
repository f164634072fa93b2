package postgres

// Channel returns the NOTIFY channel of the store's schema.
func (s *Store) Channel() string { return s.channel }

// Grouped returns how many Updates ran in a group of more than one.
func (s *Store) Grouped() int64 { return s.grouped.Load() }

// SharedReads returns how many reads shared a round trip with others.
func (s *Store) SharedReads() int64 { return s.sharedReads.Load() }
