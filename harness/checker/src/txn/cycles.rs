//! Cycle search and classification over the dependency graph.
//!
//! Stages, each over the strongly connected components of a subgraph, one witness cycle per
//! component (the shortest through a chosen edge, by breadth-first search inside the
//! component, so a component of any size costs linear time per witness):
//! 1. ww edges only: G0.
//! 2. ww + wr: a cycle through a wr edge: G1c.
//! 3. ww + wr + rw: for each rw edge of a component, a return path over ww/wr edges is a
//!    G-single; failing that, for each rw edge, a simple cycle with no two rw edges adjacent
//!    is a G-nonadjacent (`Bfs::nonadjacent_cycle`, sound but not complete). These two are
//!    the searches that can take time quadratic in the component, so they run under a step
//!    budget (when it runs out, that component's snapshot-isolation question is left
//!    undecided and reported). Failing both, any cycle through an rw edge: G2-item.
//! 4. Adding process edges: a cycle through a process edge joining two different stage-3
//!    components (so it needs process order): the `-process` variant of its shape.
//! 5. Adding realtime edges: likewise across stage-4 components: the `-realtime` variant.

use std::time::Instant;

use super::graph::{sccs, Bfs, EdgeKind, Graph, Sccs, DATA, PROC, RT, RW, WR, WW};
use super::models::{AnomalyKind, CycleScope, CycleShape};

pub(crate) struct Found {
    pub cycles: Vec<(AnomalyKind, Vec<usize>)>,
    /// Why the search stopped early, if it did.
    pub deadline_hit: bool,
    /// Components whose G-single search ran out of steps.
    pub g_single_undecided: usize,
    /// Nontrivial components of the whole graph, and the size of the largest.
    pub components: usize,
    pub largest_component: usize,
}

struct Search<'a> {
    g: &'a Graph,
    bfs: Bfs,
    deadline: Option<Instant>,
    steps_max: u64,
    members: Vec<Vec<u32>>,
    found: Found,
}

/// The shape of a cycle, from the kinds of its edges.
pub(crate) fn shape(g: &Graph, cycle: &[usize]) -> CycleShape {
    let kinds: Vec<EdgeKind> = cycle.iter().map(|&i| g.edges[i].kind).collect();
    let rw = kinds.iter().filter(|k| **k == EdgeKind::Rw).count();
    match rw {
        0 if kinds.iter().all(|k| *k != EdgeKind::Wr) => CycleShape::G0,
        0 => CycleShape::G1c,
        1 => CycleShape::GSingle,
        _ => {
            let n = kinds.len();
            let adjacent = (0..n).any(|i| kinds[i] == EdgeKind::Rw && kinds[(i + 1) % n] == EdgeKind::Rw);
            if adjacent {
                CycleShape::G2Item
            } else {
                CycleShape::GNonadjacent
            }
        }
    }
}

pub(crate) fn search(g: &Graph, deadline: Option<Instant>, steps_max: u64) -> Found {
    let mut s = Search {
        g,
        bfs: Bfs::new(g.nodes),
        deadline,
        steps_max,
        members: Vec::new(),
        found: Found {
            cycles: Vec::new(),
            deadline_hit: false,
            g_single_undecided: 0,
            components: 0,
            largest_component: 0,
        },
    };
    s.simple(WW, WW);
    s.simple(WW | WR, WR);
    let data = s.rw_stage();
    let with_process = s.extra_stage(&data, DATA | PROC, PROC, CycleScope::Process);
    let all = s.extra_stage(&with_process, DATA | PROC | RT, RT, CycleScope::Realtime);
    s.found.components = all.nontrivial.len();
    s.found.largest_component = s.members.iter().map(Vec::len).max().unwrap_or(0);
    s.found
}

impl Search<'_> {
    fn out_of_time(&mut self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.found.deadline_hit = true;
        }
        self.found.deadline_hit
    }

    fn components(&mut self, mask: u8) -> Sccs {
        let s = sccs(self.g, mask);
        self.members = s.nontrivial.iter().map(|_| Vec::new()).collect();
        let slot: rustc_hash::FxHashMap<u32, usize> = s.nontrivial.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        for (n, c) in s.comp.iter().enumerate() {
            if let Some(&i) = slot.get(c) {
                self.members[i].push(n as u32);
            }
        }
        s
    }

    /// The edges of kinds in `bits` with both ends in member list `i` of component `c`.
    fn inner_edges(&self, s: &Sccs, i: usize, bits: u8) -> Vec<usize> {
        let c = s.nontrivial[i];
        self.members[i]
            .iter()
            .flat_map(|&n| self.g.out(n as usize))
            .filter(|&ei| {
                let e = &self.g.edges[ei];
                e.kind.bit() & bits != 0 && s.comp[e.to as usize] == c
            })
            .collect()
    }

    /// Stages 1 and 2: one cycle through an edge of kind `through` per component of `mask`.
    fn simple(&mut self, mask: u8, through: u8) {
        let s = self.components(mask);
        for i in 0..s.nontrivial.len() {
            if self.out_of_time() {
                return;
            }
            let Some(&first) = self.inner_edges(&s, i, through).first() else {
                continue;
            };
            if let Some(cycle) = self.bfs.cycle_through(self.g, first, mask, &s.comp, s.nontrivial[i]) {
                let kind = AnomalyKind::cycle(shape(self.g, &cycle), CycleScope::Data);
                self.found.cycles.push((kind, cycle));
            }
        }
    }

    fn rw_stage(&mut self) -> Sccs {
        let s = self.components(DATA);
        for i in 0..s.nontrivial.len() {
            if self.out_of_time() {
                break;
            }
            let c = s.nontrivial[i];
            let rws = self.inner_edges(&s, i, RW);
            let mut witness = self.per_rw_edge(&rws, |bfs, g, first| bfs.cycle_through(g, first, WW | WR, &s.comp, c));
            if let Ok(None) = witness {
                witness = self.per_rw_edge(&rws, |bfs, g, first| bfs.nonadjacent_cycle(g, first, &s.comp, c));
            }
            let witness = match witness {
                Ok(Some(cycle)) => Some(cycle),
                Ok(None) | Err(()) => {
                    if witness.is_err() {
                        self.found.g_single_undecided += 1;
                    }
                    rws.first().and_then(|&first| self.bfs.cycle_through(self.g, first, DATA, &s.comp, c))
                }
            };
            if let Some(cycle) = witness {
                let kind = AnomalyKind::cycle(shape(self.g, &cycle), CycleScope::Data);
                self.found.cycles.push((kind, cycle));
            }
        }
        s
    }

    /// Runs `search` from each rw edge until it finds a cycle; `Err` when the step budget or
    /// the time ran out first.
    fn per_rw_edge(
        &mut self,
        rws: &[usize],
        mut search: impl FnMut(&mut Bfs, &Graph, usize) -> Option<Vec<usize>>,
    ) -> Result<Option<Vec<usize>>, ()> {
        for &first in rws {
            if self.bfs.steps > self.steps_max || self.out_of_time() {
                return Err(());
            }
            if let Some(cycle) = search(&mut self.bfs, self.g, first) {
                return Ok(Some(cycle));
            }
        }
        Ok(None)
    }

    fn extra_stage(&mut self, base: &Sccs, mask: u8, extra: u8, scope: CycleScope) -> Sccs {
        let s = self.components(mask);
        for i in 0..s.nontrivial.len() {
            if self.out_of_time() {
                break;
            }
            let crossing = self.inner_edges(&s, i, extra).into_iter().find(|&ei| {
                let e = &self.g.edges[ei];
                base.comp[e.from as usize] != base.comp[e.to as usize]
            });
            let Some(first) = crossing else { continue };
            if let Some(cycle) = self.bfs.cycle_through(self.g, first, mask, &s.comp, s.nontrivial[i]) {
                let kind = AnomalyKind::cycle(shape(self.g, &cycle), scope);
                self.found.cycles.push((kind, cycle));
            }
        }
        s
    }
}
