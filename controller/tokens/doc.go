// Package tokens owns the client API's bearer tokens: making their
// secrets, and keeping what the controller knows of them in NATS JetStream.
//
// A secret is "ift_" and the base64url of 32 random bytes. The controller
// never stores it: the bucket imagefarm-tokens maps the hex SHA-256 of the
// secret to the Token (name, role, created, created_by). A plain SHA-256
// suffices because a secret has 256 bits of entropy: there is nothing to
// guess that a slow hash would protect. A token's id is the first 12 hex
// digits of that hash; a name may not look like an id, since revoke takes
// either. Revoking a token deletes its key, so its secret is refused from
// then on; the last admin token is revoked only when forced.
package tokens
