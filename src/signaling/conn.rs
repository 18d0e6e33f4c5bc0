//! Stream connections as the loop keeps them: socket, layer, buffers and the flags of operations in flight.
//!
//! Every pointer handed to the kernel points into heap memory owned by the connection (read buffer, the
//! in-flight write vector, the boxed connect address), so the slab may move `Conn` values freely; a slot is only
//! freed once no operation on it is in flight.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use super::handler::{ConnId, Transport};
use super::stream::{StreamBuf, StreamLayer};
use super::timer::TimerToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    Connecting,
    Open,
    Closing,
}

pub(crate) struct Conn {
    pub(crate) fd: OwnedFd,
    pub(crate) peer: SocketAddr,
    pub(crate) transport: Transport,
    /// Opened by us; its key is in the reuse map.
    pub(crate) outbound: bool,
    pub(crate) state: ConnState,
    pub(crate) layer: Box<dyn StreamLayer>,
    pub(crate) rx_wire: Box<[u8]>,
    pub(crate) app_in: StreamBuf,
    /// Wire bytes the kernel is sending now (stable until the write completes).
    pub(crate) tx_inflight: Vec<u8>,
    pub(crate) tx_off: usize,
    /// Wire bytes queued behind the in-flight write.
    pub(crate) tx_pending: Vec<u8>,
    pub(crate) reading: bool,
    pub(crate) writing: bool,
    pub(crate) connecting: bool,
    pub(crate) last_activity_ms: u64,
    /// When the first byte of a message not yet complete arrived (`None`: nothing half-read).
    pub(crate) partial_since_ms: Option<u64>,
    pub(crate) idle_timer: Option<TimerToken>,
    /// Counted in the per-source limit (accepted connections).
    pub(crate) counted_source: bool,
    pub(crate) connect_addr: Box<libc::sockaddr_storage>,
    pub(crate) connect_len: libc::socklen_t,
}

impl Conn {
    pub(crate) fn unsent(&self) -> usize {
        self.tx_pending.len() + self.tx_inflight.len().saturating_sub(self.tx_off)
    }

    pub(crate) fn idle_ops(&self) -> bool {
        !self.reading && !self.writing && !self.connecting
    }
}

pub(crate) struct ConnSlot {
    pub(crate) generation: u32,
    pub(crate) conn: Option<Conn>,
}

/// Slab of connections addressed by [`ConnId`].
#[derive(Default)]
pub(crate) struct ConnTable {
    slots: Vec<ConnSlot>,
    free: Vec<u32>,
    /// Connections not yet freed (open, connecting or closing).
    pub(crate) live: usize,
}

impl ConnTable {
    pub(crate) fn insert(&mut self, conn: Conn) -> ConnId {
        self.live += 1;
        if let Some(index) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.conn = Some(conn);
            return ConnId {
                index,
                generation: slot.generation,
            };
        }
        self.slots.push(ConnSlot {
            generation: 0,
            conn: Some(conn),
        });
        ConnId {
            index: (self.slots.len() - 1) as u32,
            generation: 0,
        }
    }

    /// The connection at `index` whatever its generation (for completions, which carry only the index).
    pub(crate) fn by_index(&mut self, index: u32) -> Option<(ConnId, &mut Conn)> {
        let slot = self.slots.get_mut(index as usize)?;
        let id = ConnId {
            index,
            generation: slot.generation,
        };
        slot.conn.as_mut().map(|c| (id, c))
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.conn.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.conn.as_mut()
    }

    /// Frees the slot (closing the socket) if the connection is closing and nothing is in flight.
    pub(crate) fn free_if_done(&mut self, index: u32) {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return;
        };
        let done = matches!(&slot.conn, Some(c) if c.state == ConnState::Closing && c.idle_ops());
        if done {
            slot.conn = None;
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(index);
            self.live -= 1;
        }
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.conn.as_ref().map(|_| ConnId {
                index: i as u32,
                generation: s.generation,
            })
        })
    }
}
