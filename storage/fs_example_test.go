package storage_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/invoicing/tenantworker/storage"
)

func ExampleFS() {
	dir, err := os.MkdirTemp("", "documents-*")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	docs, err := storage.NewFS(dir)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	info, err := docs.Put(ctx, "tn_acme", "invoices/42.pdf", strings.NewReader("%PDF-1.7"))
	if err != nil {
		panic(err)
	}
	fmt.Println(info.Key, info.Bytes, info.SHA256[:12])

	rc, _, err := docs.Open(ctx, "tn_acme", "invoices/42.pdf")
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	content, _ := io.ReadAll(rc)
	fmt.Println(string(content))

	_, err = docs.Put(ctx, "tn_acme", "../tn_other/invoices/1.pdf", strings.NewReader("x"))
	fmt.Println(err)
	// Output:
	// invoices/42.pdf 8 86edbaa24831
	// %PDF-1.7
	// put document: invalid document key: "../tn_other/invoices/1.pdf": empty, "." or ".." segment
}
