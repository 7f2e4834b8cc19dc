//! Concurrency slots without a queue: a slot is taken now or refused now (→ 429). The limit can
//! change while slots are held (provisioned concurrency moving slots between the shared pool
//! and a function's reserve); slots held past a lowered limit simply drain. A take may hold
//! several slots at once (the memory budget counts mebibytes).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) struct Slots {
    in_use: AtomicUsize,
    limit: AtomicUsize,
}

/// Taken slots, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    n: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.in_use.fetch_sub(self.n, Ordering::AcqRel);
    }
}

impl Slots {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            in_use: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        })
    }

    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.try_take_many(1)
    }

    /// Takes `n` slots at once, or none.
    pub(crate) fn try_take_many(self: &Arc<Self>, n: usize) -> Option<Slot> {
        self.take(n, self.limit.load(Ordering::Acquire))
    }

    /// Takes one slot if fewer than `limit` are in use: for a count whose limit is derived
    /// from elsewhere when it is taken (a function's share of the server's slots).
    pub(crate) fn try_take_under(self: &Arc<Self>, limit: usize) -> Option<Slot> {
        self.take(1, limit)
    }

    fn take(self: &Arc<Self>, n: usize, limit: usize) -> Option<Slot> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&after| after <= limit)
            })
            .ok()
            .map(|_| Slot {
                slots: self.clone(),
                n,
            })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
    }

    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_refused_past_the_limit_and_come_back() {
        let slots = Slots::new(2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        let c = slots.try_take().unwrap();
        // Lowering the limit below what is held refuses new slots until enough return.
        slots.set_limit(1);
        drop(b);
        assert!(slots.try_take().is_none());
        drop(c);
        assert!(slots.try_take().is_some());
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn many_slots_are_taken_together_or_not_at_all() {
        let budget = Slots::new(1024);
        let a = budget.try_take_many(512).unwrap();
        let b = budget.try_take_many(384).unwrap();
        assert!(budget.try_take_many(256).is_none());
        assert_eq!(budget.in_use(), 896);
        assert!(budget.try_take_many(usize::MAX).is_none());
        drop(a);
        let _c = budget.try_take_many(512).unwrap();
        drop(b);
        assert_eq!(budget.in_use(), 512);
    }

    #[test]
    fn a_slot_is_taken_under_a_limit_given_at_the_time() {
        let held = Slots::new(usize::MAX);
        let a = held.try_take_under(2).unwrap();
        let _b = held.try_take_under(2).unwrap();
        assert!(held.try_take_under(2).is_none());
        assert!(held.try_take_under(3).is_some());
        drop(a);
        assert!(held.try_take_under(2).is_some());
    }
}
