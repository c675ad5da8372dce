// Package architecture holds the tests that keep docs/architecture.md
// true: the import rules of its package map (the enqueue binary links no
// executor, no public package exposes an internal one, test support stays
// out of production), every package named in the docs, and every test
// the docs cite existing. It has no code of its own.
package architecture
