// Package rebuild routes person's events into score's read model and rebuilds
// the read model from person, the source of truth. Router is both: Apply and
// ApplyBatch are the consumer's handlers of person's events, StartRebuild and
// RebuildStatus the admin API's, SnapshotCompleted the handler of person's
// answer; Run drives rebuilds forward. The documents themselves, and the meta
// document naming the collection that serves reads, are kept by package
// mongodb.
//
// # Rebuild
//
// The read model is rebuilt into a fresh collection, which then replaces the
// live one, in four steps:
//
//  1. StartRebuild records {id, target collection, state snapshotting} in the
//     meta document (one compare-and-swap, so only one rebuild runs at a time),
//     waits switchAfter (twice metaMaxAge) and publishes snapshot.requested.
//  2. Every replica applies each event to the live collection AND to the
//     target once the meta document it routes by names the target: Apply
//     routes by a meta document read at most metaMaxAge before. This is what
//     makes the result exact: a person write that the snapshot below does not
//     contain happens after person received snapshot.requested, hence more
//     than metaMaxAge after the meta document named the target, so its event
//     is routed by a meta document that names it and reaches the target.
//  3. Person answers with one person.snapshot per cpf (its whole current state,
//     deleted persons included) and then snapshot.completed with the count.
//     Snapshots are ordinary events: Apply merges them by version, so their
//     order relative to live events does not matter. A document a snapshot
//     reached is marked in the target (mongodb.Store.Snapshotted counts them).
//  4. Every replica's Run checks, twice a second, whether the target has
//     caught up: snapshot.completed arrived, at least that many documents are
//     marked, and for every cpf of the live collection the target's document
//     has applied at least the same version. Then one compare-and-swap of the
//     meta document makes the target the active collection; every replica's
//     store follows it at its next meta read (Run reads it every MetaInterval;
//     Apply when its routing copy is older than metaMaxAge): it serves reads
//     from the new collection, wakes its waiting readers and has its
//     score.changed relay follow (mongodb.Relays). The switching replica then
//     publishes score.changed for every cpf of the new collection, so
//     person's copy heals too (the replaced collection cannot tell which
//     scores person holds wrongly).
//
// An event applied by a meta document read before the switch lands in the
// replaced collection as if it were active (its score.changed carries that
// collection's score) and in the new one without a score.changed. So while a
// rebuild runs, and whenever an apply took longer than a rebuild needs at
// least to start and switch, Apply reads the meta document again after its
// writes: if they may have come after a switch, it applies the event by the
// fresh meta document (a duplicate changes nothing) and republishes the cpf's
// score from the new collection, newer than anything the old one published.
// Writes that the second read shows came before the switch are covered by the
// scores the switching replica publishes, which it reads after the switch.
//
// The replaced collection stays, frozen, until the next rebuild starts (for
// inspection); a rebuild that does not switch within RebuildTimeout fails and
// leaves the live collection untouched.
package rebuild
