//! The dependency graph of a transaction history and the two algorithms run on it.
//!
//! Owns the edge list with each edge's evidence ([`Edge`]), its compressed adjacency form
//! ([`Graph`]), strongly connected components over a subset of edge kinds (Tarjan's algorithm,
//! iterative: no recursion, so a component of a million transactions costs no stack), and the
//! shortest cycle through a given edge inside one component (breadth-first search).

use serde::{Deserialize, Serialize};

/// Why one transaction must precede another.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// Write–write: `to` overwrote (or appended after) a version `from` installed.
    Ww,
    /// Write–read: `to` read a version `from` installed.
    Wr,
    /// Read–write (anti-dependency): `to` installed a version after the one `from` read.
    Rw,
    /// Process order: the same process ran `from`, completed it, then began `to`.
    Process,
    /// Real time: `from` completed before `to` was invoked.
    Realtime,
}

impl EdgeKind {
    pub(crate) const fn bit(self) -> u8 {
        match self {
            EdgeKind::Ww => 1,
            EdgeKind::Wr => 2,
            EdgeKind::Rw => 4,
            EdgeKind::Process => 8,
            EdgeKind::Realtime => 16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EdgeKind::Ww => "ww",
            EdgeKind::Wr => "wr",
            EdgeKind::Rw => "rw",
            EdgeKind::Process => "process",
            EdgeKind::Realtime => "realtime",
        }
    }
}

pub(crate) const WW: u8 = 1;
pub(crate) const WR: u8 = 2;
pub(crate) const RW: u8 = 4;
pub(crate) const PROC: u8 = 8;
pub(crate) const RT: u8 = 16;
pub(crate) const DATA: u8 = WW | WR | RW;

/// One inferred edge with its evidence: `key` and `value` name the version involved (ww: the
/// value `to` wrote, `prev` the one `from` wrote; wr: the value read; rw: the value `to` wrote
/// that `from` did not see). Process and realtime edges carry no key (`u32::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Edge {
    pub from: u32,
    pub to: u32,
    pub kind: EdgeKind,
    pub key: u32,
    pub value: i64,
    pub prev: i64,
}

impl Edge {
    pub fn new(from: usize, to: usize, kind: EdgeKind, key: u32, value: i64, prev: i64) -> Edge {
        Edge { from: from as u32, to: to as u32, kind, key, value, prev }
    }

    pub fn order(from: usize, to: usize, kind: EdgeKind) -> Edge {
        Edge::new(from, to, kind, u32::MAX, 0, 0)
    }
}

/// Edges grouped by source: the out-edges of `n` are `edges[start[n]..start[n + 1]]`.
pub(crate) struct Graph {
    pub nodes: usize,
    pub start: Vec<u32>,
    pub edges: Vec<Edge>,
}

impl Graph {
    /// Sorts and deduplicates (one edge per source, target and kind: the first evidence kept).
    pub fn new(nodes: usize, mut edges: Vec<Edge>) -> Graph {
        edges.sort_by_key(|e| (e.from, e.to, e.kind));
        edges.dedup_by_key(|e| (e.from, e.to, e.kind));
        let mut start = vec![0u32; nodes + 1];
        for e in &edges {
            start[e.from as usize + 1] += 1;
        }
        for i in 0..nodes {
            start[i + 1] += start[i];
        }
        Graph { nodes, start, edges }
    }

    pub fn out(&self, n: usize) -> std::ops::Range<usize> {
        self.start[n] as usize..self.start[n + 1] as usize
    }

    pub fn count(&self, kind: EdgeKind) -> usize {
        self.edges.iter().filter(|e| e.kind == kind).count()
    }
}

/// Strongly connected components over the edges whose kind is in `mask`.
pub(crate) struct Sccs {
    /// Component of each node.
    pub comp: Vec<u32>,
    /// The components with more than one node (only those can hold a cycle: no self-edges).
    pub nontrivial: Vec<u32>,
}

const UNSEEN: u32 = u32::MAX;

/// Tarjan's algorithm with an explicit stack of (node, next out-edge) frames.
pub(crate) fn sccs(g: &Graph, mask: u8) -> Sccs {
    let mut t = Tarjan::new(g, mask);
    for root in 0..g.nodes {
        if t.index[root] == UNSEEN {
            t.search_from(root);
        }
    }
    Sccs { comp: t.comp, nontrivial: t.nontrivial }
}

/// The state of Tarjan's algorithm over the edges of `g` whose kind is in `mask`.
struct Tarjan<'g> {
    g: &'g Graph,
    mask: u8,
    /// Discovery index of each node (`UNSEEN` before its visit).
    index: Vec<u32>,
    /// Lowest index reachable from each node's subtree through one back edge.
    low: Vec<u32>,
    on_stack: Vec<bool>,
    /// Component of each node (`UNSEEN` until its component is popped).
    comp: Vec<u32>,
    /// Tarjan's stack of visited nodes not yet assigned a component.
    stack: Vec<u32>,
    /// The depth-first path: (node, next out-edge to look at).
    frames: Vec<(u32, usize)>,
    next_index: u32,
    comps: u32,
    nontrivial: Vec<u32>,
}

impl<'g> Tarjan<'g> {
    /// Nothing visited yet.
    fn new(g: &'g Graph, mask: u8) -> Self {
        let n = g.nodes;
        Tarjan {
            g,
            mask,
            index: vec![UNSEEN; n],
            low: vec![0u32; n],
            on_stack: vec![false; n],
            comp: vec![UNSEEN; n],
            stack: Vec::new(),
            frames: Vec::new(),
            next_index: 0,
            comps: 0,
            nontrivial: Vec::new(),
        }
    }

    /// Numbers node `w` and pushes it onto Tarjan's stack and the depth-first path.
    fn visit(&mut self, w: usize) {
        self.index[w] = self.next_index;
        self.low[w] = self.next_index;
        self.next_index += 1;
        self.stack.push(w as u32);
        self.on_stack[w] = true;
        self.frames.push((w as u32, self.g.start[w] as usize));
    }

    /// The depth-first search from the unvisited node `root`, popping every component found.
    fn search_from(&mut self, root: usize) {
        self.visit(root);
        while let Some(&(v, ei)) = self.frames.last() {
            let v = v as usize;
            match self.next_unseen(v, ei) {
                Some(w) => self.visit(w),
                None => self.finish(v),
            }
        }
    }

    /// Scans `v`'s out-edges from `ei` on, lowering `low[v]` over edges to nodes on the
    /// stack, up to the first edge to an unvisited node: that node, if any. Records in `v`'s
    /// frame where the scan stopped.
    fn next_unseen(&mut self, v: usize, mut ei: usize) -> Option<usize> {
        let end = self.g.start[v + 1] as usize;
        let mut found = None;
        while ei < end {
            let e = &self.g.edges[ei];
            ei += 1;
            if e.kind.bit() & self.mask == 0 {
                continue;
            }
            let w = e.to as usize;
            if self.index[w] == UNSEEN {
                found = Some(w);
                break;
            } else if self.on_stack[w] {
                self.low[v] = self.low[v].min(self.index[w]);
            }
        }
        let top = self.frames.len() - 1;
        self.frames[top].1 = ei;
        found
    }

    /// Leaves `v` (all its edges seen): passes its `low` to its parent and pops its
    /// component if `v` is the component's root.
    fn finish(&mut self, v: usize) {
        self.frames.pop();
        if let Some(&(parent, _)) = self.frames.last() {
            let p = parent as usize;
            self.low[p] = self.low[p].min(self.low[v]);
        }
        if self.low[v] == self.index[v] {
            pop_component(v, &mut self.stack, &mut self.on_stack, &mut self.comp, self.comps, &mut self.nontrivial);
            self.comps += 1;
        }
    }
}

/// Pops the component rooted at `v` off Tarjan's stack, numbering it `c`.
fn pop_component(
    v: usize,
    stack: &mut Vec<u32>,
    on_stack: &mut [bool],
    comp: &mut [u32],
    c: u32,
    nontrivial: &mut Vec<u32>,
) {
    let mut size = 0;
    while let Some(w) = stack.pop() {
        on_stack[w as usize] = false;
        comp[w as usize] = c;
        size += 1;
        if w as usize == v {
            break;
        }
    }
    if size > 1 {
        nontrivial.push(c);
    }
}

/// Reusable scratch space for breadth-first searches over a graph.
pub(crate) struct Bfs {
    stamp: Vec<u32>,
    parent: Vec<u32>,
    prev_state: Vec<u32>,
    round: u32,
    queue: std::collections::VecDeque<u32>,
    /// Edges examined so far, over all searches (the search budget counts these).
    pub steps: u64,
}

impl Bfs {
    pub fn new(nodes: usize) -> Bfs {
        Bfs {
            stamp: vec![0; nodes],
            parent: vec![0; nodes],
            prev_state: Vec::new(),
            round: 0,
            queue: Default::default(),
            steps: 0,
        }
    }

    /// The shortest cycle that begins with edge `first` and continues over edges of kinds in
    /// `mask` whose both ends are in component `c` of `comp`: the edge indices, in order.
    pub fn cycle_through(&mut self, g: &Graph, first: usize, mask: u8, comp: &[u32], c: u32) -> Option<Vec<usize>> {
        let (a, b) = (g.edges[first].from as usize, g.edges[first].to as usize);
        self.round += 1;
        self.queue.clear();
        self.stamp[b] = self.round;
        self.queue.push_back(b as u32);
        while let Some(v) = self.queue.pop_front() {
            let v = v as usize;
            if v == a {
                let mut path = Vec::new();
                let mut x = a;
                while x != b {
                    let ei = self.parent[x] as usize;
                    path.push(ei);
                    x = g.edges[ei].from as usize;
                }
                path.push(first);
                path.reverse();
                return Some(path);
            }
            for ei in g.out(v) {
                self.steps += 1;
                let e = &g.edges[ei];
                let w = e.to as usize;
                if e.kind.bit() & mask == 0 || comp[w] != c || self.stamp[w] == self.round {
                    continue;
                }
                self.stamp[w] = self.round;
                self.parent[w] = ei as u32;
                self.queue.push_back(w as u32);
            }
        }
        None
    }
}

impl Bfs {
    /// A simple cycle that begins with rw edge `first`, continues over data edges inside
    /// component `c`, never takes two rw edges in a row, and returns over a non-rw edge (so
    /// no two of its rw edges are adjacent, the first included): a G-nonadjacent witness.
    /// Breadth-first over (transaction, was the last edge rw) states; when the shortest such
    /// walk repeats a transaction it is not a cycle, and the answer is `None` (so this search
    /// is sound, not complete).
    pub fn nonadjacent_cycle(&mut self, g: &Graph, first: usize, comp: &[u32], c: u32) -> Option<Vec<usize>> {
        let (a, b) = (g.edges[first].from as usize, g.edges[first].to as usize);
        let n = g.nodes;
        self.stamp.resize(2 * n, 0);
        self.parent.resize(2 * n, 0);
        self.prev_state.resize(2 * n, 0);
        self.round += 1;
        self.queue.clear();
        let start = n + b; // a state is a node, plus n when the last edge was rw
        self.stamp[start] = self.round;
        self.queue.push_back(start as u32);
        while let Some(sx) = self.queue.pop_front() {
            let sx = sx as usize;
            if sx == a {
                return self.simple_cycle(g, first, a, start);
            }
            let (v, last_rw) = (sx % n, sx >= n);
            for ei in g.out(v) {
                self.steps += 1;
                let e = &g.edges[ei];
                let rw = e.kind == EdgeKind::Rw;
                let w = e.to as usize;
                if e.kind.bit() & DATA == 0 || comp[w] != c || (rw && last_rw) {
                    continue;
                }
                let next = if rw { n + w } else { w };
                if self.stamp[next] != self.round {
                    self.stamp[next] = self.round;
                    self.parent[next] = ei as u32;
                    self.prev_state[next] = sx as u32;
                    self.queue.push_back(next as u32);
                }
            }
        }
        None
    }

    /// The edges from `start` to `goal` by parent pointers, after `first`, if no transaction
    /// repeats.
    fn simple_cycle(&self, g: &Graph, first: usize, goal: usize, start: usize) -> Option<Vec<usize>> {
        let mut path = vec![];
        let mut seen = rustc_hash::FxHashSet::default();
        seen.insert(g.edges[first].from);
        let mut sx = goal;
        while sx != start {
            let ei = self.parent[sx] as usize;
            path.push(ei);
            if !seen.insert(g.edges[ei].from) {
                return None;
            }
            sx = self.prev_state[sx] as usize;
        }
        path.push(first);
        path.reverse();
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: usize, edges: &[(usize, usize, EdgeKind)]) -> Graph {
        Graph::new(n, edges.iter().map(|&(a, b, k)| Edge::order(a, b, k)).collect())
    }

    #[test]
    fn components_and_cycles() {
        use EdgeKind::*;
        // 0 -> 1 -> 2 -> 0 (ww, wr, rw), 2 -> 3, 3 alone; 4 <-> 5 by process only.
        let gr = g(6, &[(0, 1, Ww), (1, 2, Wr), (2, 0, Rw), (2, 3, Ww), (4, 5, Process), (5, 4, Process)]);
        let s = sccs(&gr, DATA);
        assert_eq!(s.nontrivial.len(), 1);
        assert_eq!(s.comp[0], s.comp[2]);
        assert_ne!(s.comp[0], s.comp[3]);
        assert_ne!(s.comp[4], s.comp[5]);
        let ww_only = sccs(&gr, WW);
        assert!(ww_only.nontrivial.is_empty());
        let first = gr.edges.iter().position(|e| e.kind == Rw).unwrap();
        let c = s.comp[0];
        let cyc = Bfs::new(6).cycle_through(&gr, first, DATA, &s.comp, c).unwrap();
        let kinds: Vec<EdgeKind> = cyc.iter().map(|&i| gr.edges[i].kind).collect();
        assert_eq!(kinds, vec![Rw, Ww, Wr]);
        assert_eq!(sccs(&gr, PROC).nontrivial.len(), 1);
    }

    #[test]
    fn a_long_ring_needs_no_recursion() {
        let n = 300_000;
        let edges: Vec<(usize, usize, EdgeKind)> = (0..n).map(|i| (i, (i + 1) % n, EdgeKind::Rw)).collect();
        let gr = g(n, &edges);
        let s = sccs(&gr, DATA);
        assert_eq!(s.nontrivial.len(), 1);
        let cyc = Bfs::new(n).cycle_through(&gr, 0, DATA, &s.comp, s.comp[0]).unwrap();
        assert_eq!(cyc.len(), n);
    }
}
