//! Which connections the server keeps when it is full (issue 12, items 1 and 2).
//!
//! A connection is in one of four [`Phase`]s:
//!
//! ```text
//!  accept ─▶ FirstHead ──head──▶ Busy ──response sent──▶ Idle ──head──▶ Busy ...
//!               │                  │                        │
//!               │ first-head        └──101 (log stream)──▶ Upgraded (own cap)
//!               ▼ deadline
//!             shed
//! ```
//!
//! Connections in `FirstHead` (nothing useful received yet) and `Idle` (keep-alive, between
//! requests) hold a slot without doing work: when the server is at `max_connections`, a new
//! connection sheds the oldest of them, so an attacker holding slowloris heads or idle sockets
//! cannot lock out `/healthz` or an authorised client (accept never stalls while a slot can be
//! reclaimed). `Busy` connections are never shed. A remote address may hold at most
//! `max_head_per_remote` connections in `FirstHead`; past it, its own oldest is shed. Upgraded
//! connections (log WebSockets) leave the connection cap and count against `max_upgraded`;
//! an upgrade past it is refused. When the process runs out of descriptors the adapter sheds
//! one more connection the same way ([`ConnectionTable::handle_descriptors_exhausted`]).
//!
//! Time is an argument (`now`: any monotonic [`Duration`]). The table only decides; the adapter
//! closes the connections it names.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Limits of the connection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once, upgraded ones not counted.
    pub max_connections: usize,
    /// Connections one remote address may hold in [`Phase::FirstHead`].
    pub max_head_per_remote: usize,
    /// Upgraded connections (log WebSockets) at once.
    pub max_upgraded: usize,
    /// Time a new connection has to complete its first request head.
    pub first_head_timeout: Duration,
}

/// Identifies one connection in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

/// Where a connection is in its life. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; its first request head is not complete yet.
    FirstHead,
    /// A request is being served (head read, response not completely sent).
    Busy,
    /// Keep-alive between two requests.
    Idle,
    /// Switched protocols (a log WebSocket).
    Upgraded,
}

/// What accepting a connection decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The new connection's identity.
    pub id: ConnId,
    /// Connections to close now to make room (oldest first; at most two).
    pub shed: Vec<ConnId>,
}

/// The answer to an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeDecision {
    /// Switch protocols; the connection now counts against the upgrade cap.
    Accept,
    /// Refuse (503): the upgrade cap is reached.
    Refuse,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    remote: IpAddr,
    phase: Phase,
    /// When the connection entered its phase (accept, or the end of its last response).
    since: Duration,
    in_flight: u32,
}

/// The connections of one server. See the module documentation.
#[derive(Debug, Clone)]
pub struct ConnectionTable {
    limits: ConnectionLimits,
    conns: BTreeMap<ConnId, Conn>,
    next: u64,
    upgraded: usize,
}

impl ConnectionTable {
    /// An empty table. Limits of zero are treated as one.
    #[must_use]
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits: ConnectionLimits {
                max_connections: limits.max_connections.max(1),
                max_head_per_remote: limits.max_head_per_remote.max(1),
                max_upgraded: limits.max_upgraded.max(1),
                first_head_timeout: limits.first_head_timeout,
            },
            conns: BTreeMap::new(),
            next: 0,
            upgraded: 0,
        }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Connections counted against `max_connections`.
    #[must_use]
    pub fn counted(&self) -> usize {
        self.conns.len() - self.upgraded
    }

    /// Upgraded connections.
    #[must_use]
    pub fn upgraded(&self) -> usize {
        self.upgraded
    }

    /// The phase of `id`, or `None` once it left the table (closed or shed).
    #[must_use]
    pub fn phase(&self, id: ConnId) -> Option<Phase> {
        self.conns.get(&id).map(|conn| conn.phase)
    }

    /// Whether a new connection can be accepted now: a slot is free or one can be reclaimed.
    /// When not, the adapter waits for a connection to change phase or close, then asks again.
    #[must_use]
    pub fn can_admit(&self) -> bool {
        self.counted() < self.limits.max_connections || self.oldest_sheddable(None).is_some()
    }

    /// Admits a connection from `remote` at `now`, naming the connections to shed for it:
    /// the remote's oldest head-phase connection past its per-remote cap, then the oldest
    /// head-phase or idle connection if the server is over its cap.
    pub fn handle_accept(&mut self, remote: IpAddr, now: Duration) -> Admitted {
        let mut shed = Vec::new();
        let heads = self
            .conns
            .values()
            .filter(|c| c.remote == remote && c.phase == Phase::FirstHead)
            .count();
        if heads >= self.limits.max_head_per_remote
            && let Some(victim) = self.oldest_sheddable(Some(remote))
        {
            self.conns.remove(&victim);
            shed.push(victim);
        }
        if self.counted() >= self.limits.max_connections
            && let Some(victim) = self.oldest_sheddable(None)
        {
            self.conns.remove(&victim);
            shed.push(victim);
        }
        let id = ConnId(self.next);
        self.next += 1;
        self.conns.insert(
            id,
            Conn {
                remote,
                phase: Phase::FirstHead,
                since: now,
                in_flight: 0,
            },
        );
        Admitted { id, shed }
    }

    /// A request head of `id` was read: it is being served.
    pub fn handle_request(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id)
            && conn.phase != Phase::Upgraded
        {
            conn.phase = Phase::Busy;
            conn.in_flight = conn.in_flight.saturating_add(1);
        }
    }

    /// A response of `id` was sent completely (or abandoned) at `now`.
    pub fn handle_response_done(&mut self, id: ConnId, now: Duration) {
        if let Some(conn) = self.conns.get_mut(&id)
            && conn.phase == Phase::Busy
        {
            conn.in_flight = conn.in_flight.saturating_sub(1);
            if conn.in_flight == 0 {
                conn.phase = Phase::Idle;
                conn.since = now;
            }
        }
    }

    /// The first-head deadline of `id` passed at `now`: `true` when it is to be closed (still
    /// in its first head); it then leaves the table.
    pub fn handle_first_head_deadline(&mut self, id: ConnId, now: Duration) -> bool {
        let expired = self.conns.get(&id).is_some_and(|conn| {
            conn.phase == Phase::FirstHead
                && now.saturating_sub(conn.since) >= self.limits.first_head_timeout
        });
        if expired {
            self.conns.remove(&id);
        }
        expired
    }

    /// `id` asks to switch protocols.
    pub fn handle_upgrade(&mut self, id: ConnId) -> UpgradeDecision {
        if self.upgraded >= self.limits.max_upgraded {
            return UpgradeDecision::Refuse;
        }
        match self.conns.get_mut(&id) {
            Some(conn) if conn.phase != Phase::Upgraded => {
                conn.phase = Phase::Upgraded;
                self.upgraded += 1;
                UpgradeDecision::Accept
            }
            _ => UpgradeDecision::Refuse,
        }
    }

    /// The HTTP connection `id` ended. An upgraded connection stays until
    /// [`ConnectionTable::handle_upgrade_closed`].
    pub fn handle_closed(&mut self, id: ConnId) {
        if self.phase(id).is_some_and(|phase| phase != Phase::Upgraded) {
            self.conns.remove(&id);
        }
    }

    /// The upgraded connection `id` (its WebSocket) ended.
    pub fn handle_upgrade_closed(&mut self, id: ConnId) {
        if self.phase(id) == Some(Phase::Upgraded) {
            self.conns.remove(&id);
            self.upgraded -= 1;
        }
    }

    /// The process is out of file descriptors (`EMFILE`/`ENFILE` from accept): the connection
    /// to close to free one, if any can be reclaimed (it leaves the table).
    pub fn handle_descriptors_exhausted(&mut self) -> Option<ConnId> {
        let victim = self.oldest_sheddable(None)?;
        self.conns.remove(&victim);
        Some(victim)
    }

    /// The oldest connection in `FirstHead` or `Idle` (of `remote`'s head-phase ones only,
    /// when given).
    fn oldest_sheddable(&self, remote: Option<IpAddr>) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| match remote {
                Some(remote) => c.remote == remote && c.phase == Phase::FirstHead,
                None => matches!(c.phase, Phase::FirstHead | Phase::Idle),
            })
            .min_by_key(|(id, c)| (c.since, **id))
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limits(max: usize, per_remote: usize, upgraded: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            max_head_per_remote: per_remote,
            max_upgraded: upgraded,
            first_head_timeout: Duration::from_secs(5),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn at_capacity_the_oldest_head_or_idle_connection_is_shed() {
        let mut table = ConnectionTable::new(limits(3, 10, 1));
        let busy = table.handle_accept(ip(1), s(0)).id;
        table.handle_request(busy);
        let idle = table.handle_accept(ip(2), s(1)).id;
        table.handle_request(idle);
        table.handle_response_done(idle, s(5));
        let head = table.handle_accept(ip(3), s(2)).id;
        assert!(table.can_admit());
        // `head` (since 2) is older than `idle` (idle since 5); `busy` is never shed.
        let probe = table.handle_accept(ip(4), s(6));
        assert_eq!(probe.shed, vec![head]);
        let next = table.handle_accept(ip(5), s(7));
        assert_eq!(next.shed, vec![idle]);
        assert_eq!(table.phase(busy), Some(Phase::Busy));
        assert_eq!(table.counted(), 3);
    }

    #[test]
    fn when_every_connection_is_busy_nothing_can_be_admitted() {
        let mut table = ConnectionTable::new(limits(2, 10, 1));
        for remote in 0..2 {
            let id = table.handle_accept(ip(remote), s(0)).id;
            table.handle_request(id);
        }
        assert!(!table.can_admit());
        let first = ConnId(0);
        table.handle_response_done(first, s(1));
        assert!(table.can_admit(), "an idle connection can be reclaimed");
    }

    #[test]
    fn a_remote_past_its_head_cap_sheds_its_own_oldest_head() {
        let mut table = ConnectionTable::new(limits(100, 2, 1));
        let other = table.handle_accept(ip(9), s(0)).id;
        let a = table.handle_accept(ip(1), s(1)).id;
        let _b = table.handle_accept(ip(1), s(2)).id;
        let c = table.handle_accept(ip(1), s(3));
        assert_eq!(c.shed, vec![a]);
        assert_eq!(table.phase(other), Some(Phase::FirstHead));
    }

    #[test]
    fn the_first_head_deadline_closes_only_connections_still_in_their_first_head() {
        let mut table = ConnectionTable::new(limits(10, 10, 1));
        let slow = table.handle_accept(ip(1), s(0)).id;
        let fast = table.handle_accept(ip(1), s(0)).id;
        table.handle_request(fast);
        assert!(!table.handle_first_head_deadline(slow, s(4)));
        assert!(table.handle_first_head_deadline(slow, s(5)));
        assert!(!table.handle_first_head_deadline(fast, s(5)));
        assert_eq!(table.phase(slow), None);
    }

    #[test]
    fn upgraded_connections_leave_the_connection_cap_and_have_their_own() {
        let mut table = ConnectionTable::new(limits(2, 10, 1));
        let ws = table.handle_accept(ip(1), s(0)).id;
        table.handle_request(ws);
        assert_eq!(table.handle_upgrade(ws), UpgradeDecision::Accept);
        table.handle_closed(ws); // the HTTP side ends at the upgrade
        assert_eq!(table.phase(ws), Some(Phase::Upgraded));
        assert_eq!((table.counted(), table.upgraded()), (0, 1));
        let second = table.handle_accept(ip(1), s(1)).id;
        table.handle_request(second);
        assert_eq!(table.handle_upgrade(second), UpgradeDecision::Refuse);
        assert_eq!(table.phase(second), Some(Phase::Busy));
        // An upgraded connection is never shed, even when descriptors run out.
        table.handle_response_done(second, s(2));
        assert_eq!(table.handle_descriptors_exhausted(), Some(second));
        assert_eq!(table.handle_descriptors_exhausted(), None);
        table.handle_upgrade_closed(ws);
        assert_eq!((table.counted(), table.upgraded()), (0, 0));
    }

    #[derive(Debug, Clone)]
    enum Event {
        Accept(u8),
        Request(u8),
        Done(u8),
        Deadline(u8),
        Upgrade(u8),
        Closed(u8),
        UpgradeClosed(u8),
        Exhausted,
        Tick,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u8..4).prop_map(Event::Accept),
            any::<u8>().prop_map(Event::Request),
            any::<u8>().prop_map(Event::Done),
            any::<u8>().prop_map(Event::Deadline),
            any::<u8>().prop_map(Event::Upgrade),
            any::<u8>().prop_map(Event::Closed),
            any::<u8>().prop_map(Event::UpgradeClosed),
            Just(Event::Exhausted),
            Just(Event::Tick),
        ]
    }

    proptest! {
        /// The caps always hold after admitting, busy and upgraded connections are never
        /// shed, and `can_admit` is true exactly when accepting would not exceed the cap.
        #[test]
        fn caps_hold_and_busy_connections_are_never_shed(
            events in proptest::collection::vec(event(), 0..200),
        ) {
            let mut table = ConnectionTable::new(limits(4, 2, 2));
            let mut now = Duration::ZERO;
            let mut ids: Vec<ConnId> = Vec::new();
            let pick = |ids: &Vec<ConnId>, n: u8| ids.get(usize::from(n) % ids.len().max(1)).copied();
            for event in events {
                match event {
                    Event::Accept(remote) => {
                        if table.can_admit() {
                            let admitted = table.handle_accept(ip(remote), now);
                            for shed in &admitted.shed {
                                prop_assert!(table.phase(*shed).is_none());
                            }
                            ids.push(admitted.id);
                            prop_assert!(table.counted() <= 4);
                        }
                    }
                    Event::Request(n) => if let Some(id) = pick(&ids, n) { table.handle_request(id) },
                    Event::Done(n) => if let Some(id) = pick(&ids, n) { table.handle_response_done(id, now) },
                    Event::Deadline(n) => if let Some(id) = pick(&ids, n) {
                        let before = table.phase(id);
                        if table.handle_first_head_deadline(id, now) {
                            prop_assert_eq!(before, Some(Phase::FirstHead));
                        }
                    },
                    Event::Upgrade(n) => if let Some(id) = pick(&ids, n) { let _ = table.handle_upgrade(id); },
                    Event::Closed(n) => if let Some(id) = pick(&ids, n) { table.handle_closed(id) },
                    Event::UpgradeClosed(n) => if let Some(id) = pick(&ids, n) { table.handle_upgrade_closed(id) },
                    Event::Exhausted => {
                        let busy: Vec<_> = ids.iter().copied()
                            .filter(|id| matches!(table.phase(*id), Some(Phase::Busy | Phase::Upgraded)))
                            .collect();
                        let _ = table.handle_descriptors_exhausted();
                        for id in busy {
                            prop_assert!(table.phase(id).is_some());
                        }
                    }
                    Event::Tick => now += Duration::from_secs(1),
                }
                prop_assert!(table.upgraded() <= 2);
                let upgraded = ids.iter().filter(|id| table.phase(**id) == Some(Phase::Upgraded)).count();
                prop_assert_eq!(upgraded, table.upgraded());
            }
        }
    }
}
