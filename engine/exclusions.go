package engine

import "errors"

// applyLocked takes the parts of cfg that may change at run time.
func (c *Client) applyLocked(cfg ClientConfig) {
	c.planner.dst = cfg.DstAddr
	c.planner.overrides = cfg.DstOverrides
	c.planner.labels = cfg.Labels
	// A run-time toggle is relative to the configuration: when the file
	// now says otherwise about that interface, the file wins.
	was, now := setOf(c.cfg.Excluded), setOf(cfg.Excluded)
	for name := range c.swaps {
		if was[name] != now[name] {
			delete(c.swaps, name)
		}
	}
	c.cfg.Excluded = cfg.Excluded
	c.planner.excluded = c.exclusionsLocked()
	c.setWriteTimeout(cfg.Options)
}

func setOf(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// exclusionsLocked combines the configured exclusions with the run-time
// swaps.
func (c *Client) exclusionsLocked() map[string]bool {
	ex := map[string]bool{}
	for _, x := range c.cfg.Excluded {
		ex[x] = true
	}
	for x := range c.swaps {
		ex[x] = !ex[x]
	}
	return ex
}

// ErrStopping is returned by the exclusion toggles once Run is closing the
// client's links.
var ErrStopping = errors.New("the client is stopping")

// SetExclusion excludes or includes an interface until ResetExclusions or
// a restart, and reports whether that changed anything. The change takes
// effect at once. Once Run is stopping it changes nothing and returns
// ErrStopping: a link opened then would receive into buffers being freed.
func (c *Client) SetExclusion(name string, exclude bool) (bool, error) {
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return false, ErrStopping
	}
	if c.planner.excluded[name] == exclude {
		c.mu.Unlock()
		return false, nil
	}
	if c.swaps[name] {
		delete(c.swaps, name)
	} else {
		c.swaps[name] = true
	}
	c.planner.excluded = c.exclusionsLocked()
	c.mu.Unlock()
	// scan checks stopping again: Run may have begun to stop since.
	c.scan()
	return true, nil
}

// Excluded reports whether an interface is excluded now.
func (c *Client) Excluded(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.planner.excluded[name]
}

// ResetExclusions drops the run-time exclusion changes: the configuration
// decides again. Once Run is stopping it changes nothing and returns
// ErrStopping.
func (c *Client) ResetExclusions() error {
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return ErrStopping
	}
	clear(c.swaps)
	c.planner.excluded = c.exclusionsLocked()
	c.mu.Unlock()
	c.scan()
	return nil
}
