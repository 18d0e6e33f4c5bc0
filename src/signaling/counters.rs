//! The loop's counters: plain fields on the loop thread, copied to atomics once per iteration for readers.

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Counters of the signaling loop. Plain integers: only the loop writes them.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        pub(crate) const COUNTER_FIELDS: usize = [$(stringify!($name)),*].len();

        impl Counters {
            pub(crate) fn as_array(&self) -> [u64; COUNTER_FIELDS] {
                [$(self.$name),*]
            }

            pub(crate) fn from_array(a: [u64; COUNTER_FIELDS]) -> Self {
                let [$($name),*] = a;
                Self { $($name),* }
            }

            /// `(name, value)` pairs, e.g. for Prometheus text.
            pub fn fields(&self) -> [(&'static str, u64); COUNTER_FIELDS] {
                [$((stringify!($name), self.$name)),*]
            }
        }
    };
}

counters! {
    /// UDP datagrams handed to the handler.
    udp_datagrams_in,
    /// UDP datagrams the kernel accepted for sending.
    udp_datagrams_out,
    udp_bytes_in,
    udp_bytes_out,
    /// Failed or malformed receive completions (including truncated datagrams, which are dropped).
    udp_recv_errors,
    /// Multishot receive stopped because every provided buffer was in use (re-armed at once).
    udp_no_buffers,
    udp_send_errors,
    tcp_bytes_in,
    tcp_bytes_out,
    /// Writes the kernel completed only in part (the rest was resubmitted).
    tcp_partial_writes,
    /// Connections currently open (gauge).
    tcp_open,
    tcp_accepted,
    /// Outbound connections established.
    tcp_connected,
    tcp_connect_failed,
    /// Accepted connections closed at once: max connections or per-source limit.
    tcp_refused,
    tcp_idle_closed,
    /// Closed because a message (or TLS handshake) did not complete within `tcp_message_timeout`.
    tcp_message_timeout_closed,
    tcp_peer_closed,
    /// Closed because unconsumed or unsent bytes passed the per-connection limit.
    tcp_overflow_closed,
    tcp_errors,
    timers_fired,
    dns_queries,
    dns_completions,
    /// Loop iterations (each is one io_uring enter).
    loop_iterations,
}
