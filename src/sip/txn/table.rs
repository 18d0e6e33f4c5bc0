//! The transaction table: creates transactions, matches messages to them, and fires their timers.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use bytes::Bytes;

use super::client_invite::ClientInvite;
use super::client_non_invite::ClientNonInvite;
use super::key::{self, ClientRequest, RequestInfo, ResponseInfo};
use super::server_invite::ServerInvite;
use super::server_non_invite::ServerNonInvite;
use super::timers::{SLOTS, TimerConfig, Timers};
use super::{Action, Cx, Dest, MethodClass, TuMsg, TxnError, TxnId, TxnKind, TxnState};

/// Counters, monotonically increasing over the table's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxnStats {
    pub client_created: u64,
    pub server_created: u64,
    pub terminated: u64,
    /// Timeout actions emitted (B, F, H, CancelGuard).
    pub timed_out: u64,
    pub transport_errors: u64,
    /// Copies sent after the first: timer-driven, answers to retransmitted requests, resent ACKs, TU 2xx resends.
    pub retransmissions: u64,
    /// Responses that matched no client transaction.
    pub stray_responses: u64,
    /// ACKs that matched no server transaction (normally the ACK for a 2xx: the TU's business).
    pub unmatched_acks: u64,
}

/// How [`TxnTable::on_request`] classified a request. Details (what to pass up, what to send) are in the actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestMatch {
    /// A new server transaction; the request was passed to the TU (`Action::PassToTu`).
    New(TxnId),
    /// Matched an existing server transaction (a retransmission or an ACK), which handled it. An ACK matching an
    /// INVITE transaction in the Accepted state was also passed to the TU (`Action::PassToTu` with `TuMsg::Ack`).
    Existing(TxnId),
    /// An ACK that matched no transaction: the ACK for a 2xx, for the TU/dialog layer (RFC 3261 17.2.3).
    UnmatchedAck,
    /// RFC 2543 fallback only: same key as an existing transaction but a different To tag; no transaction was
    /// created (the caller may answer 482 Loop Detected statelessly or drop it).
    Conflict,
}

/// How [`TxnTable::on_response`] classified a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMatch {
    /// Handled by this client transaction (see the actions for whether it reached the TU).
    Matched(TxnId),
    /// No client transaction: a stray response (RFC 3261 18.1.2), e.g. a 2xx retransmission after Timer M.
    Unmatched,
}

#[derive(Debug)]
enum Machine {
    InviteClient(ClientInvite),
    NonInviteClient(ClientNonInvite),
    InviteServer(ServerInvite),
    NonInviteServer(ServerNonInvite),
}

impl Machine {
    fn is_terminated(&self) -> bool {
        match self {
            Machine::InviteClient(m) => m.is_terminated(),
            Machine::NonInviteClient(m) => m.is_terminated(),
            Machine::InviteServer(m) => m.is_terminated(),
            Machine::NonInviteServer(m) => m.is_terminated(),
        }
    }

    fn state(&self) -> TxnState {
        match self {
            Machine::InviteClient(m) => m.state(),
            Machine::NonInviteClient(m) => m.state(),
            Machine::InviteServer(m) => m.state(),
            Machine::NonInviteServer(m) => m.state(),
        }
    }

    fn kind(&self) -> TxnKind {
        match self {
            Machine::InviteClient(_) => TxnKind::ClientInvite,
            Machine::NonInviteClient(_) => TxnKind::ClientNonInvite,
            Machine::InviteServer(_) => TxnKind::ServerInvite,
            Machine::NonInviteServer(_) => TxnKind::ServerNonInvite,
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, timer: super::TimerName) {
        match self {
            Machine::InviteClient(m) => m.on_timer(cx, timer),
            Machine::NonInviteClient(m) => m.on_timer(cx, timer),
            Machine::InviteServer(m) => m.on_timer(cx, timer),
            Machine::NonInviteServer(m) => m.on_timer(cx, timer),
        }
    }

    fn on_transport_error(&mut self, cx: &mut Cx<'_>) {
        match self {
            Machine::InviteClient(m) => m.on_transport_error(cx),
            Machine::NonInviteClient(m) => m.on_transport_error(cx),
            Machine::InviteServer(m) => m.on_transport_error(cx),
            Machine::NonInviteServer(m) => m.on_transport_error(cx),
        }
    }
}

#[derive(Debug)]
struct Txn {
    /// The key this transaction is indexed under (removed from the index on termination).
    key: Box<[u8]>,
    dest: Dest,
    timers: Timers,
    machine: Machine,
    /// RFC 2543 server transactions: To tag of the creating request and of the last response sent, compared
    /// after the key lookup (requests and ACKs respectively).
    legacy_tags: Option<Box<LegacyTags>>,
}

#[derive(Debug, Default)]
struct LegacyTags {
    request: Box<[u8]>,
    response: Box<[u8]>,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    txn: Option<Txn>,
}

/// (deadline, slab index, generation, timer slot); entries are checked against the transaction on pop, so
/// cancelled or re-armed timers are deleted lazily.
type HeapEntry = Reverse<(Instant, u32, u32, u8)>;

/// All transactions of one signaling thread.
#[derive(Debug)]
pub struct TxnTable {
    cfg: TimerConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    index: HashMap<Box<[u8]>, TxnId>,
    heap: BinaryHeap<HeapEntry>,
    scratch: Vec<u8>,
    stats: TxnStats,
}

impl Default for TxnTable {
    fn default() -> Self {
        Self::new(TimerConfig::default())
    }
}

impl TxnTable {
    pub fn new(cfg: TimerConfig) -> Self {
        TxnTable {
            cfg: cfg.sanitized(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            index: HashMap::new(),
            heap: BinaryHeap::new(),
            scratch: Vec::with_capacity(256),
            stats: TxnStats::default(),
        }
    }

    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    pub fn stats(&self) -> TxnStats {
        self.stats
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn state(&self, id: TxnId) -> Option<TxnState> {
        self.get(id).map(|t| t.machine.state())
    }

    pub fn kind(&self, id: TxnId) -> Option<TxnKind> {
        self.get(id).map(|t| t.machine.kind())
    }

    /// Start a client transaction: sends the request and arms its timers. Starting a CANCEL whose branch matches
    /// a live INVITE client transaction also arms that INVITE's CANCEL guard (64*T1, RFC 3261 9.1).
    pub fn start_client(
        &mut self,
        now: Instant,
        req: ClientRequest<'_>,
        out: &mut Vec<Action>,
    ) -> Result<TxnId, TxnError> {
        let class = MethodClass::of(req.method);
        if class == MethodClass::Ack {
            return Err(TxnError::InvalidMethod);
        }
        key::client_key(&mut self.scratch, req.method, req.branch);
        if self.index.contains_key(&self.scratch[..]) {
            return Err(TxnError::Duplicate);
        }
        let key: Box<[u8]> = self.scratch.as_slice().into();
        let id = self.insert(
            key,
            req.dest,
            None,
            |cx| match class {
                MethodClass::Invite => Machine::InviteClient(ClientInvite::start(cx, req.bytes)),
                _ => Machine::NonInviteClient(ClientNonInvite::start(cx, req.bytes)),
            },
            now,
            out,
        );
        self.stats.client_created += 1;
        if class == MethodClass::Cancel {
            key::client_key(&mut self.scratch, b"INVITE", req.branch);
            if let Some(&invite) = self.index.get(&self.scratch[..]) {
                self.run(invite, now, out, |m, cx| {
                    if let Machine::InviteClient(m) = m {
                        m.cancel_sent(cx);
                    }
                });
            }
        }
        Ok(id)
    }

    /// A response arrived. Matches it to a client transaction by branch + CSeq method (RFC 3261 17.1.3).
    pub fn on_response(
        &mut self,
        now: Instant,
        info: &ResponseInfo<'_>,
        bytes: &Bytes,
        out: &mut Vec<Action>,
    ) -> ResponseMatch {
        key::client_key(&mut self.scratch, info.cseq_method, info.branch);
        let Some(&id) = self.index.get(&self.scratch[..]) else {
            self.stats.stray_responses += 1;
            return ResponseMatch::Unmatched;
        };
        let status = info.status;
        self.run(id, now, out, |m, cx| match m {
            Machine::InviteClient(m) => m.on_response(cx, status, bytes),
            Machine::NonInviteClient(m) => m.on_response(cx, status, bytes),
            _ => {}
        });
        ResponseMatch::Matched(id)
    }

    /// A request arrived from `source` (where responses go, RFC 3261 18.2.2). Matches it to a server
    /// transaction (RFC 3261 17.2.3, RFC 2543 fallback when the branch lacks the magic cookie) or creates one.
    pub fn on_request(
        &mut self,
        now: Instant,
        info: &RequestInfo<'_>,
        bytes: &Bytes,
        source: Dest,
        out: &mut Vec<Action>,
    ) -> RequestMatch {
        let class = MethodClass::of(info.method);
        let is_ack = class == MethodClass::Ack;
        key::server_key(&mut self.scratch, info, key::match_method(info.method));
        if let Some(&id) = self.index.get(&self.scratch[..]) {
            if let Some(tags) = self.get(id).and_then(|t| t.legacy_tags.as_deref()) {
                let expected = if is_ack {
                    &tags.response
                } else {
                    &tags.request
                };
                if **expected != *info.to_tag {
                    if is_ack {
                        self.stats.unmatched_acks += 1;
                        return RequestMatch::UnmatchedAck;
                    }
                    return RequestMatch::Conflict;
                }
            }
            self.run(id, now, out, |m, cx| match m {
                Machine::InviteServer(m) => m.on_request(cx, is_ack, bytes),
                Machine::NonInviteServer(m) => m.on_request(cx),
                _ => {}
            });
            return RequestMatch::Existing(id);
        }
        if is_ack {
            self.stats.unmatched_acks += 1;
            return RequestMatch::UnmatchedAck;
        }
        let legacy_tags = (!key::is_rfc3261(info.branch)).then(|| {
            Box::new(LegacyTags {
                request: info.to_tag.into(),
                response: Box::default(),
            })
        });
        let key: Box<[u8]> = self.scratch.as_slice().into();
        let id = self.insert(
            key,
            source,
            legacy_tags,
            |cx| {
                cx.pass(TuMsg::Request, bytes);
                match class {
                    MethodClass::Invite => {
                        Machine::InviteServer(ServerInvite::start(cx, bytes.clone()))
                    }
                    _ => Machine::NonInviteServer(ServerNonInvite::start()),
                }
            },
            now,
            out,
        );
        self.stats.server_created += 1;
        RequestMatch::New(id)
    }

    /// The INVITE server transaction a received CANCEL targets (RFC 3261 9.2: same matching as 17.2.3 with the
    /// method taken as INVITE; the To tag is not compared).
    pub fn find_cancel_target(&mut self, cancel: &RequestInfo<'_>) -> Option<TxnId> {
        key::server_key(&mut self.scratch, cancel, b"INVITE");
        let id = *self.index.get(&self.scratch[..])?;
        (self.kind(id) == Some(TxnKind::ServerInvite)).then_some(id)
    }

    /// The TU sends a response through server transaction `id`. `to_tag` is the To tag of that response; it is
    /// only kept for transactions matched the RFC 2543 way (to recognise their ACK) and may be empty otherwise.
    pub fn send_response(
        &mut self,
        now: Instant,
        id: TxnId,
        status: u16,
        bytes: Bytes,
        to_tag: &[u8],
        out: &mut Vec<Action>,
    ) -> Result<(), TxnError> {
        // Remember the tag before running: a reliable-transport machine may terminate inside the call.
        let previous = match self.get_mut(id).and_then(|t| t.legacy_tags.as_deref_mut()) {
            Some(tags) if *tags.response != *to_tag => {
                Some(std::mem::replace(&mut tags.response, to_tag.into()))
            }
            _ => None,
        };
        let r = self
            .run(id, now, out, |m, cx| match m {
                Machine::InviteServer(m) => m.send_response(cx, status, bytes),
                Machine::NonInviteServer(m) => m.send_response(cx, status, bytes),
                _ => Err(TxnError::WrongKind),
            })
            .unwrap_or(Err(TxnError::NotFound));
        if r.is_err()
            && let Some(old) = previous
            && let Some(tags) = self.get_mut(id).and_then(|t| t.legacy_tags.as_deref_mut())
        {
            tags.response = old;
        }
        r
    }

    /// The ACK the caller built after [`Action::NeedAck`]: sent now and resent for every retransmitted final.
    pub fn provide_ack(
        &mut self,
        now: Instant,
        id: TxnId,
        ack: Bytes,
        out: &mut Vec<Action>,
    ) -> Result<(), TxnError> {
        self.run(id, now, out, |m, cx| match m {
            Machine::InviteClient(m) => m.provide_ack(cx, ack),
            _ => Err(TxnError::WrongKind),
        })
        .unwrap_or(Err(TxnError::NotFound))
    }

    /// The transport failed to send a message of transaction `id` (ICMP unreachable, TCP reset, TLS failure).
    pub fn transport_error(
        &mut self,
        now: Instant,
        id: TxnId,
        out: &mut Vec<Action>,
    ) -> Result<(), TxnError> {
        self.run(id, now, out, |m, cx| m.on_transport_error(cx))
            .ok_or(TxnError::NotFound)
    }

    /// Earliest pending timer, after dropping cancelled entries from the top of the heap.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, idx, generation, slot))) = self.heap.peek() {
            if self.is_live_timer(at, idx, generation, slot) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Fire every timer due at or before `now`. Returns how many fired.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Action>) -> usize {
        let mut fired = 0;
        while let Some(&Reverse((at, idx, generation, slot))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let id = TxnId { idx, generation };
            let Some(name) = self
                .get_mut(id)
                .and_then(|t| t.timers.take_if(usize::from(slot), at))
            else {
                continue;
            };
            fired += 1;
            self.run(id, now, out, |m, cx| m.on_timer(cx, name));
        }
        self.compact_heap();
        fired
    }

    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }

    fn is_live_timer(&self, at: Instant, idx: u32, generation: u32, slot: u8) -> bool {
        self.get(TxnId { idx, generation })
            .and_then(|t| t.timers.slots.get(usize::from(slot)).copied().flatten())
            .is_some_and(|(deadline, _)| deadline == at)
    }

    /// Stale entries normally leave the heap when their (bounded, <= 64*T1 away) deadline passes; rebuild only
    /// if they ever dominate, so the heap stays proportional to the live timers.
    fn compact_heap(&mut self) {
        if self.heap.len() > 64 + 4 * SLOTS * self.live {
            let mut heap = std::mem::take(&mut self.heap);
            heap.retain(|&Reverse((at, idx, generation, slot))| {
                self.is_live_timer(at, idx, generation, slot)
            });
            self.heap = heap;
        }
    }

    fn get(&self, id: TxnId) -> Option<&Txn> {
        let slot = self.slots.get(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.txn.as_ref()
    }

    fn get_mut(&mut self, id: TxnId) -> Option<&mut Txn> {
        let slot = self.slots.get_mut(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.txn.as_mut()
    }

    fn insert(
        &mut self,
        key: Box<[u8]>,
        dest: Dest,
        legacy_tags: Option<Box<LegacyTags>>,
        build: impl FnOnce(&mut Cx<'_>) -> Machine,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> TxnId {
        let idx = match self.free.pop() {
            Some(idx) => idx,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    txn: None,
                });
                // Slab indices fit u32: four billion live transactions would exhaust memory long before.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = self.slots.get(idx as usize).map_or(0, |s| s.generation);
        let id = TxnId { idx, generation };
        let mut timers = Timers::default();
        let machine = {
            let mut cx = Cx {
                id,
                now,
                cfg: &self.cfg,
                dest,
                timers: &mut timers,
                out,
                stats: &mut self.stats,
            };
            build(&mut cx)
        };
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            slot.txn = Some(Txn {
                key: key.clone(),
                dest,
                timers,
                machine,
                legacy_tags,
            });
        }
        self.index.insert(key, id);
        self.live += 1;
        self.settle(id, out);
        id
    }

    /// Run `f` on transaction `id`'s machine, then schedule the timers it armed and remove it if it terminated.
    fn run<R>(
        &mut self,
        id: TxnId,
        now: Instant,
        out: &mut Vec<Action>,
        f: impl FnOnce(&mut Machine, &mut Cx<'_>) -> R,
    ) -> Option<R> {
        let slot = self.slots.get_mut(id.idx as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let txn = slot.txn.as_mut()?;
        let mut cx = Cx {
            id,
            now,
            cfg: &self.cfg,
            dest: txn.dest,
            timers: &mut txn.timers,
            out,
            stats: &mut self.stats,
        };
        let r = f(&mut txn.machine, &mut cx);
        self.settle(id, out);
        Some(r)
    }

    fn settle(&mut self, id: TxnId, out: &mut Vec<Action>) {
        let Some(slot) = self.slots.get_mut(id.idx as usize) else {
            return;
        };
        let Some(txn) = slot.txn.as_mut() else {
            return;
        };
        if txn.machine.is_terminated() {
            if let Some(txn) = slot.txn.take()
                && self.index.get(&txn.key) == Some(&id)
            {
                self.index.remove(&txn.key);
            }
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(id.idx);
            self.live -= 1;
            self.stats.terminated += 1;
            out.push(Action::Terminated { txn: id });
            return;
        }
        let dirty = std::mem::take(&mut txn.timers.dirty);
        for (i, s) in txn.timers.slots.iter().enumerate() {
            if dirty & (1 << i) != 0
                && let Some((at, _)) = s
            {
                self.heap
                    .push(Reverse((*at, id.idx, id.generation, i as u8)));
            }
        }
    }
}
