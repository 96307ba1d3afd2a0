// Package sim is a deterministic, seeded simulator for the consensus state
// machine: N validators on a logical clock, a network that delays, reorders,
// duplicates, loses and partitions messages, validators that crash (also
// between persisting and sending) and restart from their WAL, and up to f
// byzantine validators. A checker asserts agreement, validity, that no correct
// validator ever signs two conflicting messages, and liveness once the
// network heals. It is test infrastructure: nothing outside consensus tests
// imports it.
package sim
