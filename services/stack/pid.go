package stack

// PID is the process id of a running process of the stack (Mongo, Person or
// Score), or 0 when it is not running. Benchmarks read its /proc entries.
func (s *Stack) PID(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd := s.procs[name]; cmd != nil && cmd.Process != nil {
		return cmd.Process.Pid
	}
	return 0
}
