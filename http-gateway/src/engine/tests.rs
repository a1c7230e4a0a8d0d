//! The engine by itself: time is a number, so expiry and redelivery need no sleeping.

use super::*;

fn k(q: i32) -> QueueKey {
    QueueKey::new(false, "b", q)
}

fn table(mode: QueueMode, n: i32) -> ScopeTable {
    let mut t = ScopeTable::new(mode);
    t.set_queues((0..n).map(k), 0);
    t
}

const T: i64 = 300_000;

/// Claims queue `q` at `now`, rebases on `committed`, pulls `offsets` ending at `next`.
fn deliver(
    t: &mut ScopeTable,
    q: i32,
    committed: Option<i64>,
    offsets: std::ops::Range<i64>,
    now: i64,
    timeout: i64,
) -> (Claim, PullOutcome) {
    let c = t.begin(&k(q), now, timeout, None).unwrap();
    if let Some(o) = committed {
        assert!(t.rebase(&k(q), c.id, o));
    }
    let pulled: Vec<i64> = offsets.clone().collect();
    let out = t.record_pull(&k(q), c.id, &pulled, offsets.end, offsets.end, now, None);
    (c, out)
}

fn token(offset: i64, next_offset: i64, lock_time: i64) -> AckToken {
    AckToken {
        offset,
        next_offset,
        lock_time,
        force: false,
    }
}

// ---- MQ-Proxy batches (exclusive mode) ---------------------------------------------------

#[test]
fn batch_ack_commits_every_receipt_of_the_batch() {
    let mut t = table(QueueMode::Exclusive, 2);
    let (c, out) = deliver(&mut t, 0, Some(10), 10..42, 1000, T);
    assert_eq!(out.handed.len(), 32);
    assert!(out
        .handed
        .iter()
        .all(|h| h.count == 1 && h.deadline == 1000 + T));
    assert_eq!(
        t.begin(&k(0), 1001, T, None),
        Err(LeaseError::Busy),
        "nothing new from a queue with a batch out"
    );
    let tok = token(10, 42, c.id);
    assert_eq!(
        t.ack_batch(&k(0), &tok),
        AckOutcome::Commit { from: 10, to: 42 }
    );
    // while the broker write is in flight the queue is not leasable and a repeat ack waits
    assert!(!t.candidates(1002, 0).contains(&k(0)));
    assert_eq!(t.ack_batch(&k(0), &tok), AckOutcome::LockNotExist);
    assert_eq!(t.finish_commit(&k(0), 42, true), None);
    let s = t.get(&k(0)).unwrap();
    assert_eq!(s.committed, Some(42));
    assert!(s.in_flight.is_empty() && s.deliveries.is_empty() && s.current().is_none());
    assert_eq!(t.ack_batch(&k(0), &tok), AckOutcome::LockNotExist);
    assert!(t.candidates(1003, 0).contains(&k(0)));
}

#[test]
fn failed_broker_write_keeps_the_batch_out_until_its_deadline() {
    let mut t = table(QueueMode::Exclusive, 1);
    let (c, _) = deliver(&mut t, 0, Some(0), 0..5, 1000, T);
    let tok = token(0, 5, c.id);
    assert!(matches!(
        t.ack_batch(&k(0), &tok),
        AckOutcome::Commit { .. }
    ));
    assert_eq!(t.finish_commit(&k(0), 5, false), None);
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(0));
    assert!(t.candidates(2000, 0).is_empty());
    // the same requestId may try again
    assert!(matches!(
        t.ack_batch(&k(0), &tok),
        AckOutcome::Commit { .. }
    ));
    t.finish_commit(&k(0), 5, false);
    assert_eq!(t.candidates(1000 + T, 0), vec![k(0)]);
}

#[test]
fn expiry_redelivers_with_a_new_lock_time_and_late_acks_are_stale() {
    let mut t = table(QueueMode::Exclusive, 1);
    let (first, _) = deliver(&mut t, 0, Some(7), 7..9, 1000, T);
    assert!(t.expired(1000 + T - 1).is_empty());
    assert_eq!(t.expired(1000 + T), vec![k(0)]);
    assert_eq!(t.next_deadline(1000), Some(1000 + T));
    // a second consumer gets the same messages again, from the same committed offset
    let (second, out) = deliver(&mut t, 0, Some(7), 7..9, 1000 + T, T);
    assert_eq!(second.from, 7);
    assert!(second.id > first.id);
    assert_eq!(
        out.handed.iter().map(|h| h.count).collect::<Vec<_>>(),
        vec![2, 2]
    );
    assert_eq!(
        t.ack_batch(&k(0), &token(7, 9, first.id)),
        AckOutcome::Stale {
            current_lock_time: second.id
        }
    );
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(7));
    assert!(matches!(
        t.ack_batch(&k(0), &token(7, 9, second.id)),
        AckOutcome::Commit { from: 7, to: 9 }
    ));
}

#[test]
fn an_expired_batch_nobody_took_again_can_still_be_acked() {
    let mut t = table(QueueMode::Exclusive, 1);
    let (c, _) = deliver(&mut t, 0, Some(3), 3..6, 1000, T);
    // the deadline passed and the queue is free again...
    assert_eq!(t.expired(1000 + T + 1), vec![k(0)]);
    assert_eq!(t.candidates(1000 + T + 1, 0), vec![k(0)]);
    // ...but no one claimed it, so the late ack is still the current one
    assert_eq!(
        t.ack_batch(&k(0), &token(3, 6, c.id)),
        AckOutcome::Commit { from: 3, to: 6 }
    );
}

#[test]
fn moved_offsets_and_forced_acks() {
    let mut t = table(QueueMode::Exclusive, 1);
    let (c, _) = deliver(&mut t, 0, Some(3), 3..6, 1000, T);
    t.set_committed(&k(0), 5);
    let tok = token(3, 6, c.id);
    assert_eq!(
        t.ack_batch(&k(0), &tok),
        AckOutcome::OffsetMoved { committed: Some(5) }
    );
    let forced = AckToken { force: true, ..tok };
    assert_eq!(
        t.ack_batch(&k(0), &forced),
        AckOutcome::Commit { from: 5, to: 6 }
    );
}

#[test]
fn rebase_sets_the_batch_start_under_the_claim() {
    let mut t = table(QueueMode::Exclusive, 1);
    let c = t.begin(&k(0), 1000, T, None).unwrap();
    assert!(t.rebase(&k(0), c.id, 20));
    assert!(!t.rebase(&k(0), c.id + 1, 30));
    t.record_pull(&k(0), c.id, &[20, 21, 22, 23, 24], 25, 25, 1000, None);
    assert_eq!(
        t.ack_batch(&k(0), &token(20, 25, c.id)),
        AckOutcome::Commit { from: 20, to: 25 }
    );
}

#[test]
fn altered_batch_ends_are_refused() {
    let mut t = table(QueueMode::Exclusive, 1);
    let (c, _) = deliver(&mut t, 0, Some(0), 0..5, 1000, T);
    assert_eq!(
        t.ack_batch(&k(0), &token(0, 500, c.id)),
        AckOutcome::Mismatch { expected: 5 }
    );
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(0));
}

#[test]
fn a_batch_committed_elsewhere_ends_the_delivery() {
    let mut t = table(QueueMode::Exclusive, 1);
    deliver(&mut t, 0, Some(10), 10..15, 1000, T);
    assert!(t.pending_batches(1500, 1000).is_empty());
    assert_eq!(t.pending_batches(2000, 1000), vec![k(0)]);
    assert!(!t.settle_committed_elsewhere(&k(0), 10));
    assert!(t.settle_committed_elsewhere(&k(0), 15));
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(15));
    assert_eq!(t.candidates(2001, 0), vec![k(0)]);
}

#[test]
fn an_empty_batch_releases() {
    let mut t = table(QueueMode::Exclusive, 1);
    let c = t.begin(&k(0), 1000, T, None).unwrap();
    t.rebase(&k(0), c.id, 3);
    assert_eq!(t.ack_batch(&k(0), &token(3, 3, c.id)), AckOutcome::Released);
    assert!(t.get(&k(0)).unwrap().current().is_none());
    // a pull that found nothing leaves the claim to be released
    let c = t.begin(&k(0), 1001, T, None).unwrap();
    let out = t.record_pull(&k(0), c.id, &[], 3, 3, 1001, None);
    assert!(!out.found());
    assert!(t.release(&k(0), c.id));
    assert!(t.get(&k(0)).unwrap().recently_empty(1002, 300));
}

#[test]
fn unlock_only_with_the_right_lock_time_and_the_batch_comes_again_at_once() {
    let mut t = table(QueueMode::Exclusive, 1);
    let (c, _) = deliver(&mut t, 0, Some(0), 0..3, 1000, T);
    assert!(!t.release(&k(0), c.id - 1));
    assert!(t.release(&k(0), c.id));
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(0));
    assert_eq!(t.candidates(1001, 0), vec![k(0)]);
    assert_eq!(
        t.ack_batch(&k(0), &token(0, 3, c.id)),
        AckOutcome::LockNotExist
    );
    let (_, out) = deliver(&mut t, 0, Some(0), 0..3, 1001, T);
    assert_eq!(out.handed.len(), 3);
    assert!(out.handed.iter().all(|h| h.count == 2));
}

#[test]
fn lock_times_are_unique_within_a_millisecond() {
    let mut t = table(QueueMode::Exclusive, 1);
    let a = t.begin(&k(0), 1000, T, None).unwrap();
    t.release(&k(0), a.id);
    let b = t.begin(&k(0), 1000, T, None).unwrap();
    t.release(&k(0), b.id);
    let c = t.begin(&k(0), 900, T, None).unwrap(); // clock stepped back
    assert!(a.id < b.id && b.id < c.id);
}

#[test]
fn an_abandoned_claim_lapses_at_its_deadline() {
    let mut t = table(QueueMode::Exclusive, 1);
    t.begin(&k(0), 1000, T, None).unwrap();
    assert!(t.candidates(1000 + T - 1, 0).is_empty());
    assert_eq!(t.candidates(1000 + T, 0), vec![k(0)]);
}

#[test]
fn candidates_by_backlog_then_last_consume() {
    let mut t = table(QueueMode::Exclusive, 4);
    for (q, committed, max) in [(0, 0, 5), (1, 0, 50), (2, 0, 5), (3, 10, 10)] {
        t.set_committed(&k(q), committed);
        t.set_max_offset(&k(q), max);
    }
    let c = t.begin(&k(0), 100, T, None).unwrap();
    t.record_pull(&k(0), c.id, &[], 0, 5, 100, None);
    t.release(&k(0), c.id);
    assert_eq!(t.candidates(200, 0), vec![k(1), k(2), k(0), k(3)]);
    // a queue found empty a moment ago goes last
    let c = t.begin(&k(1), 200, T, None).unwrap();
    t.record_pull(&k(1), c.id, &[], 0, 0, 200, None);
    t.release(&k(1), c.id);
    t.set_max_offset(&k(1), 0);
    assert_eq!(t.candidates(250, 1000).last(), Some(&k(1)));
    // held by another instance: skipped until the mark passes
    t.mark_held_elsewhere(&k(2), 500);
    assert!(!t.candidates(300, 0).contains(&k(2)));
    assert!(t.candidates(500, 0).contains(&k(2)));
}

#[test]
fn route_changes_keep_queues_with_messages_out() {
    let mut t = table(QueueMode::Exclusive, 2);
    deliver(&mut t, 1, Some(0), 0..2, 100, T);
    t.set_queues([k(0)], 200);
    assert!(t.get(&k(1)).is_some(), "kept for its ack");
    t.release(&k(1), t.get(&k(1)).unwrap().current().unwrap());
    t.set_queues([k(0)], 300);
    assert!(t.get(&k(1)).is_none());
}

#[test]
fn an_offset_reset_forgets_what_is_in_flight() {
    let mut t = table(QueueMode::Exclusive, 1);
    let (c, _) = deliver(&mut t, 0, Some(0), 0..3, 1000, T);
    t.drop_leases();
    assert_eq!(
        t.ack_batch(&k(0), &token(0, 3, c.id)),
        AckOutcome::LockNotExist
    );
    assert_eq!(t.candidates(1001, 0), vec![k(0)]);
}

// ---- per-message receipts ----------------------------------------------------------------

#[test]
fn partial_acks_move_the_committed_offset_to_the_lowest_unacked() {
    let mut t = table(QueueMode::Shared, 1);
    let (_, out) = deliver(&mut t, 0, Some(100), 100..105, 1000, T);
    let r: Vec<Receipt> = out.handed.iter().map(|h| h.receipt.clone()).collect();
    // acking 101 and 103 cannot move the offset: 100 is still out
    assert_eq!(t.ack(&r[1], 1001), ReceiptOutcome::Acked);
    assert_eq!(t.ack(&r[3], 1001), ReceiptOutcome::Acked);
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(100));
    // acking 100 commits up to 102, the lowest unacked
    let c = Commit { from: 100, to: 102 };
    assert_eq!(t.ack(&r[0], 1002), ReceiptOutcome::Commit(c));
    // an ack while that commit is written is folded into the next one
    assert_eq!(t.ack(&r[2], 1003), ReceiptOutcome::Acked);
    assert_eq!(
        t.finish_commit(&k(0), 102, true),
        Some(Commit { from: 102, to: 104 })
    );
    assert_eq!(t.finish_commit(&k(0), 104, true), None);
    assert_eq!(
        t.ack(&r[4], 1004),
        ReceiptOutcome::Commit(Commit { from: 104, to: 105 })
    );
    t.finish_commit(&k(0), 105, true);
    let s = t.get(&k(0)).unwrap();
    assert_eq!(s.committed, Some(105));
    assert!(s.in_flight.is_empty() && s.deliveries.is_empty());
    // acking twice does nothing
    assert_eq!(t.ack(&r[4], 1005), ReceiptOutcome::Unknown);
}

#[test]
fn a_passed_deadline_hands_the_message_out_again_under_a_new_receipt() {
    let mut t = table(QueueMode::Shared, 1);
    let (_, first) = deliver(&mut t, 0, Some(0), 0..3, 1000, 10_000);
    let old = first.handed[1].receipt.clone();
    assert_eq!(
        t.ack(&first.handed[0].receipt, 2000),
        ReceiptOutcome::Commit(Commit { from: 0, to: 1 })
    );
    t.finish_commit(&k(0), 1, true);
    assert_eq!(t.ack(&first.handed[2].receipt, 2000), ReceiptOutcome::Acked);
    // offset 1's deadline passes: its receipt no longer acks, and the next pull, from the
    // lowest visible message, hands out offset 1 only (2 is acked)
    assert_eq!(t.ack(&old, 11_000), ReceiptOutcome::Expired);
    let c = t.begin(&k(0), 11_000, 10_000, None).unwrap();
    assert_eq!(c.from, 1);
    assert!(!c.needs_offset, "the engine knows the cursor");
    let again = t.record_pull(&k(0), c.id, &[1, 2, 3], 4, 4, 11_000, None);
    let offsets: Vec<(i64, u32)> = again
        .handed
        .iter()
        .map(|h| (h.receipt.offset, h.count))
        .collect();
    assert_eq!(offsets, vec![(1, 2), (3, 1)]);
    let new = again.handed[0].receipt.clone();
    assert_ne!(new, old);
    // the receipt of the earlier delivery can never ack the later one
    assert_eq!(
        t.ack(&old, 11_001),
        ReceiptOutcome::Stale {
            current: new.delivery
        }
    );
    assert_eq!(
        t.ack(&new, 11_001),
        ReceiptOutcome::Commit(Commit { from: 1, to: 3 })
    );
}

#[test]
fn foreign_receipts_ack_nothing() {
    let mut t = table(QueueMode::Shared, 2);
    let (_, out) = deliver(&mut t, 0, Some(0), 0..2, 1000, T);
    let r = &out.handed[0].receipt;
    let other_queue = Receipt {
        queue: k(1),
        ..r.clone()
    };
    assert_eq!(t.ack(&other_queue, 1001), ReceiptOutcome::Unknown);
    let unknown_queue = Receipt {
        queue: k(9),
        ..r.clone()
    };
    assert_eq!(t.ack(&unknown_queue, 1001), ReceiptOutcome::Unknown);
    let never_handed = Receipt {
        offset: 7,
        ..r.clone()
    };
    assert_eq!(t.ack(&never_handed, 1001), ReceiptOutcome::Unknown);
    let forged = Receipt {
        delivery: r.delivery + 1,
        ..r.clone()
    };
    assert_eq!(
        t.ack(&forged, 1001),
        ReceiptOutcome::Stale {
            current: r.delivery
        }
    );
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(0));
}

#[test]
fn shared_queues_hand_out_more_while_messages_are_out() {
    let mut t = table(QueueMode::Shared, 1);
    let (_, a) = deliver(&mut t, 0, Some(0), 0..2, 1000, T);
    // the second fetch gets the next messages, not the same ones
    let c = t.begin(&k(0), 1001, T, None).unwrap();
    assert_eq!(c.from, 2);
    let b = t.record_pull(&k(0), c.id, &[2, 3], 4, 4, 1001, None);
    assert_eq!(b.handed.len(), 2);
    assert_ne!(a.handed[0].receipt.delivery, b.handed[0].receipt.delivery);
    // a pull that comes back with messages still invisible skips them
    let c = t.begin(&k(0), 1002, T, None).unwrap();
    let none = t.record_pull(&k(0), c.id, &[0, 1, 2, 3], 4, 4, 1002, None);
    assert!(!none.found());
    assert!(t.release(&k(0), c.id));
}

#[test]
fn ordered_queues_hand_out_nothing_new_until_all_is_acked() {
    let mut t = table(QueueMode::Exclusive, 1);
    let (_, out) = deliver(&mut t, 0, Some(0), 0..3, 1000, T);
    for (i, h) in out.handed.iter().enumerate() {
        assert!(t.candidates(1001, 0).is_empty(), "after {i} acks");
        let o = t.ack(&h.receipt, 1001);
        if let ReceiptOutcome::Commit(c) = o {
            t.finish_commit(&k(0), c.to, true);
        }
    }
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(3));
    assert_eq!(t.candidates(1002, 0), vec![k(0)]);
}

#[test]
fn too_many_deliveries_are_handed_to_the_dead_letter_hook() {
    let mut t = table(QueueMode::Shared, 1);
    let mut now = 1000;
    let mut counts = Vec::new();
    let exhausted = loop {
        let c = t.begin(&k(0), now, 100, None).unwrap();
        if c.needs_offset {
            t.rebase(&k(0), c.id, 0);
        }
        let out = t.record_pull(&k(0), c.id, &[0], 1, 1, now, Some(3));
        if !out.exhausted.is_empty() {
            break out.exhausted;
        }
        counts.push(out.handed[0].count);
        now += 100;
    };
    assert_eq!(counts, vec![1, 2, 3]);
    assert_eq!(exhausted[0].count, 4);
    // the driver sent it to the dead-letter queue: its ack commits past it
    assert_eq!(
        t.ack(&exhausted[0].receipt, now),
        ReceiptOutcome::Commit(Commit { from: 0, to: 1 })
    );
}

#[test]
fn change_deadline_replaces_the_receipt() {
    let mut t = table(QueueMode::Shared, 1);
    let (_, out) = deliver(&mut t, 0, Some(0), 0..1, 1000, 1000);
    let r = out.handed[0].receipt.clone();
    let r2 = t.change_deadline(&r, 1500, 60_000).unwrap();
    assert_ne!(r, r2);
    assert!(matches!(t.ack(&r, 2500), ReceiptOutcome::Stale { .. }));
    assert!(t.candidates(2500, 0).contains(&k(0)));
    let c = t.begin(&k(0), 2500, 1000, None).unwrap();
    assert!(!t.record_pull(&k(0), c.id, &[0], 1, 1, 2500, None).found());
    t.release(&k(0), c.id);
    assert_eq!(
        t.ack(&r2, 2500),
        ReceiptOutcome::Commit(Commit { from: 0, to: 1 })
    );
}

#[test]
fn a_failed_commit_undoes_the_acks() {
    let mut t = table(QueueMode::Shared, 1);
    let (_, out) = deliver(&mut t, 0, Some(0), 0..2, 1000, 5000);
    let ReceiptOutcome::Commit(c) = t.ack(&out.handed[0].receipt, 1001) else {
        panic!("commit expected")
    };
    assert_eq!(t.finish_commit(&k(0), c.to, false), None);
    assert_eq!(t.get(&k(0)).unwrap().committed, Some(0));
    // handed out again after the deadline
    let c = t.begin(&k(0), 6000, 5000, None).unwrap();
    let again = t.record_pull(&k(0), c.id, &[0, 1], 2, 2, 6000, None);
    assert_eq!(again.handed.len(), 2);
}

// ---- broker locks and settings -----------------------------------------------------------

#[test]
fn broker_locks_renew_release_idle_and_block_while_releasing() {
    let mut l = BrokerLocks::default();
    assert_eq!(l.check(&k(0), 0), LockCheck::Ask);
    l.granted(&k(0), true, 0);
    l.granted(&k(1), true, 0);
    assert_eq!(l.check(&k(0), 29_999), LockCheck::Trusted);
    assert_eq!(
        l.check(&k(0), 30_000),
        LockCheck::Ask,
        "not renewed: not trusted"
    );
    // k(0) is in use, k(1) idle since 1000
    assert_eq!(l.plan(1000, &[k(0)]), LockPlan::default());
    assert_eq!(l.plan(3999, &[k(0)]), LockPlan::default());
    let p = l.plan(4000, &[k(0)]);
    assert_eq!(p.release, vec![k(1)]);
    assert_eq!(l.check(&k(1), 4000), LockCheck::Releasing);
    l.unlocked(&p.release);
    assert_eq!(l.check(&k(1), 4001), LockCheck::Ask);
    let p = l.plan(20_000, &[k(0)]);
    assert_eq!(p.renew, vec![k(0)]);
    l.renewed(&k(0), true, 20_000);
    assert_eq!(l.check(&k(0), 49_999), LockCheck::Trusted);
    l.renewed(&k(0), false, 40_000);
    assert_eq!(
        l.check(&k(0), 40_001),
        LockCheck::Ask,
        "lost to another instance"
    );
    l.granted(&k(2), false, 0);
    assert!(l.drain().is_empty());
}

#[test]
fn pause_and_rate_limit_admission() {
    let mut s = ScopeState::new(QueueMode::Exclusive, ScopeSettings::new(32, 300_000));
    s.settings.resend.push_back("ID1".into());
    s.settings.paused = true;
    assert_eq!(s.admit(0), Admission::Paused);
    s.settings.paused = false;
    assert_eq!(
        s.admit(0),
        Admission::Go {
            resend: Some("ID1".into())
        },
        "a resend queued while paused is kept"
    );
    s.settings.rate = Some(RateLimiter::new(2.0, 0));
    assert_eq!(s.admit(0), Admission::Go { resend: None });
    s.took(10);
    assert_eq!(s.admit(0), Admission::RateLimited);
    assert_eq!(s.admit(4000), Admission::RateLimited);
    assert_eq!(s.admit(6000), Admission::Go { resend: None });
}
