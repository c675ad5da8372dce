package storage

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults of KeyUsageOptions.
const (
	DefaultKeyUsageFlushInterval = 15 * time.Second
	DefaultKeyUsageMaxPending    = 10_000
	// keyUsageFlushTimeout bounds one flush, the last one on Close too.
	keyUsageFlushTimeout = 5 * time.Second
)

// KeyUsageOptions configures a KeyUsage. The zero value is usable.
type KeyUsageOptions struct {
	// FlushInterval is how often the keys used since the last flush are
	// written; 0 means DefaultKeyUsageFlushInterval. It is how late an
	// APIKey.LastUsedAt may be.
	FlushInterval time.Duration
	// MaxPending bounds the distinct keys held between two flushes; a key
	// first used past it is recorded at its next use after the flush. 0
	// means DefaultKeyUsageMaxPending.
	MaxPending int
	// Logger receives flush failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// KeyUsage records when API keys last authenticated a request without a
// database write per request: Touch notes the time in memory, and one
// statement (KeyStore.RecordAPIKeyUse) writes every key used since the last
// flush, every FlushInterval and once more on Close. A process writes at
// most one statement per interval however many requests it serves. Last
// use is best effort: a failed flush is logged and its keys are written
// with the next one.
//
// NewKeyUsage starts the flush loop; Close stops it. It is safe for
// concurrent use.
type KeyUsage struct {
	store KeyStore
	opts  KeyUsageOptions
	log   *slog.Logger

	mu      sync.Mutex
	pending map[string]time.Time // key hash -> last use

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewKeyUsage returns a KeyUsage writing to store and starts its flush
// loop. Call Close when done; it does not close store.
func NewKeyUsage(store KeyStore, opts KeyUsageOptions) *KeyUsage {
	opts.FlushInterval = cmp.Or(max(opts.FlushInterval, 0), DefaultKeyUsageFlushInterval)
	opts.MaxPending = cmp.Or(max(opts.MaxPending, 0), DefaultKeyUsageMaxPending)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	u := &KeyUsage{
		store: store, opts: opts, log: opts.Logger.With(slog.String("component", "api_key_usage")),
		pending: make(map[string]time.Time),
		stop:    make(chan struct{}), done: make(chan struct{}),
	}
	go u.loop()
	return u
}

// Touch notes that key authenticated a request now. It costs a hash and a
// map write; nothing is sent until the next flush.
func (u *KeyUsage) Touch(key string) {
	hash, now := HashAPIKey(key), u.opts.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.pending[hash]; ok || len(u.pending) < u.opts.MaxPending {
		u.pending[hash] = now
	}
}

// Flush writes the keys used since the last flush now.
func (u *KeyUsage) Flush(ctx context.Context) error {
	u.mu.Lock()
	batch := u.pending
	u.pending = make(map[string]time.Time, len(batch))
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := u.store.RecordAPIKeyUse(ctx, batch)
	if err == nil {
		return nil
	}
	u.log.WarnContext(ctx, "record api key use", slog.Int("keys", len(batch)), slog.Any("error", err))
	// Keep them for the next flush, behind what was touched meanwhile.
	u.mu.Lock()
	defer u.mu.Unlock()
	for h, at := range batch {
		if _, newer := u.pending[h]; !newer && len(u.pending) < u.opts.MaxPending {
			u.pending[h] = at
		}
	}
	return err
}

// loop flushes every FlushInterval until Close.
func (u *KeyUsage) loop() {
	defer close(u.done)
	tick := time.NewTicker(u.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), keyUsageFlushTimeout)
			_ = u.Flush(ctx) // logged
			cancel()
		}
	}
}

// Close stops the flush loop and writes what is pending. It is safe to call
// more than once.
func (u *KeyUsage) Close() error {
	var err error
	u.closeOnce.Do(func() {
		close(u.stop)
		<-u.done
		ctx, cancel := context.WithTimeout(context.Background(), keyUsageFlushTimeout)
		defer cancel()
		err = u.Flush(ctx)
	})
	return err
}
