// Package catalogrefs keeps the image refs the audit trail knows: for each
// ref of the catalog ("NAME:VERSION", "NAME:CHANNEL") the manifest digest
// the trail last recorded it at, in the JetStream KV bucket
// imagefarm-catalog-refs. The controller's catalog watcher compares the
// catalog with it to find the changes nobody reported.
package catalogrefs
