// Package storagetest is the conformance suite every storage.Catalog
// implementation must pass: Postgres, Cache and memstore run the same
// subtests, so they cannot drift apart.
//
//	func TestCatalogConformance(t *testing.T) {
//		storagetest.TestCatalog(t, func(t *testing.T) storage.Catalog {
//			return newEmptyCatalog(t) // cleaned up through t.Cleanup
//		})
//	}
package storagetest
