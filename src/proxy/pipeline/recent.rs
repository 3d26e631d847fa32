//! Request ids remembered after their request ended, and ids matched as JavaScript and
//! Python read numbers: what lets a late, forged or rewritten answer be told apart.

use std::collections::{HashMap, VecDeque};

use super::MAX_ENDED;
use crate::jsonrpc::RequestId;

/// Ids remembered for a while with a value, oldest first, at most [`super::MAX_ENDED`].
#[derive(Debug)]
pub(super) struct Recent<V> {
    map: HashMap<RequestId, V>,
    order: VecDeque<RequestId>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V> Recent<V> {
    /// Remembers `value` under `id`; returns the value it replaced under `id`, or the oldest
    /// one forgotten to make room.
    pub(super) fn insert(&mut self, id: RequestId, value: V) -> Option<V> {
        if let Some(slot) = self.map.get_mut(&id) {
            return Some(std::mem::replace(slot, value));
        }
        let mut forgotten = None;
        if self.order.len() >= MAX_ENDED
            && let Some(old) = self.order.pop_front()
        {
            forgotten = self.map.remove(&old);
        }
        self.order.push_back(id.clone());
        self.map.insert(id, value);
        forgotten
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    pub(super) fn get_mut(&mut self, id: &RequestId) -> Option<&mut V> {
        self.map.get_mut(id)
    }

    pub(super) fn remove(&mut self, id: &RequestId) -> Option<V> {
        let value = self.map.remove(id)?;
        self.order.retain(|o| o != id);
        Some(value)
    }

    pub(super) fn get(&self, id: &RequestId) -> Option<&V> {
        self.map.get(id)
    }

    pub(super) fn contains(&self, id: &RequestId) -> bool {
        self.map.contains_key(id)
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = &RequestId> {
        self.map.keys()
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.map.values_mut()
    }

    /// Takes every value out, forgetting every id.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = V> + '_ {
        self.order.clear();
        self.map.drain().map(|(_, v)| v)
    }
}
