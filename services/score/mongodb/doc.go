// Package mongodb stores score's read model: one document per cpf, changed by
// a compare-and-swap on its revision so that several replicas applying events
// for the same cpf never lose an update. In the collection serving the read
// model (Live), a change of a cpf's score appends score.changed to the
// document's outbox in the same write; Relays (package relays, wired in cmd/score) relays
// them. Store also answers reads, waiting for a min_version if asked (Hub
// wakes the waiting readers), and keeps the documents it wrote last in a
// cache so that applying and reading them needs no store read.
//
// Which collection serves the read model is named by a small meta document
// (collection score_meta), so that the model can be rebuilt into a fresh
// collection and switched over atomically. Store reads and swaps that
// document for package rebuild, which decides where each event goes and when
// to switch, and serves reads from the collection of the newest meta document
// it followed.
package mongodb
