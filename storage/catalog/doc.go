// Package catalog owns imagefarm's image format on top of a storage.Store:
// content-addressed chunks, manifests named by their digest, and the
// name:version and name:channel refs that point at them.
//
// Layout of the key space:
//
//	chunks/<id[0:2]>/<id>            one zstd frame; id = hex SHA-256 of the uncompressed bytes
//	manifests/sha256/<hex>           a manifest's exact JSON bytes; hex = SHA-256 of those bytes
//	refs/<name>/versions/<version>   "sha256:<hex>\n"; a version, once pushed, never moves
//	refs/<name>/channels/<channel>   "sha256:<hex>\n"; a channel (stable, beta, …) moves
//	refs/<name>/claims/<tag>         "version\n" or "channel\n": what <tag> is, for good (claim.go)
//	signatures/sha256/<hex>/<keyid>  one key's ed25519 signature (JSON Signature) of the manifest <hex>
//
// Every byte read back is checked: a manifest against its digest, a chunk
// against its id. A mismatch is an error naming what was wrong, never data.
//
// A signature signs a Statement: the manifest digest bound to the image's
// name, version and creation time. Verify checks an image against a
// KeyRing of trusted public keys before any of its chunks is fetched.
package catalog
