package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// invalidation is the pub/sub message a write publishes so that other
// Cache instances drop their local entries.
type invalidation struct {
	// Source is the publishing instance, which has already dropped them.
	Source string `json:"source"`
	// Keys are logical cache keys ("id:...", "slug:...", "key:<hash>").
	Keys []string `json:"keys,omitempty"`
	// KeysOfTenant asks to drop every cached API key of that tenant.
	KeysOfTenant string `json:"keys_of_tenant,omitempty"`
}

// publish sends msg to the other instances and returns what failed (after
// logging it).
func (c *Cache) publish(ctx context.Context, msg invalidation) error {
	if c.rdb == nil {
		return nil
	}
	raw, err := json.Marshal(msg)
	if err != nil {
		c.log.ErrorContext(ctx, "tenant cache: encode invalidation", slog.Any("error", err))
		return fmt.Errorf("encode invalidation: %w", err)
	}
	if err := c.rdb.Publish(ctx, c.opts.Channel, raw).Err(); err != nil {
		c.redisWriteFailed(ctx, "publish", c.opts.Channel, err)
		return fmt.Errorf("publish invalidation on %s: %w", c.opts.Channel, err)
	}
	return nil
}

// receiveInvalidations applies other instances' invalidations to the local
// layer until ctx ends. Each (re)subscription clears the local layer:
// messages may have been missed while disconnected.
func (c *Cache) receiveInvalidations(ctx context.Context, ps *redis.PubSub) {
	defer close(c.done)
	ch := ps.ChannelWithSubscriptions()
	defer func() {
		_ = ps.Close()
		// Unblock go-redis's forwarding goroutine until it closes ch.
		for range ch {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					c.local.clear()
					c.subscribedOnce.Do(func() { close(c.subscribed) })
				}
			case *redis.Message:
				c.applyInvalidation(m.Payload)
			}
		}
	}
}

// applyInvalidation drops what one message names; an undecodable message
// clears the whole local layer.
func (c *Cache) applyInvalidation(payload string) {
	var msg invalidation
	if err := json.Unmarshal([]byte(payload), &msg); err != nil {
		c.log.Warn("tenant cache: undecodable invalidation, clearing local cache", slog.Any("error", err))
		c.local.clear()
		return
	}
	if msg.Source == c.instance {
		return
	}
	var tenants []string
	if msg.KeysOfTenant != "" {
		tenants = []string{msg.KeysOfTenant}
	}
	c.local.drop(msg.Keys, tenants)
}
