// Package pki owns the farm's certificates: the farm CA (NewCA, InitCA,
// LoadCA), the certificates it issues to the controller, to imager nodes and
// to clients (CA.Issue), the TLS configs that serve and dial the controller's
// gRPC with them (ServerConfig, ClientConfig), and the identity a verified
// client certificate binds (VerifyClient).
//
// A node's certificate binds its node id as the URI SAN imagefarm://node/ID,
// a client's its name as imagefarm://client/NAME; the common name repeats the
// name for people and is not trusted. Only that one URI names the peer, so a
// node cannot report for another: the controller compares it with the node
// id of the node's Hello.
package pki
