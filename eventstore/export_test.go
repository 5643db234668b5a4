package eventstore

// QueuedCommits is how many AppendCommit calls wait for a group.
func QueuedCommits(s *Store) int {
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return len(s.group.queue)
}
