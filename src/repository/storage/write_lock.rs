//! write_lock: SQLite has one writer at a time, and a connection that finds the write lock
//! taken sleeps in the busy handler (1 to 25 ms a try) however soon it is released. Carnet's
//! writers therefore take turns here first, in the order they arrive (a ticket lock): the
//! database's lock is then free whenever one of them asks for it, and nobody sleeps. A
//! thread already holding its turn (a nested transaction) does not queue again.

use std::cell::Cell;
use std::sync::{Condvar, Mutex};

struct Tickets {
    next: u64,
    serving: u64,
}

static TICKETS: Mutex<Tickets> = Mutex::new(Tickets {
    next: 0,
    serving: 0,
});
static TURN: Condvar = Condvar::new();

thread_local! {
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// A writer's turn, given back when dropped.
pub struct Turn {
    outer: bool,
}

/// Waits for this thread's turn to write (at once if it already has it).
pub fn turn() -> Turn {
    if HELD.with(|h| h.get()) > 0 {
        HELD.with(|h| h.set(h.get() + 1));
        return Turn { outer: false };
    }
    let mut t = TICKETS.lock().unwrap_or_else(|e| e.into_inner());
    let mine = t.next;
    t.next += 1;
    while t.serving != mine {
        t = TURN.wait(t).unwrap_or_else(|e| e.into_inner());
    }
    drop(t);
    HELD.with(|h| h.set(1));
    Turn { outer: true }
}

/// Whether this thread holds a turn (then it must not wait for another writer).
pub fn held() -> bool {
    HELD.with(|h| h.get()) > 0
}

impl Drop for Turn {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get().saturating_sub(1)));
        if self.outer {
            let mut t = TICKETS.lock().unwrap_or_else(|e| e.into_inner());
            t.serving += 1;
            drop(t);
            TURN.notify_all();
        }
    }
}
