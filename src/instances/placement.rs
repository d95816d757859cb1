//! Placement: which nodes have room for a spec, and which GPU indices an
//! instance gets. Pure: it takes a capacity snapshot and returns a choice; the
//! caller takes the snapshot and records the choice in one write transaction,
//! so concurrent creates can never place more than a node holds.

use crate::ids::NodeId;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Capacity {
    pub gpus: i64,
    pub cpu_cores: i64,
    pub memory_gb: i64,
    pub system_disk_gb: i64,
    pub data_disk_gb: i64,
}

impl Capacity {
    pub fn minus(self, o: Capacity) -> Capacity {
        Capacity {
            gpus: self.gpus - o.gpus,
            cpu_cores: self.cpu_cores - o.cpu_cores,
            memory_gb: self.memory_gb - o.memory_gb,
            system_disk_gb: self.system_disk_gb - o.system_disk_gb,
            data_disk_gb: self.data_disk_gb - o.data_disk_gb,
        }
    }

    /// The first resource that `self` (free) lacks for `need`.
    pub fn shortfall(&self, need: &Capacity) -> Option<&'static str> {
        self.short(need).map(|s| s.what)
    }

    /// The first resource that `self` (free) lacks for `need`, with both
    /// figures.
    pub fn short(&self, need: &Capacity) -> Option<Short> {
        [
            ("gpu_count", self.gpus, need.gpus),
            ("cpu_cores", self.cpu_cores, need.cpu_cores),
            ("memory_gb", self.memory_gb, need.memory_gb),
            ("system_disk_gb", self.system_disk_gb, need.system_disk_gb),
            ("data_disk_gb", self.data_disk_gb, need.data_disk_gb),
        ]
        .into_iter()
        .find(|(_, free, need)| free < need)
        .map(|(what, free, need)| Short {
            what,
            need,
            free: free.max(0),
        })
    }
}

/// A listed, online node with what its instances hold.
#[derive(Debug, Clone)]
pub struct NodeSnapshot {
    pub id: NodeId,
    pub name: String,
    pub gpu_name: String,
    pub total: Capacity,
    pub used: Capacity,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub gpu_model: String,
    pub need: Capacity,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub node_id: NodeId,
    pub name: String,
    pub gpu_name: String,
    /// What stays free on the node before this request.
    pub free: Capacity,
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A spec's GPU model matches a node's GPU name when the name contains it,
/// ignoring case and spacing ("RTX 4090" matches "NVIDIA GeForce RTX 4090").
/// A spec without GPUs matches any node.
pub fn gpu_model_matches(req: &Request, node_gpu_name: &str) -> bool {
    if req.need.gpus == 0 {
        return true;
    }
    let (model, name) = (normalize(&req.gpu_model), normalize(node_gpu_name));
    !model.is_empty() && name.contains(&model)
}

/// Why a node cannot take a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoom {
    GpuModel,
    Short(&'static str),
}

pub fn fits(req: &Request, node: &NodeSnapshot) -> Result<Capacity, NoRoom> {
    if !gpu_model_matches(req, &node.gpu_name) {
        return Err(NoRoom::GpuModel);
    }
    let free = node.total.minus(node.used);
    match free.shortfall(&req.need) {
        Some(what) => Err(NoRoom::Short(what)),
        None => Ok(free),
    }
}

/// The nodes that can take `req`, with their free capacity, in node order.
pub fn candidates(req: &Request, nodes: &[NodeSnapshot]) -> Vec<Candidate> {
    nodes
        .iter()
        .filter_map(|n| {
            fits(req, n).ok().map(|free| Candidate {
                node_id: n.id,
                name: n.name.clone(),
                gpu_name: n.gpu_name.clone(),
                free,
            })
        })
        .collect()
}

/// A resource a node lacks: which (a spec field name), how much the spec
/// needs and how much is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Short {
    pub what: &'static str,
    pub need: i64,
    pub free: i64,
}

/// Why a node is not among a request's candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Refusal {
    /// Taken off the list by an admin.
    Unlisted,
    /// Its Docker daemon did not answer the last check.
    Offline,
    /// Its GPUs are another model (the node's GPU name).
    GpuModel(String),
    Short(Short),
}

/// Any node, listed or not, online or not: what the wizard explains.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub snapshot: NodeSnapshot,
    pub listed: bool,
    pub online: bool,
}

/// For every node that cannot take `req`, why (the first reason in the
/// order an admin would fix them: list it, bring it online, GPU model, the
/// first resource short), in node order.
pub fn refusals(req: &Request, nodes: &[NodeState]) -> Vec<(String, Refusal)> {
    nodes
        .iter()
        .filter_map(|n| {
            let why = if !n.listed {
                Refusal::Unlisted
            } else if !n.online {
                Refusal::Offline
            } else if !gpu_model_matches(req, &n.snapshot.gpu_name) {
                Refusal::GpuModel(n.snapshot.gpu_name.clone())
            } else {
                let free = n.snapshot.total.minus(n.snapshot.used);
                Refusal::Short(free.short(&req.need)?)
            };
            Some((n.snapshot.name.clone(), why))
        })
        .collect()
}

/// The `n` lowest GPU indices of `0..total` not in `used`, or `None` when
/// fewer are free. Specific indices, never a bare count: a count would give
/// every container the same first GPUs.
pub fn free_gpus(total: i64, used: &[i64], n: i64) -> Option<Vec<i64>> {
    let free: Vec<i64> = (0..total)
        .filter(|i| !used.contains(i))
        .take(n.max(0) as usize)
        .collect();
    (free.len() as i64 == n.max(0)).then_some(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(gpus: i64, cpu: i64, mem: i64, sys: i64, data: i64) -> Capacity {
        Capacity {
            gpus,
            cpu_cores: cpu,
            memory_gb: mem,
            system_disk_gb: sys,
            data_disk_gb: data,
        }
    }

    fn node(id: i64, gpu_name: &str, total: Capacity, used: Capacity) -> NodeSnapshot {
        NodeSnapshot {
            id: NodeId(id),
            name: format!("n{id}"),
            gpu_name: gpu_name.into(),
            total,
            used,
        }
    }

    #[test]
    fn the_seed_example_matches_by_model_and_every_resource() {
        // 4090 x2, 2 cores, 4 GB, 50 GB system, 50 GB data (seed 001's example).
        let req = Request {
            gpu_model: "RTX 4090".into(),
            need: cap(2, 2, 4, 50, 50),
        };
        let nodes = [
            node(
                1,
                "NVIDIA GeForce RTX 4090",
                cap(8, 64, 256, 1000, 4000),
                cap(6, 0, 0, 0, 0),
            ),
            node(
                2,
                "NVIDIA GeForce RTX 4090",
                cap(8, 64, 256, 1000, 4000),
                cap(7, 0, 0, 0, 0),
            ),
            node(
                3,
                "NVIDIA A100-SXM4-80GB",
                cap(8, 64, 256, 1000, 4000),
                cap(0, 0, 0, 0, 0),
            ),
            node(
                4,
                "nvidia geforce rtx  4090",
                cap(2, 2, 4, 50, 49),
                cap(0, 0, 0, 0, 0),
            ),
            node(5, "RTX 4090", cap(2, 2, 4, 50, 50), cap(0, 0, 0, 0, 0)),
        ];
        let got: Vec<_> = candidates(&req, &nodes).iter().map(|c| c.node_id).collect();
        assert_eq!(got, [NodeId(1), NodeId(5)]);
        assert_eq!(fits(&req, &nodes[1]), Err(NoRoom::Short("gpu_count")));
        assert_eq!(fits(&req, &nodes[2]), Err(NoRoom::GpuModel));
        assert_eq!(fits(&req, &nodes[3]), Err(NoRoom::Short("data_disk_gb")));
        assert_eq!(
            candidates(&req, &nodes)[0].free,
            cap(2, 64, 256, 1000, 4000)
        );
    }

    #[test]
    fn refusals_name_the_reason_for_each_node() {
        let state = |n: NodeSnapshot, listed, online| NodeState {
            snapshot: n,
            listed,
            online,
        };
        let total = cap(2, 16, 64, 100, 0);
        let nodes = vec![
            state(node(1, "RTX 4090", total, cap(0, 0, 0, 0, 0)), false, true),
            state(node(2, "RTX 4090", total, cap(0, 0, 0, 0, 0)), true, false),
            state(node(3, "A100", total, cap(0, 0, 0, 0, 0)), true, true),
            state(node(4, "RTX 4090", total, cap(0, 0, 0, 0, 0)), true, true),
            state(node(5, "RTX 4090", total, cap(0, 0, 0, 0, 0)), true, true),
        ];
        let req = Request {
            gpu_model: "RTX 4090".into(),
            need: cap(1, 4, 16, 50, 20),
        };
        let got = refusals(&req, &nodes);
        let why: Vec<&Refusal> = got.iter().map(|(_, w)| w).collect();
        let short = Refusal::Short(Short {
            what: "data_disk_gb",
            need: 20,
            free: 0,
        });
        assert_eq!(
            why,
            vec![
                &Refusal::Unlisted,
                &Refusal::Offline,
                &Refusal::GpuModel("A100".into()),
                &short,
                &short
            ]
        );
        let fits = Request {
            gpu_model: "RTX 4090".into(),
            need: cap(1, 4, 16, 50, 0),
        };
        assert_eq!(
            refusals(&fits, &nodes).len(),
            3,
            "nodes with room are not refused"
        );
    }

    #[test]
    fn specs_without_gpus_go_anywhere_with_room() {
        let req = Request {
            gpu_model: "any".into(),
            need: cap(0, 1, 1, 0, 0),
        };
        assert!(fits(&req, &node(1, "", cap(0, 2, 2, 0, 0), cap(0, 1, 1, 0, 0))).is_ok());
        assert_eq!(
            fits(&req, &node(1, "", cap(0, 2, 2, 0, 0), cap(0, 2, 0, 0, 0))),
            Err(NoRoom::Short("cpu_cores"))
        );
    }

    #[test]
    fn gpu_indices_are_specific_and_lowest_free() {
        assert_eq!(free_gpus(8, &[0, 1, 3], 2), Some(vec![2, 4]));
        assert_eq!(free_gpus(4, &[0, 1, 2], 2), None);
        assert_eq!(free_gpus(4, &[], 0), Some(vec![]));
        assert_eq!(free_gpus(0, &[], 1), None);
    }
}
