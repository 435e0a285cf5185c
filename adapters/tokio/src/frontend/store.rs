//! Where the registry lives between restarts: a small store trait, an embedded SQLite file by
//! default, and memory for tests. A PostgreSQL store (LocalAI's choice) implements the same
//! two methods.

use std::path::Path;
use std::sync::Mutex;

use nodegate_core::nodes::api::Change;
use nodegate_core::nodes::registry::Node;

/// A store of registered nodes.
pub trait RegistryStore: Send + Sync {
    /// Every stored node.
    ///
    /// # Errors
    /// The store cannot be read.
    fn load(&self) -> Result<Vec<Node>, StoreError>;

    /// Applies the changes of one request, all or nothing.
    ///
    /// # Errors
    /// The store cannot be written; the request must then fail (nothing is answered as done
    /// that was not stored).
    fn apply(&self, changes: &[Change]) -> Result<(), StoreError>;
}

/// A store failure (no secret in it: nodes hold none).
#[derive(Debug, thiserror::Error)]
#[error("registry store: {0}")]
pub struct StoreError(String);

/// Nodes kept in memory only (tests, throw-away frontends).
#[derive(Debug, Default)]
pub struct MemoryStore {
    nodes: Mutex<Vec<Node>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl RegistryStore for MemoryStore {
    fn load(&self) -> Result<Vec<Node>, StoreError> {
        Ok(self
            .nodes
            .lock()
            .map_err(|_| StoreError("poisoned".into()))?
            .clone())
    }

    fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut nodes = self
            .nodes
            .lock()
            .map_err(|_| StoreError("poisoned".into()))?;
        for change in changes {
            match change {
                Change::Upsert(node) => {
                    nodes.retain(|n| n.id != node.id);
                    nodes.push(node.clone());
                }
                Change::Delete(id) => nodes.retain(|n| &n.id != id),
            }
        }
        Ok(())
    }
}

/// Nodes in an embedded SQLite file: one row per node, its JSON beside its id and name.
pub struct SqliteStore {
    connection: Mutex<rusqlite::Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the file, with the table in place.
    ///
    /// # Errors
    /// The file cannot be opened or is not a registry.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = rusqlite::Connection::open(path)
            .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS nodes (
                     id   TEXT PRIMARY KEY,
                     name TEXT NOT NULL UNIQUE,
                     node TEXT NOT NULL
                 );",
            )
            .map_err(|e| StoreError(format!("preparing {}: {e}", path.display())))?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }
}

impl RegistryStore for SqliteStore {
    fn load(&self) -> Result<Vec<Node>, StoreError> {
        let connection = self
            .connection
            .lock()
            .map_err(|_| StoreError("poisoned".into()))?;
        let mut statement = connection
            .prepare("SELECT node FROM nodes ORDER BY id")
            .map_err(|e| StoreError(e.to_string()))?;
        let rows = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| StoreError(e.to_string()))?;
        let mut nodes = Vec::new();
        for row in rows {
            let text = row.map_err(|e| StoreError(e.to_string()))?;
            nodes.push(
                serde_json::from_str(&text)
                    .map_err(|e| StoreError(format!("a stored node is unreadable: {e}")))?,
            );
        }
        Ok(nodes)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut connection = self
            .connection
            .lock()
            .map_err(|_| StoreError("poisoned".into()))?;
        let tx = connection
            .transaction()
            .map_err(|e| StoreError(e.to_string()))?;
        for change in changes {
            match change {
                Change::Upsert(node) => {
                    let json =
                        serde_json::to_string(node).map_err(|e| StoreError(e.to_string()))?;
                    tx.execute(
                        "INSERT INTO nodes (id, name, node) VALUES (?1, ?2, ?3)
                         ON CONFLICT(id) DO UPDATE SET name = excluded.name, node = excluded.node",
                        rusqlite::params![node.id, node.name, json],
                    )
                    .map_err(|e| StoreError(e.to_string()))?;
                }
                Change::Delete(id) => {
                    tx.execute("DELETE FROM nodes WHERE id = ?1", rusqlite::params![id])
                        .map_err(|e| StoreError(e.to_string()))?;
                }
            }
        }
        tx.commit().map_err(|e| StoreError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nodegate_core::nodes::registry::NodeStatus;

    use super::*;

    fn node(id: &str, name: &str) -> Node {
        Node {
            id: id.into(),
            name: name.into(),
            node_type: "backend".into(),
            status: NodeStatus::Healthy,
            approved: true,
            address: "a:1".into(),
            http_address: String::new(),
            labels: BTreeMap::new(),
            resources: BTreeMap::new(),
            created_at: 1,
            last_heartbeat: 2,
        }
    }

    #[test]
    fn sqlite_keeps_nodes_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        let store = SqliteStore::open(&path).unwrap();
        store
            .apply(&[
                Change::Upsert(node("n1", "gpu1")),
                Change::Upsert(node("n2", "gpu2")),
            ])
            .unwrap();
        let mut changed = node("n1", "gpu1");
        changed.status = NodeStatus::Offline;
        store
            .apply(&[Change::Upsert(changed.clone()), Change::Delete("n2".into())])
            .unwrap();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.load().unwrap(), vec![changed]);
    }

    #[test]
    fn memory_store_applies_changes() {
        let store = MemoryStore::new();
        store.apply(&[Change::Upsert(node("n1", "a"))]).unwrap();
        store.apply(&[Change::Delete("n1".into())]).unwrap();
        assert!(store.load().unwrap().is_empty());
    }
}
