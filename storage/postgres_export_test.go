package storage

// CatalogMigrations returns the number of embedded catalog migrations
// (versions need not be contiguous).
func CatalogMigrations() int {
	ms, err := loadCatalogMigrations()
	if err != nil {
		return -1
	}
	return len(ms)
}
