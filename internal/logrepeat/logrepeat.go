// Package logrepeat spaces the log lines that a library writes over and
// over while a dependency is down (asynq's server and go-redis's pool
// while Redis does not answer): a line is written when it first comes and
// then at most once per interval, saying how many like it were left out
// meanwhile.
package logrepeat

import (
	"sync"
	"time"
)

// MaxKeys bounds the lines a Limiter remembers; past it, it forgets them
// all (each then comes through once more at most).
const MaxKeys = 256

// Limiter decides which of the lines, alike by key, are written. The zero
// value is not usable; call New. It is safe for concurrent use.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	seen map[string]*line
}

// line is one key's state: when a line of it was last written, and how
// many were left out since.
type line struct {
	written    time.Time
	suppressed int
}

// New returns a Limiter that writes a line of a key at most once per
// every, by the clock now (nil means time.Now).
func New(every time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{every: every, now: now, seen: map[string]*line{}}
}

// Allow reports whether a line of key is to be written now, and, when it
// is, how many lines of key were left out since the last one written.
func (l *Limiter) Allow(key string) (suppressed int, write bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[key]
	switch {
	case s != nil && now.Sub(s.written) < l.every:
		s.suppressed++
		return 0, false
	case s == nil:
		if len(l.seen) >= MaxKeys {
			clear(l.seen)
		}
		s = &line{}
		l.seen[key] = s
	}
	suppressed = s.suppressed
	s.written, s.suppressed = now, 0
	return suppressed, true
}
