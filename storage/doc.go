// Package storage owns the blob stores that hold the image catalog: a flat key
// space of objects on S3-compatible storage (MinIO, AWS S3, …) or, for the dev
// farm and tests, in a local directory. Open turns a store URL into a Store.
//
// Chunks, manifests and refs are built on top of a Store by package catalog;
// this package knows nothing about their format.
package storage
