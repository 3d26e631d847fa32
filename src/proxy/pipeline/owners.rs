//! Whose tasks are whose at the gateway (helper-109 F1). A server binds a task to the
//! credential that created it (MCP 2025-11-25 "Tasks": receivers bind tasks to the
//! requestor's authorization context), but the gateway speaks to a `url` upstream with one
//! credential of its own for every principal: to the server, alice and bob are one caller,
//! and bob's `tasks/list` showed alice's task and his `tasks/get` fetched her result. So the
//! gateway keeps, per principal and upstream, the ids of the tasks that principal's requests
//! created (learnt from the answers that made them: a `CreateTaskResult`), and refuses a task
//! request (`tasks/get`, `tasks/result`, `tasks/cancel`, 2026-07-28 `tasks/update`) about any
//! other id as an unknown task (`-32602`, the same for every id not the principal's: no
//! oracle of which ids exist), recorded; a `tasks/list` answer keeps the principal's own
//! tasks only. `command` upstreams get the same: each session and pool is the principal's
//! own process, but a server may keep its tasks where its processes share them.
//!
//! Bounded: [`MAX_OWNED_TASKS`] ids per principal and upstream (the oldest forgotten
//! first), [`MAX_OWNERS`] principals and upstreams (the one unused longest forgotten, when
//! no request holds it). A forgotten id is refused as unknown (fail closed): the principal
//! can no longer reach that task through the gateway.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// Task ids remembered per principal and upstream; past it the oldest is forgotten (and is
/// then refused as unknown). A task lives for its `ttl` (minutes to hours): 1,024 open tasks
/// of one principal on one upstream is far past what clients keep.
pub const MAX_OWNED_TASKS: usize = 1024;

/// (principal, upstream) pairs whose task ids are kept; past it the pair unused longest and
/// held by no request is forgotten. At most 256 × 1,024 × 32 bytes (8 MiB) of ids.
pub const MAX_OWNERS: usize = 256;

/// The tasks one principal's requests created on one upstream, shared by its sessions and
/// sessionless requests there.
pub type SharedTasks = Arc<Mutex<OwnedTasks>>;

/// A task id as kept: its SHA-256, so that a server's long ids cost no more than short ones.
type Key = [u8; 32];

fn key(task: &str) -> Key {
    Sha256::digest(task.as_bytes()).into()
}

/// The task ids of one principal on one upstream, oldest first.
#[derive(Debug, Default)]
pub struct OwnedTasks {
    order: VecDeque<Key>,
    set: HashSet<Key>,
    used: Option<Instant>,
}

impl OwnedTasks {
    /// Remembers `task` as created by this principal (the oldest forgotten past
    /// [`MAX_OWNED_TASKS`]).
    pub(super) fn own(&mut self, task: &str) {
        self.used = Some(Instant::now());
        let k = key(task);
        if !self.set.insert(k) {
            return;
        }
        if self.order.len() >= MAX_OWNED_TASKS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(k);
    }

    /// Whether `task` is one this principal's requests created (and is still remembered).
    pub(super) fn owns(&mut self, task: &str) -> bool {
        self.used = Some(Instant::now());
        self.set.contains(&key(task))
    }
}

/// Every principal's tasks, by (principal, upstream): the gateway's.
#[derive(Debug, Default)]
pub struct TaskOwners {
    all: Mutex<HashMap<(String, String), SharedTasks>>,
}

impl TaskOwners {
    /// The tasks of `principal` (its key, `method:user_id`) on `upstream`.
    pub fn of(&self, principal: &str, upstream: &str) -> SharedTasks {
        let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        let k = (principal.to_string(), upstream.to_string());
        if let Some(t) = all.get(&k) {
            return t.clone();
        }
        if all.len() >= MAX_OWNERS {
            // The pair unused longest that no request holds: its ids are forgotten (its
            // tasks then refused as unknown). Pairs held by requests are bounded by the
            // session and pool caps.
            let idle = all
                .iter()
                .filter(|(_, t)| Arc::strong_count(t) == 1)
                .min_by_key(|(_, t)| t.lock().unwrap_or_else(|p| p.into_inner()).used)
                .map(|(k, _)| k.clone());
            if let Some(idle) = idle {
                all.remove(&idle);
            }
        }
        all.entry(k).or_default().clone()
    }
}

/// The task methods a client sends naming a task by its `taskId`: 2025-11-25 `tasks/get`,
/// `tasks/result`, `tasks/cancel`, and the 2026-07-28 extension's `tasks/update`.
const BY_TASK_ID: [&str; 4] = ["tasks/get", "tasks/result", "tasks/cancel", "tasks/update"];

/// What a client request means to task ownership: `method` as a server matching names
/// loosely (case, spaces, control characters) reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskMethod {
    /// It names a task by `taskId`.
    ById,
    /// `tasks/list`: its answer keeps the caller's own tasks only.
    List,
}

pub(super) fn task_method(method: &str) -> Option<TaskMethod> {
    let core = method.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    let like = |known: &str| core == known || crate::jsonrpc::names::same_name(core, known);
    if BY_TASK_ID.iter().any(|m| like(m)) {
        Some(TaskMethod::ById)
    } else if like("tasks/list") {
        Some(TaskMethod::List)
    } else {
        None
    }
}

/// The one `taskId` of a task request's params, as every reader reads it; `None` when there
/// is none, or a reader could read another: a repeated `taskId`, or a member a
/// case-insensitive reader takes for it (`TaskId`), or a value that is not a string.
pub(super) fn the_task_id(params: Option<&serde_json::value::RawValue>) -> Option<String> {
    let text = params?.get();
    let members = serde_json::from_str::<crate::jsonrpc::salvage::Members<'_>>(text).ok()?;
    let mut named = members
        .0
        .iter()
        .filter(|(name, _)| crate::jsonrpc::names::same_name(name, "taskId"));
    let (name, value) = named.next()?;
    if named.next().is_some() || name != "taskId" {
        return None;
    }
    serde_json::from_str::<String>(value.get()).ok()
}

/// A `tasks/list` result (its JSON text) without the tasks `owned` does not hold, each other
/// byte kept; `Ok(None)` when it keeps them all. An error when it cannot be read to take
/// them out (a repeated `tasks` member, a task without one readable `taskId`, `tasks` not an
/// array): the answer is then withheld.
pub(super) fn own_tasks_only(
    result: &str,
    mut owned: impl FnMut(&str) -> bool,
) -> Result<Option<String>, String> {
    let members = serde_json::from_str::<crate::jsonrpc::salvage::Members<'_>>(result)
        .map_err(|e| format!("the result is not a JSON object: {e}"))?;
    let mut lists = members
        .0
        .iter()
        .filter(|(name, _)| crate::jsonrpc::names::same_name(name, "tasks"));
    let Some((_, tasks)) = lists.next() else {
        return Ok(None);
    };
    if lists.next().is_some() {
        return Err("it has more than one `tasks` member".into());
    }
    let elements = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(tasks.get())
        .map_err(|_| "its `tasks` is not an array".to_string())?;
    let mut kept = Vec::with_capacity(elements.len());
    for element in &elements {
        let id = the_task_id(Some(element))
            .ok_or_else(|| "a listed task has no one readable string `taskId`".to_string())?;
        if owned(&id) {
            kept.push(element.get());
        }
    }
    if kept.len() == elements.len() {
        return Ok(None);
    }
    // `tasks` borrows from `result`: its place there.
    let start = tasks.get().as_ptr() as usize - result.as_ptr() as usize;
    let end = start + tasks.get().len();
    Ok(Some(format!(
        "{}[{}]{}",
        &result[..start],
        kept.join(","),
        &result[end..]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_the_oldest_task_is_forgotten() {
        let mut t = OwnedTasks::default();
        for i in 0..=MAX_OWNED_TASKS {
            t.own(&format!("t{i}"));
        }
        assert!(!t.owns("t0"), "forgotten: refused as unknown");
        assert!(t.owns("t1") && t.owns(&format!("t{MAX_OWNED_TASKS}")));
        assert_eq!(t.order.len(), MAX_OWNED_TASKS);
    }

    #[test]
    fn task_ids_read_one_way_only() {
        let p = |s: &str| serde_json::value::RawValue::from_string(s.into()).unwrap();
        assert_eq!(
            the_task_id(Some(&p(r#"{"taskId":"a"}"#))).as_deref(),
            Some("a")
        );
        for twin in [
            r#"{"taskId":"a","taskId":"b"}"#,
            r#"{"taskId":"a","TaskId":"b"}"#,
            r#"{"TASKID":"a"}"#,
            r#"{"taskId":7}"#,
            r#"{}"#,
        ] {
            assert_eq!(the_task_id(Some(&p(twin))), None, "{twin}");
        }
        assert_eq!(task_method("tasks/get"), Some(TaskMethod::ById));
        assert_eq!(task_method("Tasks/Result "), Some(TaskMethod::ById));
        assert_eq!(task_method("tasks/LIST"), Some(TaskMethod::List));
        assert_eq!(task_method("tools/call"), None);
    }

    #[test]
    fn a_listing_keeps_the_callers_tasks_and_every_other_byte() {
        let r = r#"{"tasks" : [ {"taskId":"mine","status":"working"} , {"taskId":"theirs"} ],"nextCursor":"c", "n":1E400}"#;
        assert_eq!(
            own_tasks_only(r, |t| t == "mine").unwrap().unwrap(),
            r#"{"tasks" : [{"taskId":"mine","status":"working"}],"nextCursor":"c", "n":1E400}"#
        );
        assert_eq!(own_tasks_only(r, |_| true).unwrap(), None);
        assert!(own_tasks_only(r#"{"tasks":[],"Tasks":[{"taskId":"x"}]}"#, |_| true).is_err());
        assert!(own_tasks_only(r#"{"tasks":[{"taskId":"x","taskId":"y"}]}"#, |_| true).is_err());
    }
}
