package postgres

// Channel returns the NOTIFY channel of the store's schema.
func (s *Store) Channel() string { return s.channel }
