//! The priority of the durability threads (journal writer, snapshot replica).
//!
//! Routing decisions run on the HTTP workers and the actors' arbiter; the
//! journal and the snapshot replica do work that can wait a little. On a
//! busy machine a positive nice value lets the routing threads go first.
//! Offers are never held for the journal, acks are: on 2 cores at half the
//! knee, nice 10 moved about 1 ms of p99 from open→offer to the acks
//! (docs/performance.md). It must never raise a priority (that needs
//! privileges) and never fail a start: a refused change is logged.

/// Sets the calling thread's nice value (Linux; elsewhere it does nothing).
pub fn set_this_thread_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` and `setpriority` take and return plain integers
        // and touch no memory of ours. Under Linux/NPTL the nice value is per
        // thread, and `PRIO_PROCESS` with a thread id changes that thread only.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(nice, %error, "could not lower the thread's priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        // Field 19 is the nice value; the command name (field 2) may hold spaces.
        let after = &stat[stat.rfind(')').expect("comm end") + 2..];
        after
            .split(' ')
            .nth(16)
            .expect("nice")
            .parse()
            .expect("number")
    }

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = own_nice();
        let target = (before + 3).min(19);
        let inside = std::thread::spawn(move || {
            set_this_thread_nice(target);
            own_nice()
        })
        .join()
        .expect("thread");
        assert_eq!(inside, target);
        assert_eq!(own_nice(), before, "other threads keep theirs");
    }
}
