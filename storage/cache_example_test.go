package storage_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

func ExampleNewCache() {
	ctx := context.Background()
	backend := memstore.New() // storage.NewPostgres in production
	// In production the second argument is the shared Redis client; nil
	// leaves only the in-process layer.
	cache := storage.NewCache(backend, nil, storage.CacheOptions{})
	defer cache.Close()

	tn, _ := tenantctx.New("acme", "Acme Ltd", "pro")
	if _, err := cache.CreateTenant(ctx, tn); err != nil {
		fmt.Println(err)
		return
	}
	for range 3 {
		if _, err := cache.TenantBySlug(ctx, "acme"); err != nil {
			fmt.Println(err)
		}
	}
	_, err := cache.TenantBySlug(ctx, "nobody")
	fmt.Println("unknown slug not found:", errors.Is(err, storage.ErrNotFound))
	fmt.Println("backend queries:", backend.Queries())
	fmt.Println("local hits:", cache.Stats().LocalHits)
	// Output:
	// unknown slug not found: true
	// backend queries: 2
	// local hits: 2
}
