package mongodb

// SetFault makes the store's write commands fail: before they are sent when f
// is called with false and returns an error, or after they were applied (the
// answer lost) when f is called with true and returns an error.
func (s *Store) SetFault(f func(sent bool) error) { s.fault = f }
