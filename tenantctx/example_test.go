package tenantctx_test

import (
	"context"
	"fmt"

	"github.com/invoicing/tenantworker/tenantctx"
)

func ExampleSlugFromHost() {
	slug, err := tenantctx.SlugFromHost("acme.example.com:8080", ".example.com")
	fmt.Println(slug, err)
	_, err = tenantctx.SlugFromHost("acme.example.com.evil.com", ".example.com")
	fmt.Println(err != nil)
	// Output:
	// acme <nil>
	// true
}

func ExampleWithTenant() {
	t, _ := tenantctx.New("acme", "Acme Inc.", "pro")
	ctx := tenantctx.WithTenant(context.Background(), t)
	got, ok := tenantctx.FromContext(ctx)
	fmt.Println(got.Slug, got.Schema, ok)
	_, ok = tenantctx.FromContext(context.Background())
	fmt.Println(ok)
	// Output:
	// acme tenant_acme true
	// false
}

func ExampleStatus_Decide() {
	for _, s := range tenantctx.Statuses {
		fmt.Println(s, s.Decide(tenantctx.Work), s.Decide(tenantctx.Migration), s.Decide(tenantctx.Destruction))
	}
	// Output:
	// provisioning wait run wait
	// active run run wait
	// suspended wait run wait
	// deleting refuse refuse run
}
