// Package client is the Go client of a zkbank node's HTTP API (package api).
//
// Client talks to one node. Multi holds every validator of a genesis: it
// reads an account's balance by collecting re-encryption shares from at least
// a threshold of validators and decrypting locally with the owner's key,
// submits uploads to one node (falling back to the next when a node is
// unreachable) and waits for a transfer's fate.
//
// Errors are typed: *UnreachableError (errors.Is ErrUnreachable) names the
// node that could not be reached, ErrUnknownAccount is a 404 on an account,
// *APIError carries the status and the node's JSON error.
//
// The package never imports node, actors, consensus or p2p: it sees a node
// only through api.
package client
