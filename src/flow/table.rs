//! The bounded flow table.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::{Direction, EndReason, FlowKey, FlowRecord, Outcome, PacketKey, Transport};
use crate::decode::{tcp_flags, DecodedPacket};
use crate::fingerprint::{FingerprintState, FlowContext, Payload, Spec};

const NIL: u32 = u32::MAX;
const NANOS: i64 = 1_000_000_000;

/// Recency lists: open TCP flows, flows of other transports, and closed TCP flows lingering
/// for late packets. Each list has one timeout, so its head is always the next to expire.
const LIST_TCP: usize = 0;
const LIST_OTHER: usize = 1;
const LIST_CLOSED: usize = 2;

/// Flow table settings.
#[derive(Debug, Clone, Copy)]
pub struct FlowConfig {
    /// Idle timeout of open TCP flows (seconds).
    pub tcp_idle_secs: u32,
    /// Idle timeout of UDP and other flows (seconds).
    pub udp_idle_secs: u32,
    /// How long a TCP flow closed by FIN/RST keeps catching late packets (seconds).
    pub closed_linger_secs: u32,
    /// Hard cap on live flows; the least recently seen is evicted beyond it.
    pub max_flows: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            tcp_idle_secs: 300,
            udp_idle_secs: 120,
            closed_linger_secs: 5,
            max_flows: 500_000,
        }
    }
}

/// What happened in the table, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub packets: u64,
    pub flows_created: u64,
    pub evicted: u64,
    pub idle_expired: u64,
    pub closed: u64,
    /// Payloads not offered to fingerprinters because they repeated bytes already seen.
    pub retransmissions: u64,
    /// Largest number of flows live at once.
    pub peak_live: u64,
}

impl FlowCounters {
    pub fn merge(&mut self, o: &FlowCounters) {
        self.packets += o.packets;
        self.flows_created += o.flows_created;
        self.evicted += o.evicted;
        self.idle_expired += o.idle_expired;
        self.closed += o.closed;
        self.retransmissions += o.retransmissions;
        self.peak_live = self.peak_live.max(o.peak_live);
    }
}

struct FlowState {
    key: FlowKey,
    id: u64,
    /// The client is the key's `lo` endpoint.
    client_is_lo: bool,
    first_ts: i64,
    last_ts: i64,
    /// The table's clock at the flow's last packet. A sweep of the clock's second runs
    /// before any packet in that second in one table, so it never ends a flow seen during
    /// that second; another table sweeping the same second again (after taking the flow in)
    /// must not either, though where time steps back the flow's packets are behind the clock
    /// and time it out at once.
    seen_at_clock: i64,
    packets: [u64; 2],
    bytes: [u64; 2],
    payload_bytes: [u64; 2],
    payload_packets: [u64; 2],
    tcp_flags: [u8; 2],
    /// The first TCP packet was neither SYN nor SYN-ACK: the capture began mid-connection.
    midstream: bool,
    fin: [bool; 2],
    /// First RST: who sent it and whether each side had sent data before it.
    first_rst: Option<(Direction, bool, bool)>,
    /// Next expected TCP sequence number per direction (retransmission filter).
    next_seq: [Option<u32>; 2],
    closed: bool,
    fingerprint: FingerprintState,
}

/// A live flow on its way from one table to another: the reading thread hands hash buckets,
/// and their flows, to the workers when they keep waiting for it.
pub struct MovedFlow {
    hash: u64,
    state: FlowState,
}

impl MovedFlow {
    /// [`FlowKey::flow_hash`] of the flow's key: which table owns it.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Gives the flow a copy of its fingerprint state allocated by the calling thread (the
    /// one taking it in) and returns the original, for the thread that gave the flow to drop
    /// ([`FingerprintState::rehome`]).
    pub fn rehome(&mut self) -> FingerprintState {
        self.state.fingerprint.rehome()
    }
}

/// An index key with its [`FlowKey::flow_hash`] beside it, so the key is hashed once per packet
/// (by the reader that dispatched it, or by [`FlowTable::process`]) and never on insert or
/// removal.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IndexKey {
    hash: u64,
    key: FlowKey,
}

impl Hash for IndexKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The [`Hasher`] of the index: hands back the hash an [`IndexKey`] carries, its halves
/// swapped.
///
/// The index places a key by the hash's low bits (and tags it with the top 7). On several
/// threads each table holds only the flows whose hash falls in its share of the dispatch
/// buckets, which are chosen by the same low bits (`pipeline::parallel`): used as they are,
/// they would crowd each table's keys into a part of its slots and lengthen every probe (1.7
/// times the instructions per lookup on two threads). Swapped, the index places keys by bits
/// the dispatch does not look at.
#[derive(Default)]
struct CarriedHash(u64);

impl Hasher for CarriedHash {
    fn finish(&self) -> u64 {
        self.0.rotate_left(32)
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `IndexKey` is hashed here, through `write_u64`; fold anything else all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

struct Slot {
    flow: Option<FlowState>,
    /// [`FlowKey::flow_hash`] of the flow's key, for removing it from the index.
    hash: u64,
    prev: u32,
    next: u32,
    list: u8,
}

/// Bidirectional flow table with idle timeouts and a hard cap.
pub struct FlowTable {
    config: FlowConfig,
    registry: &'static [&'static Spec],
    index: HashMap<IndexKey, u32, BuildHasherDefault<CarriedHash>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    heads: [u32; 3],
    tails: [u32; 3],
    live: usize,
    /// Live flows by the time they time out, earliest first: `(expires, slot, flow id)`.
    ///
    /// Sweeps take flows from here, not from the heads of the recency lists. Where a capture's
    /// time steps back, a list can hold a flow that timed out behind one that has not, and a
    /// walk from the head would stop early; which flows sit in which table then decided which
    /// flows a sweep ended, and so the flows of a run depended on the thread count. Entries are
    /// left alone when a flow sees a packet (no work per packet); a sweep that meets a flow not
    /// yet timed out puts it back under its real time, and drops entries of flows gone.
    expiry: BinaryHeap<Reverse<(i64, u32, u64)>>,
    /// Expiry entries a sweep passed over (flows seen during the swept second), put back after.
    passed_over: Vec<Reverse<(i64, u32, u64)>>,
    now: i64,
    /// Start of the clock second of the last sweep.
    last_sweep: i64,
    next_id: u64,
    counters: FlowCounters,
}

impl FlowTable {
    pub fn new(config: FlowConfig, registry: &'static [&'static Spec]) -> Self {
        FlowTable {
            config,
            registry,
            index: HashMap::with_capacity_and_hasher(1024, BuildHasherDefault::default()),
            slots: Vec::new(),
            free: Vec::new(),
            heads: [NIL; 3],
            tails: [NIL; 3],
            live: 0,
            expiry: BinaryHeap::new(),
            passed_over: Vec::new(),
            now: i64::MIN,
            last_sweep: i64::MIN,
            next_id: 0,
            counters: FlowCounters::default(),
        }
    }

    pub fn counters(&self) -> FlowCounters {
        self.counters
    }

    /// Calls `f(client, server, protocol, family)` for every open flow whose fingerprint
    /// matches so far name a protocol ([`crate::fingerprint::FingerprintState::provisional`]):
    /// a long VPN session shows up while it runs, not only when it ends.
    pub fn for_each_open_label(
        &self,
        mut f: impl FnMut(std::net::IpAddr, std::net::IpAddr, &'static str, crate::fingerprint::Family),
    ) {
        for flow in self.slots.iter().filter_map(|s| s.flow.as_ref()) {
            let Some((protocol, family)) = flow.fingerprint.provisional() else {
                continue;
            };
            let (client, server) = if flow.client_is_lo {
                (flow.key.lo_ip, flow.key.hi_ip)
            } else {
                (flow.key.hi_ip, flow.key.lo_ip)
            };
            f(client, server, protocol, family);
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Sets the id of the next flow created (so several tables can number flows apart).
    pub fn set_next_id(&mut self, id: u64) {
        self.next_id = id;
    }

    /// Moves the table's clock (what sweeps and the end of input judge idleness by) to `now` if
    /// that is later. When packets are split between tables, each is told the latest timestamp
    /// of the whole run so far: where a capture's time steps back, sweeps then end the same
    /// flows in every table as in one table that sees every packet, so a later packet of such
    /// a flow starts a new flow whatever the thread count. A table that sees every packet
    /// keeps its clock itself.
    pub fn advance_clock(&mut self, now: i64) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Runs the expiry sweep of the clock's second if it has not run yet.
    ///
    /// Expiry sweeps once per second of the clock, at the first packet in it, and ends every
    /// flow timed out by the start of that second: the same cut in every table (each table's
    /// clock is the run's), so the flows swept before any packet do not depend on which other
    /// flows share its table. A table that takes in flows behind the run's clock and catches
    /// them up ([`FlowTable::adopt`]) sweeps here before handing them on, as a table that had
    /// held them all along would have at the clock's last packet.
    pub fn sweep(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        let second = self.now.saturating_sub(self.now.rem_euclid(NANOS));
        if second > self.last_sweep {
            self.last_sweep = second;
            self.expire_idle(second, emit);
        }
    }

    fn timeout_nanos(&self, list: usize) -> i64 {
        let secs = match list {
            LIST_TCP => self.config.tcp_idle_secs,
            LIST_OTHER => self.config.udp_idle_secs,
            _ => self.config.closed_linger_secs,
        };
        i64::from(secs) * NANOS
    }

    /// Accounts one packet; finished flows (closed, expired, evicted) go to `emit`.
    pub fn process(&mut self, ts: i64, pkt: &DecodedPacket<'_>, emit: &mut impl FnMut(FlowRecord)) {
        self.process_keyed(ts, pkt, PacketKey::of(pkt), emit);
    }

    /// [`FlowTable::process`] for a packet whose [`PacketKey`] is already known (the reader
    /// worked it out to choose this table).
    pub fn process_keyed(
        &mut self,
        ts: i64,
        pkt: &DecodedPacket<'_>,
        packet_key: PacketKey,
        emit: &mut impl FnMut(FlowRecord),
    ) {
        debug_assert_eq!(packet_key.hash, packet_key.key.flow_hash());
        let PacketKey {
            key,
            src_is_lo,
            hash,
        } = packet_key;
        let index_key = IndexKey { hash, key };
        self.counters.packets += 1;
        if ts > self.now {
            self.now = ts;
        }
        self.sweep(emit);

        let is_syn = pkt.ip_proto == 6
            && pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        let slot = match self.index.get(&index_key).copied() {
            Some(slot) => {
                let closed = self.slots[slot as usize]
                    .flow
                    .as_ref()
                    .is_some_and(|f| f.closed);
                let idle = self.expires_at(slot).is_some_and(|e| e < ts);
                // Idle past its timeout: the flow ended, whether or not a sweep noticed yet, so
                // results do not depend on when sweeps happen to run. (Judged by this packet's
                // time, not the run's clock: where a capture's time steps back, the clock is
                // ahead of every packet after the step, and would end their flows at every
                // packet.)
                if idle || (closed && is_syn) {
                    self.end_timed_out(slot, emit);
                    self.create(index_key, src_is_lo, ts, pkt, emit)
                } else {
                    slot
                }
            }
            None => self.create(index_key, src_is_lo, ts, pkt, emit),
        };
        self.update(slot, src_is_lo, ts, pkt);
    }

    fn create(
        &mut self,
        index_key: IndexKey,
        src_is_lo: bool,
        ts: i64,
        pkt: &DecodedPacket<'_>,
        emit: &mut impl FnMut(FlowRecord),
    ) -> u32 {
        if self.live >= self.config.max_flows.max(1) {
            self.evict_one(emit);
        }
        let client_is_src = client_is_source(pkt);
        let is_tcp = pkt.ip_proto == 6;
        let handshake = is_tcp && pkt.tcp_flags & tcp_flags::SYN != 0;
        let flow = FlowState {
            key: index_key.key,
            id: self.next_id,
            client_is_lo: client_is_src == src_is_lo,
            first_ts: ts,
            last_ts: ts,
            seen_at_clock: self.now,
            packets: [0; 2],
            bytes: [0; 2],
            payload_bytes: [0; 2],
            payload_packets: [0; 2],
            tcp_flags: [0; 2],
            midstream: is_tcp && !handshake,
            fin: [false; 2],
            first_rst: None,
            next_seq: [None; 2],
            closed: false,
            fingerprint: FingerprintState::default(),
        };
        self.next_id += 1;
        self.counters.flows_created += 1;
        let list = list_of(&flow);
        let slot = self.occupy(flow, index_key.hash, list);
        self.push_tail(slot, list);
        self.schedule(slot);
        slot
    }

    /// Adds an expiry entry for the flow in `slot` at its current timeout.
    fn schedule(&mut self, slot: u32) {
        if let (Some(expires), Some(f)) = (self.expires_at(slot), &self.slots[slot as usize].flow) {
            self.expiry.push(Reverse((expires, slot, f.id)));
        }
        // Entries of flows gone are dropped by sweeps; when they pile up (flows ended by their
        // next packet, evicted or handed over), they are dropped all at once.
        if self.expiry.len() > 3 * self.live + 4096 {
            let slots = &self.slots;
            self.expiry.retain(|Reverse((_, slot, id))| {
                slots
                    .get(*slot as usize)
                    .and_then(|s| s.flow.as_ref())
                    .is_some_and(|f| f.id == *id)
            });
        }
    }

    /// Puts a live flow into a free slot and the index (not yet into a recency list).
    fn occupy(&mut self, flow: FlowState, hash: u64, list: usize) -> u32 {
        let index_key = IndexKey {
            hash,
            key: flow.key,
        };
        let filled = Slot {
            flow: Some(flow),
            hash,
            prev: NIL,
            next: NIL,
            list: list as u8,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = filled;
                s
            }
            None => {
                self.slots.push(filled);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(index_key, slot);
        self.live += 1;
        self.counters.peak_live = self.counters.peak_live.max(self.live as u64);
        slot
    }

    /// Sets the cap on live flows (the reader hands part of its share to the workers); a
    /// table above its new cap evicts its least recently seen flows down to it at once, so
    /// the tables of a run never hold more than the run's cap between them.
    pub fn set_max_flows(&mut self, max_flows: usize, emit: &mut impl FnMut(FlowRecord)) {
        self.config.max_flows = max_flows.max(1);
        self.evict_beyond_cap(emit);
    }

    /// Takes out, without ending them, the live flows whose hash `moves` selects, each list
    /// from least to most recently seen: another table [`FlowTable::adopt`]s them and carries
    /// on as if it had seen every packet itself.
    pub fn take_flows(&mut self, mut moves: impl FnMut(u64) -> bool) -> Vec<MovedFlow> {
        let mut taken = Vec::new();
        for list in [LIST_TCP, LIST_OTHER, LIST_CLOSED] {
            let mut slot = self.heads[list];
            while slot != NIL {
                let next = self.slots[slot as usize].next;
                let hash = self.slots[slot as usize].hash;
                if moves(hash) {
                    if let Some(state) = self.vacate(slot) {
                        taken.push(MovedFlow { hash, state });
                    }
                }
                slot = next;
            }
        }
        taken
    }

    /// Takes in flows another table took out ([`FlowTable::take_flows`]). Each joins its
    /// recency list where its last packet puts it, so sweeps and evictions treat it as if
    /// this table had seen it all along; beyond the cap, the least recently seen flows of
    /// both are evicted, as one table holding them all would have.
    pub fn adopt(
        &mut self,
        flows: impl IntoIterator<Item = MovedFlow>,
        emit: &mut impl FnMut(FlowRecord),
    ) {
        // Flows come list by list, least recent first: one walk down each list places them.
        let mut cursor = self.heads;
        for moved in flows {
            let MovedFlow { hash, mut state } = moved;
            let list = list_of(&state);
            // Ids are this table's (expiry entries name a flow by slot and id).
            state.id = self.next_id;
            self.next_id += 1;
            let last_ts = state.last_ts;
            while cursor[list] != NIL {
                let here = &self.slots[cursor[list] as usize];
                if here.flow.as_ref().is_some_and(|f| f.last_ts > last_ts) {
                    break;
                }
                cursor[list] = here.next;
            }
            let slot = self.occupy(state, hash, list);
            self.insert_before(slot, cursor[list], list);
            self.schedule(slot);
        }
        self.evict_beyond_cap(emit);
    }

    /// Evicts the least recently seen flows while more are live than the cap allows.
    fn evict_beyond_cap(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        while self.live > self.config.max_flows.max(1) {
            self.evict_one(emit);
        }
    }

    fn update(&mut self, slot: u32, src_is_lo: bool, ts: i64, pkt: &DecodedPacket<'_>) {
        let registry = self.registry;
        let Some(flow) = self.slots[slot as usize].flow.as_mut() else {
            return;
        };
        let dir = if src_is_lo == flow.client_is_lo {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let d = dir.index();
        flow.last_ts = flow.last_ts.max(ts);
        flow.seen_at_clock = flow.seen_at_clock.max(self.now);
        flow.first_ts = flow.first_ts.min(ts);
        flow.packets[d] += 1;
        flow.bytes[d] += u64::from(pkt.ip_len);
        flow.tcp_flags[d] |= pkt.tcp_flags;
        let is_tcp = pkt.ip_proto == 6;

        if is_tcp && pkt.tcp_flags & tcp_flags::RST != 0 && flow.first_rst.is_none() {
            flow.first_rst = Some((
                dir,
                flow.payload_packets[0] > 0,
                flow.payload_packets[1] > 0,
            ));
        }
        if is_tcp && pkt.tcp_flags & tcp_flags::FIN != 0 {
            flow.fin[d] = true;
        }

        // What the packet carried on the wire, of which a snap length may have kept less.
        let wire_payload = pkt.payload.len() as u64 + u64::from(pkt.payload_cut);
        let mut offer = !pkt.payload.is_empty();
        if offer && is_tcp {
            // A segment that ends at or before the highest byte already seen repeats it.
            let end = pkt.tcp_seq.wrapping_add(wire_payload as u32);
            match flow.next_seq[d] {
                Some(next) if (end.wrapping_sub(next) as i32) <= 0 => {
                    offer = false;
                    self.counters.retransmissions += 1;
                }
                _ => flow.next_seq[d] = Some(end),
            }
        }
        if wire_payload > 0 {
            flow.payload_bytes[d] += wire_payload;
            flow.payload_packets[d] += 1;
        }
        if offer && !flow.fingerprint.is_settled() {
            let (client_port, server_port) = if flow.client_is_lo {
                (flow.key.lo_port, flow.key.hi_port)
            } else {
                (flow.key.hi_port, flow.key.lo_port)
            };
            let payload = Payload {
                direction: dir,
                nth_in_direction: u8::try_from(flow.payload_packets[d] - 1).unwrap_or(u8::MAX),
                nth: u8::try_from(flow.payload_packets[0] + flow.payload_packets[1] - 1)
                    .unwrap_or(u8::MAX),
                transport: Transport::from_ip_proto(pkt.ip_proto),
                client_port,
                server_port,
                ts_nanos: ts,
                bytes: pkt.payload,
                midstream: flow.midstream,
                cut: pkt.payload_cut,
            };
            flow.fingerprint.observe(registry, &payload);
        }

        let now_closed = is_tcp && (flow.first_rst.is_some() || (flow.fin[0] && flow.fin[1]));
        let newly_closed = now_closed && !flow.closed;
        if now_closed {
            flow.closed = true;
        }
        let list = list_of(flow);
        if newly_closed {
            self.counters.closed += 1;
        }
        self.unlink(slot);
        self.push_tail(slot, list);
        if newly_closed {
            // Closed flows linger briefly: the entry under the open timeout would be too late.
            self.schedule(slot);
        }
    }

    /// Ends every flow that timed out before `cutoff`.
    fn expire_idle(&mut self, cutoff: i64, emit: &mut impl FnMut(FlowRecord)) {
        while let Some(&Reverse((expires, slot, id))) = self.expiry.peek() {
            if expires >= cutoff {
                break;
            }
            self.expiry.pop();
            let Some(flow) = self.slots[slot as usize].flow.as_ref() else {
                continue;
            };
            if flow.id != id {
                continue;
            }
            let seen_this_second = flow.seen_at_clock >= cutoff;
            match self.expires_at(slot) {
                // Seen since the entry was made: back in under its real time.
                Some(real) if real >= cutoff => self.expiry.push(Reverse((real, slot, id))),
                // Seen during the second being swept (where time stepped back): one table
                // swept this second before that packet, so the flow waits for the next.
                _ if seen_this_second => self.passed_over.push(Reverse((expires, slot, id))),
                _ => self.end_timed_out(slot, emit),
            }
        }
        self.expiry.extend(self.passed_over.drain(..));
    }

    /// When the flow in `slot` times out: its last packet plus its list's timeout.
    fn expires_at(&self, slot: u32) -> Option<i64> {
        let s = &self.slots[slot as usize];
        let f = s.flow.as_ref()?;
        Some(
            f.last_ts
                .saturating_add(self.timeout_nanos(usize::from(s.list))),
        )
    }

    /// Ends the flow in `slot` as timed out: a closed flow by its FIN or RST, others idle.
    fn end_timed_out(&mut self, slot: u32, emit: &mut impl FnMut(FlowRecord)) {
        let reason = if usize::from(self.slots[slot as usize].list) == LIST_CLOSED {
            self.closed_reason(slot)
        } else {
            self.counters.idle_expired += 1;
            EndReason::IdleTimeout
        };
        self.remove(slot, reason, emit);
    }

    fn closed_reason(&self, slot: u32) -> EndReason {
        match self.slots[slot as usize].flow.as_ref() {
            Some(f) if f.first_rst.is_some() => EndReason::Rst,
            _ => EndReason::Fin,
        }
    }

    /// Evicts the least recently seen flow of all lists.
    fn evict_one(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        let oldest = (0..3).filter(|&l| self.heads[l] != NIL).min_by_key(|&l| {
            self.slots[self.heads[l] as usize]
                .flow
                .as_ref()
                .map_or(i64::MIN, |f| f.last_ts)
        });
        if let Some(list) = oldest {
            let head = self.heads[list];
            if list == LIST_CLOSED {
                let reason = self.closed_reason(head);
                self.remove(head, reason, emit);
            } else {
                self.counters.evicted += 1;
                self.remove(head, EndReason::Evicted, emit);
            }
        }
    }

    /// Ends every live flow (end of input), in creation order.
    pub fn finish_all(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        let mut live: Vec<(u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.flow.as_ref().map(|f| (f.id, i as u32)))
            .collect();
        live.sort_unstable();
        for (_, slot) in live {
            let closed = usize::from(self.slots[slot as usize].list) == LIST_CLOSED;
            // Timed out since the last sweep (sweeps run once a second of the clock).
            let idle = self.expires_at(slot).is_some_and(|e| e < self.now);
            if closed || idle {
                self.end_timed_out(slot, emit);
            } else {
                self.remove(slot, EndReason::EndOfInput, emit);
            }
        }
    }

    fn remove(&mut self, slot: u32, reason: EndReason, emit: &mut impl FnMut(FlowRecord)) {
        if let Some(flow) = self.vacate(slot) {
            emit(finish(flow, reason, self.registry));
        }
    }

    /// Takes the flow out of `slot`, its recency list and the index, and frees the slot.
    fn vacate(&mut self, slot: u32) -> Option<FlowState> {
        self.unlink(slot);
        let hash = self.slots[slot as usize].hash;
        let flow = self.slots[slot as usize].flow.take()?;
        self.index.remove(&IndexKey {
            hash,
            key: flow.key,
        });
        self.free.push(slot);
        self.live -= 1;
        Some(flow)
    }

    /// Links `slot` into `list` just before `before` (at the tail when `before` is `NIL`).
    fn insert_before(&mut self, slot: u32, before: u32, list: usize) {
        if before == NIL {
            self.push_tail(slot, list);
            return;
        }
        let prev = self.slots[before as usize].prev;
        {
            let s = &mut self.slots[slot as usize];
            s.prev = prev;
            s.next = before;
            s.list = list as u8;
        }
        self.slots[before as usize].prev = slot;
        if prev == NIL {
            self.heads[list] = slot;
        } else {
            self.slots[prev as usize].next = slot;
        }
    }

    fn push_tail(&mut self, slot: u32, list: usize) {
        let tail = self.tails[list];
        {
            let s = &mut self.slots[slot as usize];
            s.prev = tail;
            s.next = NIL;
            s.list = list as u8;
        }
        if tail == NIL {
            self.heads[list] = slot;
        } else {
            self.slots[tail as usize].next = slot;
        }
        self.tails[list] = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next, list) = {
            let s = &self.slots[slot as usize];
            (s.prev, s.next, s.list as usize)
        };
        if prev == NIL {
            if self.heads[list] == slot {
                self.heads[list] = next;
            }
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            if self.tails[list] == slot {
                self.tails[list] = prev;
            }
        } else {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[slot as usize];
        s.prev = NIL;
        s.next = NIL;
    }
}

/// The recency list a flow belongs on: closed TCP flows, open TCP flows, the rest.
fn list_of(flow: &FlowState) -> usize {
    if flow.closed {
        LIST_CLOSED
    } else if flow.key.ip_proto == 6 {
        LIST_TCP
    } else {
        LIST_OTHER
    }
}

/// Who started the flow, judged from its first packet: the SYN sender; the receiver of a
/// SYN-ACK; otherwise, if exactly one side uses a well-known port (< 1024), the other side;
/// otherwise the first sender.
fn client_is_source(pkt: &DecodedPacket<'_>) -> bool {
    if pkt.ip_proto == 6 && pkt.tcp_flags & tcp_flags::SYN != 0 {
        return pkt.tcp_flags & tcp_flags::ACK == 0;
    }
    if pkt.ip_proto == 6 || pkt.ip_proto == 17 {
        let src_low = pkt.src_port < 1024;
        let dst_low = pkt.dst_port < 1024;
        if src_low && !dst_low {
            return false;
        }
    }
    true
}

fn finish(
    flow: FlowState,
    end_reason: EndReason,
    registry: &'static [&'static Spec],
) -> FlowRecord {
    let (client_ip, client_port, server_ip, server_port) = if flow.client_is_lo {
        (
            flow.key.lo_ip,
            flow.key.lo_port,
            flow.key.hi_ip,
            flow.key.hi_port,
        )
    } else {
        (
            flow.key.hi_ip,
            flow.key.hi_port,
            flow.key.lo_ip,
            flow.key.lo_port,
        )
    };
    let transport = Transport::from_ip_proto(flow.key.ip_proto);
    let outcome = outcome(&flow, transport);
    let ctx = FlowContext {
        transport,
        client_ip,
        client_port,
        server_ip,
        server_port,
        packets: flow.packets,
        payload_bytes: flow.payload_bytes,
        payload_packets: flow.payload_packets,
        duration_nanos: flow.last_ts - flow.first_ts,
    };
    let label = flow.fingerprint.finish(registry, &ctx);
    let mut record = FlowRecord {
        id: flow.id,
        first_ts: flow.first_ts,
        last_ts: flow.last_ts,
        transport,
        ip_proto: flow.key.ip_proto,
        client_ip,
        client_port,
        server_ip,
        server_port,
        packets: flow.packets,
        bytes: flow.bytes,
        payload_bytes: flow.payload_bytes,
        tcp_flags: flow.tcp_flags,
        outcome,
        end_reason,
        label,
    };
    if record.label.roles_reversed {
        std::mem::swap(&mut record.client_ip, &mut record.server_ip);
        std::mem::swap(&mut record.client_port, &mut record.server_port);
        record.packets.swap(0, 1);
        record.bytes.swap(0, 1);
        record.payload_bytes.swap(0, 1);
        record.tcp_flags.swap(0, 1);
    }
    record
}

fn outcome(flow: &FlowState, transport: Transport) -> Outcome {
    let client_sent = flow.packets[0] > 0;
    let server_sent = flow.packets[1] > 0;
    if transport == Transport::Tcp {
        if let Some((by, client_data, server_data)) = flow.first_rst {
            return match by {
                Direction::ToServer => Outcome::ResetByClient,
                Direction::ToClient if server_data => Outcome::ResetAfterServerData,
                Direction::ToClient if client_data => Outcome::ResetAfterClientData,
                Direction::ToClient => Outcome::ResetAfterSyn,
            };
        }
        if !server_sent {
            return if flow.midstream {
                Outcome::OneWay
            } else {
                Outcome::NoReply
            };
        }
        if !client_sent {
            return Outcome::OneWay;
        }
        if flow.fin[0] && flow.fin[1] && flow.payload_packets[0] > 0 && flow.payload_packets[1] > 0
        {
            return Outcome::Completed;
        }
        return Outcome::Established;
    }
    match (client_sent, server_sent) {
        (true, true) => Outcome::Established,
        _ => Outcome::NoReply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{
        decode_ip,
        tests::{ipv4_tcp, ipv4_udp},
    };

    fn run(table: &mut FlowTable, ts_secs: i64, ip: &[u8], out: &mut Vec<FlowRecord>) {
        let pkt = decode_ip(ip).unwrap();
        table.process(ts_secs * NANOS, &pkt, &mut |r| out.push(r));
    }

    const C: [u8; 4] = [10, 0, 0, 1];
    const S: [u8; 4] = [93, 184, 216, 34];

    /// An adopted flow joins its recency list where its last packet puts it: evictions (least
    /// recently seen first) come out in last-packet order across both tables' flows, and the
    /// adopted flow keeps its counts and goes on from them.
    #[test]
    fn adopted_flows_keep_their_state_and_their_place_in_recency_order() {
        let udp = |port: u16| ipv4_udp(C, S, port, 53, b"q");
        let mut giver = FlowTable::new(FlowConfig::default(), &[]);
        let mut taker = FlowTable::new(FlowConfig::default(), &[]);
        let mut out = Vec::new();
        run(&mut taker, 10, &udp(1000), &mut out);
        run(&mut giver, 20, &udp(2000), &mut out);
        run(&mut giver, 21, &udp(2000), &mut out);
        run(&mut taker, 30, &udp(3000), &mut out);
        let moved = giver.take_flows(|_| true);
        assert_eq!((moved.len(), giver.live()), (1, 0));
        taker.adopt(moved, &mut |r| out.push(r));
        assert_eq!(taker.live(), 3);
        taker.set_max_flows(3, &mut |r| out.push(r));
        for (i, port) in [4000, 4001, 4002].into_iter().enumerate() {
            run(&mut taker, 40 + i as i64, &udp(port), &mut out);
        }
        let evicted: Vec<(u16, u64)> = out.iter().map(|r| (r.client_port, r.packets[0])).collect();
        assert_eq!(evicted, [(1000, 1), (2000, 2), (3000, 1)]);
        assert!(giver.live() == 0 && taker.live() == 3);
    }

    /// Flows evicted under the cap leave expiry entries behind; they are dropped in bulk, so
    /// the entries stay bounded by the live flows, not the flows ever seen.
    #[test]
    fn expiry_entries_of_flows_gone_do_not_pile_up() {
        let mut table = FlowTable::new(
            FlowConfig {
                max_flows: 10,
                ..FlowConfig::default()
            },
            &[],
        );
        let mut out = Vec::new();
        for i in 0..20_000u32 {
            let client = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            run(
                &mut table,
                5,
                &ipv4_udp(client, S, 1000, 53, b"q"),
                &mut out,
            );
        }
        assert_eq!(out.len(), 20_000 - 10);
        assert!(
            table.expiry.len() <= 3 * table.live() + 4096,
            "{}",
            table.expiry.len()
        );
    }

    #[test]
    fn index_keys_with_one_hash_stay_apart() {
        // The index trusts the carried hash for bucketing only; equal hashes of different keys
        // (a collision) must still be two entries.
        let key = |port| FlowKey {
            lo_ip: C.into(),
            hi_ip: S.into(),
            lo_port: port,
            hi_port: 443,
            ip_proto: 6,
        };
        let mut index: HashMap<IndexKey, u32, BuildHasherDefault<CarriedHash>> = HashMap::default();
        index.insert(
            IndexKey {
                hash: 7,
                key: key(1),
            },
            1,
        );
        index.insert(
            IndexKey {
                hash: 7,
                key: key(2),
            },
            2,
        );
        assert_eq!(index.len(), 2);
        assert_eq!(
            index.get(&IndexKey {
                hash: 7,
                key: key(2)
            }),
            Some(&2)
        );
        assert_eq!(
            index.get(&IndexKey {
                hash: 8,
                key: key(2)
            }),
            None
        );
        // The reader's hash and the table's are one function of the key.
        assert_eq!(key(1).flow_hash(), key(1).flow_hash());
        assert_ne!(key(1).flow_hash(), key(2).flow_hash());
    }

    #[test]
    fn tcp_handshake_direction_and_completion() {
        let mut t = FlowTable::new(FlowConfig::default(), &[]);
        let mut out = Vec::new();
        // Server reply seen first would still make the SYN sender the client.
        run(
            &mut t,
            1,
            &ipv4_tcp(C, S, 40000, 443, tcp_flags::SYN, b""),
            &mut out,
        );
        run(
            &mut t,
            1,
            &ipv4_tcp(S, C, 443, 40000, tcp_flags::SYN | tcp_flags::ACK, b""),
            &mut out,
        );
        run(
            &mut t,
            1,
            &ipv4_tcp(C, S, 40000, 443, tcp_flags::ACK, b"hello"),
            &mut out,
        );
        run(
            &mut t,
            2,
            &ipv4_tcp(S, C, 443, 40000, tcp_flags::ACK, b"world!"),
            &mut out,
        );
        run(
            &mut t,
            2,
            &ipv4_tcp(C, S, 40000, 443, tcp_flags::FIN | tcp_flags::ACK, b""),
            &mut out,
        );
        run(
            &mut t,
            2,
            &ipv4_tcp(S, C, 443, 40000, tcp_flags::FIN | tcp_flags::ACK, b""),
            &mut out,
        );
        run(
            &mut t,
            2,
            &ipv4_tcp(C, S, 40000, 443, tcp_flags::ACK, b""),
            &mut out,
        );
        assert!(out.is_empty(), "closed flows linger for late packets");
        run(&mut t, 20, &ipv4_udp(C, S, 1, 2, b""), &mut out);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!((r.client_port, r.server_port), (40000, 443));
        assert_eq!(r.packets, [4, 3]);
        assert_eq!(r.payload_bytes, [5, 6]);
        assert_eq!(r.outcome, Outcome::Completed);
        assert_eq!(r.end_reason, EndReason::Fin);
    }

    #[test]
    fn synack_first_makes_receiver_client() {
        let mut t = FlowTable::new(FlowConfig::default(), &[]);
        let mut out = Vec::new();
        run(
            &mut t,
            1,
            &ipv4_tcp(S, C, 443, 40000, tcp_flags::SYN | tcp_flags::ACK, b""),
            &mut out,
        );
        t.finish_all(&mut |r| out.push(r));
        assert_eq!(out[0].client_port, 40000);
        assert_eq!(out[0].outcome, Outcome::OneWay);
    }

    #[test]
    fn outcomes_of_resets_and_silence() {
        /// (from client, TCP flags, payload) per packet.
        type Packets<'a> = &'a [(bool, u8, &'a [u8])];
        let cases: [(Packets, Outcome); 4] = [
            (
                &[
                    (true, tcp_flags::SYN, b""),
                    (false, tcp_flags::RST | tcp_flags::ACK, b""),
                ],
                Outcome::ResetAfterSyn,
            ),
            (
                &[
                    (true, tcp_flags::SYN, b""),
                    (false, tcp_flags::SYN | tcp_flags::ACK, b""),
                    (true, tcp_flags::ACK, b"\x16\x03\x01 client hello"),
                    (false, tcp_flags::RST, b""),
                ],
                Outcome::ResetAfterClientData,
            ),
            (
                &[(true, tcp_flags::SYN, b""), (true, tcp_flags::SYN, b"")],
                Outcome::NoReply,
            ),
            (
                &[
                    (true, tcp_flags::SYN, b""),
                    (false, tcp_flags::SYN | tcp_flags::ACK, b""),
                    (true, tcp_flags::RST, b""),
                ],
                Outcome::ResetByClient,
            ),
        ];
        for (packets, expected) in cases {
            let mut t = FlowTable::new(FlowConfig::default(), &[]);
            let mut out = Vec::new();
            for (from_client, flags, payload) in packets {
                let ip = if *from_client {
                    ipv4_tcp(C, S, 5000, 443, *flags, payload)
                } else {
                    ipv4_tcp(S, C, 443, 5000, *flags, payload)
                };
                run(&mut t, 1, &ip, &mut out);
            }
            t.finish_all(&mut |r| out.push(r));
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].outcome, expected);
        }
    }

    #[test]
    fn udp_idle_timeout_and_well_known_port_direction() {
        let mut t = FlowTable::new(FlowConfig::default(), &[]);
        let mut out = Vec::new();
        // A DNS answer seen first: the side on port 53 is the server.
        run(&mut t, 0, &ipv4_udp(S, C, 53, 33000, b"answer"), &mut out);
        run(
            &mut t,
            100,
            &ipv4_udp(C, [1, 1, 1, 1], 33001, 53, b"q"),
            &mut out,
        );
        assert!(out.is_empty());
        run(
            &mut t,
            121,
            &ipv4_udp(C, [1, 1, 1, 1], 33001, 53, b"q"),
            &mut out,
        );
        assert_eq!(out.len(), 1, "first flow idle for > 120 s");
        assert_eq!((out[0].client_port, out[0].server_port), (33000, 53));
        assert_eq!(out[0].end_reason, EndReason::IdleTimeout);
        assert_eq!(out[0].outcome, Outcome::NoReply);
        assert_eq!(t.counters().idle_expired, 1);
    }

    #[test]
    fn cap_evicts_least_recently_seen() {
        let config = FlowConfig {
            max_flows: 2,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(config, &[]);
        let mut out = Vec::new();
        run(&mut t, 1, &ipv4_udp(C, S, 1000, 9, b"a"), &mut out);
        run(&mut t, 1, &ipv4_udp(C, S, 1001, 9, b"b"), &mut out);
        run(&mut t, 1, &ipv4_udp(C, S, 1000, 9, b"a again"), &mut out);
        run(&mut t, 1, &ipv4_udp(C, S, 1002, 9, b"c"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].client_port, 1001);
        assert_eq!(out[0].end_reason, EndReason::Evicted);
        assert_eq!(t.counters().evicted, 1);
        assert_eq!(t.live(), 2);
        t.finish_all(&mut |r| out.push(r));
        let total: u64 = out.iter().map(|r| r.packets[0] + r.packets[1]).sum();
        assert_eq!(
            total,
            t.counters().packets,
            "every packet lands in exactly one flow"
        );
    }

    #[test]
    fn a_packet_after_the_idle_timeout_starts_a_new_flow() {
        let mut t = FlowTable::new(FlowConfig::default(), &[]);
        let mut out = Vec::new();
        run(&mut t, 10, &ipv4_udp(C, S, 1000, 9, b"a"), &mut out);
        // The next packet of the same 5-tuple comes 200 s later (UDP timeout 120 s).
        run(&mut t, 210, &ipv4_udp(C, S, 1000, 9, b"b"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_reason, EndReason::IdleTimeout);
        assert_eq!(t.live(), 1);
    }

    #[test]
    fn new_syn_after_close_starts_a_new_flow() {
        let mut t = FlowTable::new(FlowConfig::default(), &[]);
        let mut out = Vec::new();
        run(
            &mut t,
            1,
            &ipv4_tcp(C, S, 5000, 80, tcp_flags::SYN, b""),
            &mut out,
        );
        run(
            &mut t,
            1,
            &ipv4_tcp(S, C, 80, 5000, tcp_flags::RST | tcp_flags::ACK, b""),
            &mut out,
        );
        run(
            &mut t,
            2,
            &ipv4_tcp(C, S, 5000, 80, tcp_flags::SYN, b""),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_reason, EndReason::Rst);
        t.finish_all(&mut |r| out.push(r));
        assert_eq!(out.len(), 2);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever arrives, in whatever order: every packet lands in exactly one flow,
            /// the table never holds more than its cap, and flow ids are unique.
            #[test]
            fn counters_add_up_and_cap_holds(
                packets in proptest::collection::vec((0u8..4, 0u8..4, 0u16..6, any::<u8>(), 0i64..400, 0usize..3), 1..300),
                cap in 1usize..20,
            ) {
                let mut t = FlowTable::new(FlowConfig { max_flows: cap, ..FlowConfig::default() }, &[]);
                let mut out = Vec::new();
                for (a, b, port, flags, ts, kind) in packets {
                    let src = [10, 0, 0, a];
                    let dst = [10, 0, 1, b];
                    let ip = match kind {
                        0 => ipv4_tcp(src, dst, 1000 + port, 443, flags & 0x1f, &[flags]),
                        1 => ipv4_udp(src, dst, 1000 + port, 53, b"x"),
                        _ => ipv4_udp(dst, src, 53, 1000 + port, b""),
                    };
                    run(&mut t, ts, &ip, &mut out);
                    prop_assert!(t.live() <= cap);
                }
                t.finish_all(&mut |r| out.push(r));
                let total: u64 = out.iter().map(|r| r.packets[0] + r.packets[1]).sum();
                prop_assert_eq!(total, t.counters().packets);
                let mut ids: Vec<u64> = out.iter().map(|r| r.id).collect();
                ids.sort_unstable();
                ids.dedup();
                prop_assert_eq!(ids.len(), out.len());
                prop_assert_eq!(out.len() as u64, t.counters().flows_created);
            }
        }
    }
}
