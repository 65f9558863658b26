//! A model check of the failover protocol: two nodes and the directory,
//! with every interleaving of writes, shipping, acknowledgements, lease
//! lapses (a kill or a pause), takeovers, in-sync changes and stale views,
//! explored exhaustively by stateright. The nodes' decisions are the
//! functions of `grove_directory::rules` the real nodes call; etcd is a
//! record with a revision and compare-and-swap.
//!
//! Checked in every reachable state:
//! - no acknowledged write is missing from the current primary's log;
//! - no two nodes acknowledge writes in one epoch.

use grove_core::timestamp::Timestamp;
use grove_directory::SiteRecord;
use grove_directory::rules;
use stateright::{Checker, Model, Property};

const NAMES: [&str; 2] = ["a", "b"];
const WRITES: u8 = 3;
/// Record changes explored: enough for a takeover, a drop, a rejoin and a
/// takeover back.
const MAX_EPOCH: u64 = 6;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Node {
    /// Write ids in order: a write's position stands for its timestamp.
    log: Vec<u8>,
    /// Whether etcd holds its lease.
    leased: bool,
    /// The record and epoch it last saw (its view can lag).
    view: (SiteRecord, u64),
    /// The epoch it last pulled from its primary in: what the primary
    /// counts its acknowledgements under.
    pulled_in: Option<u64>,
    /// Whether it was primary and has not yet cut its tail.
    was_primary: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct State {
    record: SiteRecord,
    epoch: u64,
    nodes: [Node; 2],
    next_write: u8,
    /// (write, acknowledging node, epoch of its view).
    acked: Vec<(u8, usize, u64)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Action {
    Write(usize),
    Ship(usize),
    Acknowledge(usize, u8),
    DropBackup(usize),
    AddBackup(usize),
    Lapse(usize),
    Renew(usize),
    Promote(usize),
    Refresh(usize),
}

struct Failover;

fn index(name: &str) -> usize {
    NAMES.iter().position(|n| *n == name).expect("a known node")
}

fn believes_primary(state: &State, n: usize) -> bool {
    state.nodes[n].view.0.primary == NAMES[n]
}

impl State {
    /// A compare-and-swap on the record by node `n` from its view.
    fn swap(&mut self, n: usize, record: SiteRecord) {
        if self.nodes[n].view.1 == self.epoch {
            self.record = record;
            self.epoch += 1;
        }
        self.nodes[n].view = (self.record.clone(), self.epoch);
    }

    /// Whether the backup of `n`'s view holds write `w` as acknowledged
    /// to `n` in its view's epoch.
    fn backup_holds(&self, n: usize, w: u8) -> bool {
        let view = &self.nodes[n].view;
        view.0
            .backup
            .as_deref()
            .map(index)
            .is_some_and(|b| self.nodes[b].pulled_in == Some(view.1) && self.nodes[b].log.contains(&w))
    }
}

impl Model for Failover {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let record = rules::first_record("a", Some("b"));
        let node = |was_primary| Node {
            log: Vec::new(),
            leased: true,
            view: (record.clone(), 1),
            pulled_in: None,
            was_primary,
        };
        vec![State {
            record: record.clone(),
            epoch: 1,
            nodes: [node(false), node(false)],
            next_write: 0,
            acked: Vec::new(),
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        for n in 0..2 {
            let node = &state.nodes[n];
            if believes_primary(state, n) {
                if state.next_write < WRITES {
                    actions.push(Action::Write(n));
                }
                for &w in &node.log {
                    if !state.acked.iter().any(|(acked, by, _)| *acked == w && *by == n) {
                        actions.push(Action::Acknowledge(n, w));
                    }
                }
                actions.push(Action::DropBackup(n));
                actions.push(Action::AddBackup(n));
            } else {
                actions.push(Action::Ship(n));
                actions.push(Action::Promote(n));
            }
            actions.push(if node.leased {
                Action::Lapse(n)
            } else {
                Action::Renew(n)
            });
            if node.view.1 != state.epoch {
                actions.push(Action::Refresh(n));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let swaps = matches!(
            action,
            Action::DropBackup(_) | Action::AddBackup(_) | Action::Promote(_)
        );
        if swaps && last.epoch >= MAX_EPOCH {
            return None;
        }
        let mut state = last.clone();
        match action {
            Action::Write(n) => {
                state.nodes[n].log.push(state.next_write);
                state.next_write += 1;
            }
            Action::Ship(n) => {
                // The primary ships only to the backup of its own view, in
                // that epoch, and only what follows the backup's history.
                let view = state.nodes[n].view.clone();
                let p = index(&view.0.primary);
                let primary_view = &state.nodes[p].view;
                if view.0.backup.as_deref() != Some(NAMES[n])
                    || primary_view.1 != view.1
                    || primary_view.0.primary != NAMES[p]
                    || state.nodes[n].was_primary
                {
                    return None;
                }
                let (held, source) = (state.nodes[n].log.len(), state.nodes[p].log.clone());
                if !source.starts_with(&state.nodes[n].log) {
                    return None;
                }
                if held < source.len() {
                    state.nodes[n].log.push(source[held]);
                }
                state.nodes[n].pulled_in = Some(view.1);
            }
            Action::Acknowledge(n, w) => {
                let holds = state.backup_holds(n, w);
                if !rules::may_acknowledge(&state.nodes[n].view.0, false, holds) {
                    return None;
                }
                let epoch = state.nodes[n].view.1;
                state.acked.push((w, n, epoch));
                state.acked.sort_unstable();
            }
            Action::DropBackup(n) => {
                if !rules::needs_backup(&state.nodes[n].view.0) {
                    return None;
                }
                let record = rules::without_backup(&state.nodes[n].view.0);
                state.swap(n, record);
            }
            Action::AddBackup(n) => {
                // Only a backup holding all of the primary's history joins.
                let view = state.nodes[n].view.clone();
                let b = index(view.0.backup.as_deref()?);
                if rules::needs_backup(&view.0)
                    || state.nodes[b].pulled_in != Some(view.1)
                    || state.nodes[b].log != state.nodes[n].log
                {
                    return None;
                }
                state.swap(n, rules::with_backup(&view.0));
            }
            Action::Lapse(n) => state.nodes[n].leased = false,
            Action::Renew(n) => state.nodes[n].leased = true,
            Action::Promote(n) => {
                let primary_alive = state.nodes[index(&state.record.primary)].leased;
                if !state.nodes[n].leased || !rules::may_promote(&state.nodes[n].view.0, NAMES[n], primary_alive) {
                    return None;
                }
                let adopted = Timestamp::from_u64(state.nodes[n].log.len() as u64);
                let record = rules::promoted(&state.nodes[n].view.0, adopted);
                let before = state.epoch;
                state.swap(n, record);
                if state.epoch == before {
                    return None;
                }
            }
            Action::Refresh(n) => {
                let was = believes_primary(&state, n);
                state.nodes[n].view = (state.record.clone(), state.epoch);
                let node = &mut state.nodes[n];
                if was && node.view.0.primary != NAMES[n] {
                    node.was_primary = true;
                }
                if node.was_primary && !node.view.0.in_sync.iter().any(|m| m == NAMES[n]) {
                    let cut = usize::try_from(rules::rejoin_point(&node.view.0).as_u64()).unwrap_or(usize::MAX);
                    node.log.truncate(cut);
                    node.was_primary = false;
                }
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no acknowledged write is lost", |_, state: &State| {
                let primary = &state.nodes[index(&state.record.primary)];
                state.acked.iter().all(|(w, _, _)| primary.log.contains(w))
            }),
            Property::always("one acknowledging node per epoch", |_, state: &State| {
                state.acked.iter().all(|(_, by, epoch)| {
                    state
                        .acked
                        .iter()
                        .all(|(_, other, other_epoch)| other_epoch != epoch || other == by)
                })
            }),
            Property::sometimes("a takeover after acknowledged writes", |_, state: &State| {
                state.record.primary == "b" && !state.acked.is_empty()
            }),
        ]
    }
}

#[test]
fn the_failover_protocol_loses_no_acknowledged_write_under_any_interleaving() {
    let checker = Failover.checker().spawn_bfs().join();
    checker.assert_properties();
    eprintln!("explored {} states", checker.unique_state_count());
    assert!(checker.unique_state_count() > 1000);
}
