//! What a runtime counts.

/// Counters of one thread's runtime. Every dropped datagram lands in one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams that did not decode.
    pub malformed: u64,
    /// Datagrams whose signature or MAC failed.
    pub bad_auth: u64,
    /// Datagrams for an actor not on this host.
    pub not_for_us: u64,
    /// Messages to an address the directory does not know.
    pub unknown_destination: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
    /// Client requests resent after a timeout.
    pub resends: u64,
    /// Client addresses not learned because the table was full.
    pub clients_table_full: u64,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Counters) {
        self.received += other.received;
        self.sent += other.sent;
        self.malformed += other.malformed;
        self.bad_auth += other.bad_auth;
        self.not_for_us += other.not_for_us;
        self.unknown_destination += other.unknown_destination;
        self.send_errors += other.send_errors;
        self.resends += other.resends;
        self.clients_table_full += other.clients_table_full;
    }

    /// Named values, for reports.
    pub fn named(&self) -> Vec<(String, u64)> {
        [
            ("received", self.received),
            ("sent", self.sent),
            ("malformed", self.malformed),
            ("bad_auth", self.bad_auth),
            ("not_for_us", self.not_for_us),
            ("unknown_destination", self.unknown_destination),
            ("send_errors", self.send_errors),
            ("resends", self.resends),
            ("clients_table_full", self.clients_table_full),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Counts one decode failure by its kind.
    pub fn count_wire_error(&mut self, e: &crate::actor::WireError) {
        use crate::actor::WireError::*;
        match e {
            Malformed(_) => self.malformed += 1,
            BadAuth => self.bad_auth += 1,
            NotForUs => self.not_for_us += 1,
        }
    }
}

/// CPU time this process has used (user + system), for reports.
pub fn process_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // CLOCK_PROCESS_CPUTIME_ID cannot fail on Linux; on failure report 0.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
