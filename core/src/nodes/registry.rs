//! The frontend's node registry: its state as data, and every decision about it as a method
//! with time passed in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::jwt::NodeType;

/// Longest node name (bytes).
pub const MAX_NAME: usize = 255;
/// Longest address or HTTP address (bytes).
pub const MAX_ADDRESS: usize = 512;
/// Default age after which a silent node is marked offline (LocalAI: 60 s).
pub const DEFAULT_STALE_AFTER: u64 = 60;

/// The status of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Waiting for an administrator's approval.
    Pending,
    /// Serving.
    Healthy,
    /// Finishing its work; receives nothing new.
    Draining,
    /// Deregistered, or silent for too long.
    Offline,
    /// Reported broken.
    Unhealthy,
}

impl NodeStatus {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Healthy => "healthy",
            Self::Draining => "draining",
            Self::Offline => "offline",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One registered node. Nodes are keyed by **name** (LocalAI's identity key); the id is stable
/// across re-registrations of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The id given at first registration.
    pub id: String,
    /// The registration name.
    pub name: String,
    /// `backend` or `agent`.
    pub node_type: String,
    /// The current status.
    pub status: NodeStatus,
    /// Whether an administrator (or auto-approval) approved the node. Only approval makes a
    /// pending node healthy (D12): resume, re-registration and fresh heartbeats never do.
    pub approved: bool,
    /// gRPC address.
    #[serde(default)]
    pub address: String,
    /// File-transfer address.
    #[serde(default)]
    pub http_address: String,
    /// Labels (worker labels merged over earlier ones).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Capacity and usage figures last reported, by field name.
    #[serde(default)]
    pub resources: BTreeMap<String, u64>,
    /// Unix seconds of the first registration.
    pub created_at: u64,
    /// Unix seconds of the last registration or heartbeat.
    pub last_heartbeat: u64,
}

/// A register request as the registry reads it (spec §4.3); unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RegisterBody {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// `backend` (default) or `agent`.
    #[serde(default)]
    pub node_type: String,
    /// gRPC address.
    #[serde(default)]
    pub address: String,
    /// File-transfer address.
    #[serde(default)]
    pub http_address: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Total GPU memory.
    #[serde(default)]
    pub total_vram: Option<u64>,
    /// Free GPU memory.
    #[serde(default)]
    pub available_vram: Option<u64>,
    /// Total memory.
    #[serde(default)]
    pub total_ram: Option<u64>,
    /// Available memory.
    #[serde(default)]
    pub available_ram: Option<u64>,
    /// Disk size.
    #[serde(default)]
    pub total_disk: Option<u64>,
    /// Free disk.
    #[serde(default)]
    pub available_disk: Option<u64>,
}

/// A heartbeat body (spec §4.5); every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HeartbeatBody {
    /// Free GPU memory.
    #[serde(default)]
    pub available_vram: Option<u64>,
    /// Total GPU memory.
    #[serde(default)]
    pub total_vram: Option<u64>,
    /// Available memory.
    #[serde(default)]
    pub available_ram: Option<u64>,
    /// Free disk.
    #[serde(default)]
    pub available_disk: Option<u64>,
    /// Disk size.
    #[serde(default)]
    pub total_disk: Option<u64>,
}

/// A refused registry operation. `Display` is the text LocalAI's frontend sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// `node_type` is neither `backend` nor `agent`.
    #[error("invalid node_type {0:?}; must be \"backend\" or \"agent\"")]
    InvalidNodeType(String),
    /// No name.
    #[error("name is required")]
    NameRequired,
    /// A backend worker without an address.
    #[error("address is required for backend workers")]
    AddressRequired,
    /// Name over [`MAX_NAME`] bytes.
    #[error("name exceeds 255 characters")]
    NameTooLong,
    /// Address over [`MAX_ADDRESS`] bytes.
    #[error("address exceeds 512 characters")]
    AddressTooLong,
    /// HTTP address over [`MAX_ADDRESS`] bytes.
    #[error("http_address exceeds 512 characters")]
    HttpAddressTooLong,
    /// No node has this id.
    #[error("node not found")]
    NotFound,
    /// Approval asked for a node that is not pending.
    #[error("failed to approve node: not found or not in pending status")]
    NotPending,
    /// Resume asked for a node that was never approved (D12: no approval bypass).
    #[error("node is pending admin approval")]
    AwaitingApproval,
}

impl NodeError {
    /// The HTTP status of the answer.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::AwaitingApproval => 409,
            _ => 400,
        }
    }
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The node as stored.
    pub node: Node,
    /// Whether the name was new.
    pub created: bool,
}

/// A status change made by [`Registry::sweep`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The node id.
    pub id: String,
    /// Status before.
    pub from: NodeStatus,
    /// Status after.
    pub to: NodeStatus,
}

/// The registry state. The adapter loads it from its store, calls one method, and stores what
/// changed (the whole node that a method returns).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    nodes: BTreeMap<String, Node>,
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding these nodes (loaded from a store).
    #[must_use]
    pub fn from_nodes(nodes: impl IntoIterator<Item = Node>) -> Self {
        Self {
            nodes: nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
        }
    }

    /// Every node, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// The node with this id.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// The node with this name.
    #[must_use]
    pub fn by_name(&self, name: &str) -> Option<&Node> {
        self.nodes.values().find(|n| n.name == name)
    }

    /// Registers (or re-registers) a node (spec §4.3, §4.4), after the API layer checked the
    /// tokens. Validation order: node type, name, address for backends, lengths. A new name
    /// starts `healthy` with `auto_approve`, else `pending`; a known name keeps its id and
    /// becomes `healthy` only if it is approved (or `auto_approve` is on) — never because its
    /// stored status is something other than `pending` (LocalAI's bypass, §8.4).
    ///
    /// # Errors
    /// The [`NodeError`] of the first rule the body breaks.
    pub fn register(
        &mut self,
        body: &RegisterBody,
        now: u64,
        auto_approve: bool,
        new_id: impl FnOnce() -> String,
    ) -> Result<Registered, NodeError> {
        let node_type = if body.node_type.is_empty() {
            NodeType::Backend
        } else {
            body.node_type
                .parse::<NodeType>()
                .map_err(|_| NodeError::InvalidNodeType(body.node_type.clone()))?
        };
        if body.name.is_empty() {
            return Err(NodeError::NameRequired);
        }
        if node_type == NodeType::Backend && body.address.is_empty() {
            return Err(NodeError::AddressRequired);
        }
        if body.name.len() > MAX_NAME {
            return Err(NodeError::NameTooLong);
        }
        if body.address.len() > MAX_ADDRESS {
            return Err(NodeError::AddressTooLong);
        }
        if body.http_address.len() > MAX_ADDRESS {
            return Err(NodeError::HttpAddressTooLong);
        }
        let resources = resources_of(body);
        if let Some(existing) = self.nodes.values_mut().find(|n| n.name == body.name) {
            existing.approved |= auto_approve;
            existing.status = if existing.approved {
                NodeStatus::Healthy
            } else {
                NodeStatus::Pending
            };
            existing.node_type = node_type.as_str().to_owned();
            existing.address.clone_from(&body.address);
            existing.http_address.clone_from(&body.http_address);
            existing
                .labels
                .extend(body.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            existing.resources.extend(resources);
            existing.last_heartbeat = now;
            return Ok(Registered {
                node: existing.clone(),
                created: false,
            });
        }
        let node = Node {
            id: new_id(),
            name: body.name.clone(),
            node_type: node_type.as_str().to_owned(),
            status: if auto_approve {
                NodeStatus::Healthy
            } else {
                NodeStatus::Pending
            },
            approved: auto_approve,
            address: body.address.clone(),
            http_address: body.http_address.clone(),
            labels: body.labels.clone(),
            resources,
            created_at: now,
            last_heartbeat: now,
        };
        self.nodes.insert(node.id.clone(), node.clone());
        Ok(Registered {
            node,
            created: true,
        })
    }

    /// Approves a pending node (admin route).
    ///
    /// # Errors
    /// [`NodeError::NotPending`] when the node is unknown or not pending.
    pub fn approve(&mut self, id: &str) -> Result<&Node, NodeError> {
        let node = self.nodes.get_mut(id).ok_or(NodeError::NotPending)?;
        if node.status != NodeStatus::Pending && node.approved {
            return Err(NodeError::NotPending);
        }
        node.approved = true;
        if matches!(node.status, NodeStatus::Pending) {
            node.status = NodeStatus::Healthy;
        }
        Ok(node)
    }

    /// Records a heartbeat (spec §4.5): a pending or offline node only refreshes its
    /// `last_heartbeat`; others also update their figures.
    ///
    /// # Errors
    /// [`NodeError::NotFound`].
    pub fn heartbeat(
        &mut self,
        id: &str,
        body: &HeartbeatBody,
        now: u64,
    ) -> Result<&Node, NodeError> {
        let node = self.nodes.get_mut(id).ok_or(NodeError::NotFound)?;
        node.last_heartbeat = now;
        if !matches!(node.status, NodeStatus::Pending | NodeStatus::Offline) {
            for (field, value) in [
                ("available_vram", body.available_vram),
                ("total_vram", body.total_vram),
                ("available_ram", body.available_ram),
                ("available_disk", body.available_disk),
                ("total_disk", body.total_disk),
            ] {
                if let Some(value) = value {
                    node.resources.insert(field.to_owned(), value);
                }
            }
        }
        Ok(node)
    }

    /// Marks a node draining.
    ///
    /// # Errors
    /// [`NodeError::NotFound`].
    pub fn drain(&mut self, id: &str) -> Result<&Node, NodeError> {
        let node = self.nodes.get_mut(id).ok_or(NodeError::NotFound)?;
        node.status = NodeStatus::Draining;
        Ok(node)
    }

    /// Resumes a node: healthy again, but only if it was approved (D12).
    ///
    /// # Errors
    /// [`NodeError::NotFound`], [`NodeError::AwaitingApproval`].
    pub fn resume(&mut self, id: &str) -> Result<&Node, NodeError> {
        let node = self.nodes.get_mut(id).ok_or(NodeError::NotFound)?;
        if !node.approved {
            return Err(NodeError::AwaitingApproval);
        }
        node.status = NodeStatus::Healthy;
        Ok(node)
    }

    /// Marks a node offline (deregistration keeps the row, as LocalAI does).
    ///
    /// # Errors
    /// [`NodeError::NotFound`].
    pub fn deregister(&mut self, id: &str) -> Result<&Node, NodeError> {
        let node = self.nodes.get_mut(id).ok_or(NodeError::NotFound)?;
        node.status = NodeStatus::Offline;
        Ok(node)
    }

    /// Deletes a node for good (admin route).
    ///
    /// # Errors
    /// [`NodeError::NotFound`].
    pub fn delete(&mut self, id: &str) -> Result<Node, NodeError> {
        self.nodes.remove(id).ok_or(NodeError::NotFound)
    }

    /// The health monitor (spec §4.5): a node silent for more than `stale_after` seconds is
    /// marked offline (draining, offline and unhealthy nodes are left alone); an offline or
    /// unhealthy node with a fresh heartbeat is healthy again — only if it was approved.
    pub fn sweep(&mut self, now: u64, stale_after: u64) -> Vec<Transition> {
        let mut changes = Vec::new();
        for node in self.nodes.values_mut() {
            let stale = now.saturating_sub(node.last_heartbeat) > stale_after;
            let from = node.status;
            let to = match (from, stale) {
                (NodeStatus::Pending | NodeStatus::Healthy, true) => NodeStatus::Offline,
                (NodeStatus::Offline | NodeStatus::Unhealthy, false) if node.approved => {
                    NodeStatus::Healthy
                }
                _ => continue,
            };
            node.status = to;
            changes.push(Transition {
                id: node.id.clone(),
                from,
                to,
            });
        }
        changes
    }
}

fn resources_of(body: &RegisterBody) -> BTreeMap<String, u64> {
    [
        ("total_vram", body.total_vram),
        ("available_vram", body.available_vram),
        ("total_ram", body.total_ram),
        ("available_ram", body.available_ram),
        ("total_disk", body.total_disk),
        ("available_disk", body.available_disk),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
    .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn body(name: &str) -> RegisterBody {
        RegisterBody {
            name: name.into(),
            address: "10.0.0.1:50051".into(),
            ..RegisterBody::default()
        }
    }

    fn id(n: &str) -> impl FnOnce() -> String + '_ {
        move || n.to_owned()
    }

    #[test]
    fn validation_order_and_texts_4_3() {
        let mut r = Registry::new();
        let mut b = body("");
        b.node_type = "gpu".into();
        assert_eq!(
            r.register(&b, 0, true, id("x")).unwrap_err().to_string(),
            "invalid node_type \"gpu\"; must be \"backend\" or \"agent\""
        );
        b.node_type.clear();
        assert_eq!(
            r.register(&b, 0, true, id("x")),
            Err(NodeError::NameRequired)
        );
        let mut b = body("n");
        b.address.clear();
        assert_eq!(
            r.register(&b, 0, true, id("x")),
            Err(NodeError::AddressRequired)
        );
        b.node_type = "agent".into();
        assert!(
            r.register(&b, 0, true, id("x")).is_ok(),
            "agents need no address"
        );
        assert_eq!(
            r.register(&body(&"n".repeat(256)), 0, true, id("y")),
            Err(NodeError::NameTooLong)
        );
        assert!(
            r.register(&body(&"n".repeat(255)), 0, true, id("z"))
                .is_ok()
        );
        let mut b = body("m");
        b.http_address = "h".repeat(513);
        assert_eq!(
            r.register(&b, 0, true, id("w")),
            Err(NodeError::HttpAddressTooLong)
        );
    }

    #[test]
    fn pending_then_approved_keeps_the_id() {
        let mut r = Registry::new();
        let first = r.register(&body("gpu1"), 1, false, id("n1")).unwrap();
        assert!(first.created);
        assert_eq!(first.node.status, NodeStatus::Pending);
        let again = r
            .register(&body("gpu1"), 2, false, || {
                unreachable!("same name keeps its id")
            })
            .unwrap();
        assert_eq!(
            (again.node.id.as_str(), again.node.status),
            ("n1", NodeStatus::Pending)
        );
        r.approve("n1").unwrap();
        assert_eq!(r.get("n1").unwrap().status, NodeStatus::Healthy);
        assert_eq!(r.approve("n1"), Err(NodeError::NotPending));
        let again = r.register(&body("gpu1"), 3, false, id("zz")).unwrap();
        assert_eq!(again.node.status, NodeStatus::Healthy);
    }

    #[test]
    fn no_approval_bypass_d12() {
        let mut r = Registry::new();
        r.register(&body("gpu1"), 0, false, id("n1")).unwrap();
        assert_eq!(r.resume("n1"), Err(NodeError::AwaitingApproval));
        r.drain("n1").unwrap();
        r.deregister("n1").unwrap();
        let again = r.register(&body("gpu1"), 1, false, id("zz")).unwrap();
        assert_eq!(
            again.node.status,
            NodeStatus::Pending,
            "re-registration is no bypass"
        );
        r.sweep(100, 60);
        assert_eq!(r.get("n1").unwrap().status, NodeStatus::Offline);
        r.heartbeat("n1", &HeartbeatBody::default(), 101).unwrap();
        r.sweep(102, 60);
        assert_eq!(
            r.get("n1").unwrap().status,
            NodeStatus::Offline,
            "a fresh heartbeat does not approve"
        );
    }

    #[test]
    fn stale_nodes_go_offline_and_recover_when_approved() {
        let mut r = Registry::new();
        r.register(&body("gpu1"), 0, true, id("n1")).unwrap();
        assert!(
            r.sweep(60, 60).is_empty(),
            "not stale at exactly the threshold"
        );
        let changes = r.sweep(61, 60);
        assert_eq!(changes[0].to, NodeStatus::Offline);
        r.heartbeat("n1", &HeartbeatBody::default(), 70).unwrap();
        assert_eq!(r.sweep(71, 60)[0].to, NodeStatus::Healthy);
        r.drain("n1").unwrap();
        assert!(
            r.sweep(1000, 60).is_empty(),
            "draining nodes are left alone"
        );
    }

    #[test]
    fn heartbeats_of_unknown_ids_are_not_found_and_pending_nodes_keep_figures() {
        let mut r = Registry::new();
        assert_eq!(
            r.heartbeat("nope", &HeartbeatBody::default(), 0),
            Err(NodeError::NotFound)
        );
        r.register(&body("gpu1"), 0, false, id("n1")).unwrap();
        let hb = HeartbeatBody {
            available_ram: Some(5),
            ..HeartbeatBody::default()
        };
        let node = r.heartbeat("n1", &hb, 9).unwrap();
        assert_eq!(node.last_heartbeat, 9);
        assert!(!node.resources.contains_key("available_ram"));
    }

    #[test]
    fn labels_merge_on_re_registration() {
        let mut r = Registry::new();
        let mut b = body("gpu1");
        b.labels.insert("ui".into(), "kept".into());
        r.register(&b, 0, true, id("n1")).unwrap();
        let mut b = body("gpu1");
        b.labels.insert("zone".into(), "a".into());
        let node = r.register(&b, 1, true, id("x")).unwrap().node;
        assert_eq!(node.labels.get("ui").map(String::as_str), Some("kept"));
        assert_eq!(node.labels.get("zone").map(String::as_str), Some("a"));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Register(u8, bool),
        Approve(u8),
        Heartbeat(u8),
        Drain(u8),
        Resume(u8),
        Deregister(u8),
        Sweep(u16),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, any::<bool>()).prop_map(|(n, a)| Op::Register(n, a)),
            (0u8..3).prop_map(Op::Approve),
            (0u8..3).prop_map(Op::Heartbeat),
            (0u8..3).prop_map(Op::Drain),
            (0u8..3).prop_map(Op::Resume),
            (0u8..3).prop_map(Op::Deregister),
            (0u16..200).prop_map(Op::Sweep),
        ]
    }

    proptest! {
        /// No sequence of registrations, heartbeats, drains, resumes, deregistrations and health
        /// sweeps makes a node healthy unless it was approved (D12).
        #[test]
        fn healthy_implies_approved(ops in proptest::collection::vec(arb_op(), 1..60)) {
            let mut r = Registry::new();
            let mut now = 0u64;
            let mut approved_by_admin = std::collections::HashSet::new();
            for op in ops {
                now += 1;
                let name = |n: u8| format!("node{n}");
                let idn = |n: u8| format!("id{n}");
                match op {
                    Op::Register(n, auto) => {
                        let _ = r.register(&body(&name(n)), now, auto, || idn(n));
                        if auto { approved_by_admin.insert(idn(n)); }
                    }
                    Op::Approve(n) => if r.approve(&idn(n)).is_ok() { approved_by_admin.insert(idn(n)); },
                    Op::Heartbeat(n) => { let _ = r.heartbeat(&idn(n), &HeartbeatBody::default(), now); }
                    Op::Drain(n) => { let _ = r.drain(&idn(n)); }
                    Op::Resume(n) => { let _ = r.resume(&idn(n)); }
                    Op::Deregister(n) => { let _ = r.deregister(&idn(n)); }
                    Op::Sweep(dt) => { now += u64::from(dt); r.sweep(now, 60); }
                }
                for node in r.nodes() {
                    if node.status == NodeStatus::Healthy {
                        prop_assert!(approved_by_admin.contains(&node.id), "{node:?}");
                    }
                }
            }
        }
    }
}
