package storage

import (
	"fmt"
	"testing"
	"time"
)

func TestLocalCacheBoundedAndExpiring(t *testing.T) {
	t.Parallel()
	l := newLocalCache(100)
	now := time.Now()
	for i := range 1000 {
		if !l.setIfEpoch(fmt.Sprintf("id:t%d", i), cacheEntry{}, time.Minute, l.currentEpoch(), now) {
			t.Fatalf("setIfEpoch #%d refused without an invalidation", i)
		}
		if n := l.len(); n > 100 {
			t.Fatalf("after %d inserts the local cache holds %d entries, bound is 100", i+1, n)
		}
	}
	if _, ok := l.get("id:t999", now); !ok {
		t.Errorf("the newest entry was evicted")
	}
	if _, ok := l.get("id:t999", now.Add(time.Minute)); ok {
		t.Errorf("entry served at its expiry")
	}
	if l.setIfEpoch("id:off", cacheEntry{}, -time.Second, l.currentEpoch(), now) {
		t.Errorf("setIfEpoch stored with a negative TTL (layer off)")
	}
}

func TestLocalCacheEpochGuard(t *testing.T) {
	t.Parallel()
	l := newLocalCache(10)
	now := time.Now()
	stale := cacheEntry{Found: true, TenantID: "tn_a"}
	epoch := l.currentEpoch()
	l.drop([]string{"key:h1"}, nil) // an invalidation while the reader was away
	if l.setIfEpoch("key:h1", stale, time.Minute, epoch, now) {
		t.Fatalf("setIfEpoch stored a value read before an invalidation")
	}
	if _, ok := l.get("key:h1", now); ok {
		t.Fatalf("stale value served")
	}

	tests := []struct {
		name   string
		drop   func()
		gone   []string
		remain []string
	}{
		{"keys", func() { l.drop([]string{"id:a", "slug:a"}, nil) }, []string{"id:a", "slug:a"}, []string{"id:b", "key:ha", "key:hb"}},
		{"api keys of a tenant", func() { l.drop(nil, []string{"tn_a"}) }, []string{"key:ha"}, []string{"id:a", "id:b", "key:hb"}},
		{"clear", l.clear, []string{"id:a", "id:b", "key:ha", "key:hb"}, nil},
	}
	for _, tt := range tests {
		fill := map[string]cacheEntry{
			"id:a": {Found: true}, "slug:a": {Found: true}, "id:b": {Found: true},
			"key:ha": {Found: true, TenantID: "tn_a"}, "key:hb": {Found: true, TenantID: "tn_b"},
		}
		for k, e := range fill {
			l.setIfEpoch(k, e, time.Minute, l.currentEpoch(), now)
		}
		tt.drop()
		for _, k := range tt.gone {
			if _, ok := l.get(k, now); ok {
				t.Errorf("%s: %s still cached", tt.name, k)
			}
		}
		for _, k := range tt.remain {
			if _, ok := l.get(k, now); !ok {
				t.Errorf("%s: %s dropped too", tt.name, k)
			}
		}
	}
}
