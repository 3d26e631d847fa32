//! MRTR rounds (MCP 2026-07-28 multi-round-trip requests): the servers' `input_required`
//! results, remembered to link a retry to the round it answers (`retry_of`), and the proxy's
//! own confirmation rounds, whose retry carries the person's answer. A retry need not reach
//! the pipeline that opened its round: the gateway shares one [`Rounds`] across the
//! sessionless requests of a principal on an upstream. With them, what those requests
//! learnt ([`Learnt`]): the tags sequence rules look back on, and the tools' annotations.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::event::EventId;
use crate::mcp::ToolAnnotations;
use crate::policy::History;

/// MRTR states remembered per session for linking retries (oldest forgotten first).
const MAX_OPEN_ROUNDS: usize = 1024;

/// A 2026-07-28 confirmation round the proxy opened, waiting for the client's retry.
#[derive(Debug)]
pub(super) struct Round {
    pub(super) tool: String,
    pub(super) hash: String,
    /// The version of the policy whose reasons were put to the person: a retry under another
    /// is asked again (helper-109 F4: the person approved reasons no longer in force).
    pub(super) policy: String,
    pub(super) deadline: Instant,
    /// The server's own `requestState` and `inputResponses` the call carried, restored when
    /// the confirmed retry is forwarded.
    pub(super) server_state: Option<String>,
    pub(super) server_responses: Option<String>,
}

/// The 2026-07-28 multi-round-trip rounds (MRTR) a client may answer with a retry: the
/// servers' input_required results (to link the retry to the round, `retry_of`) and the
/// proxy's own confirmation rounds. A retry need not come on the connection that got the
/// round: the gateway shares one of these across the sessionless requests of a principal on
/// an upstream ([`super::Pipeline::with_rounds`]); elsewhere each pipeline has its own.
#[derive(Debug, Default)]
pub struct Rounds {
    /// Rounds by their key ([`round_key`]), with the event that opened each, when, and the
    /// consent its call carried ([`Consent`]), oldest first; forgotten after [`ROUND_TTL`].
    open: VecDeque<OpenRound>,
    /// The proxy's confirmation rounds by their `requestState`.
    pub(super) confirming: HashMap<String, Round>,
    /// Their `requestState`s, oldest first.
    pub(super) order: VecDeque<String>,
    /// What the calls and `tools/list` answers of the same pipelines taught.
    pub(super) learnt: Learnt,
    /// When a request last took these (the gateway's sessionless requests).
    used: Option<Instant>,
}

/// What a session learns that later calls are judged by: the compliance tags its calls'
/// arguments and results carried (for `[[risk.sequence]]` rules), and the tools the server
/// listed with their annotations (a destructive tool scores as one; case twins of a listed
/// name are refused). A stdio session or a 2025 gateway session has its own. The gateway's
/// sessionless 2026-07-28 requests of one principal on one upstream share one: each request
/// is a session core of its own, and a client choosing that era must not leave sequence
/// rules and annotations behind (found by a hostile pass: `personal_data` then `echo`
/// passed a rule that blocked a 2025 client).
#[derive(Debug, Default)]
pub(super) struct Learnt {
    pub(super) history: History,
    pub(super) annotations: HashMap<String, ToolAnnotations>,
    /// The names of the tools the server listed (`tools/list`, every page).
    pub(super) listed: HashSet<String>,
}

/// A person's accept of a call held for confirmation, carried by the MRTR retries of that
/// call: when the server answers the confirmed call with its own `input_required`, the retry
/// that answers the server is the same call, and asking the person again at every round was
/// found by a hostile pass. Only a retry of the same tool with the same arguments (byte for
/// byte, by their hash), under the policy the person was asked under, of a tool whose
/// definition did not change since, within `confirm_timeout_ms` of the server's round, carries
/// it; anything else is asked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Consent {
    /// The tool's name.
    pub(super) tool: String,
    /// [`super::access::arguments_hash`] of the arguments the person accepted.
    pub(super) hash: String,
    /// The `policy_version` the person was asked under.
    pub(super) policy: String,
}

/// A server's round waiting for its retry ([`Rounds::remember`]).
#[derive(Debug)]
struct OpenRound {
    /// [`round_key`].
    key: String,
    /// The end event that opened it.
    event: EventId,
    /// When it was remembered ([`ROUND_TTL`]).
    at: Instant,
    /// The person's accept of the call that got it, if any.
    granted: Option<Granted>,
}

/// A person's accept ([`Consent`]) as a server's round keeps it: until when its retry may
/// carry it (`confirm_timeout_ms` after the round).
#[derive(Debug, Clone)]
pub(super) struct Granted {
    pub(super) consent: Consent,
    pub(super) until: Instant,
}

impl Granted {
    /// Whether this accept holds for a retry asking `asked` now: the same tool, arguments
    /// and policy version, before `until`.
    pub(super) fn holds_for(&self, asked: &Consent) -> bool {
        self.consent == *asked && Instant::now() <= self.until
    }
}

/// [`Rounds`] shared by the pipelines a retry may reach.
pub type SharedRounds = Arc<Mutex<Rounds>>;

/// How long a round is remembered for its retry's `retry_of` link: an MRTR retry follows its
/// round within seconds or minutes; a shared [`Rounds`] must not keep every round for the
/// life of the gateway.
const ROUND_TTL: Duration = Duration::from_secs(3600);

impl Rounds {
    /// Remembers a server's round, opened by the end event `id`, with the accept the call
    /// that got it carried.
    pub(super) fn remember(&mut self, key: String, id: EventId, granted: Option<Granted>) {
        let now = Instant::now();
        while self
            .open
            .front()
            .is_some_and(|r| now.duration_since(r.at) > ROUND_TTL)
        {
            self.open.pop_front();
        }
        if self.open.len() >= MAX_OPEN_ROUNDS {
            self.open.pop_front();
        }
        self.open.push_back(OpenRound {
            key,
            event: id,
            at: now,
            granted,
        });
    }

    /// The round a retry answers (used up): the event that opened it and its call's accept.
    pub(super) fn take(&mut self, key: &str) -> Option<(EventId, Option<Granted>)> {
        let at = self.open.iter().rposition(|r| r.key == key)?;
        self.open.remove(at).map(|r| (r.event, r.granted))
    }

    /// Nothing is remembered: no round to answer, none to link.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.confirming.is_empty()
    }

    /// Taken by a new request: what was learnt is forgotten first if no request took these
    /// for `idle` (`gateway.session_idle_timeout_ms`), as a session idle that long ends and
    /// its successor starts afresh.
    pub fn take_for_request(&mut self, idle: Duration) {
        if self.used.is_some_and(|at| at.elapsed() >= idle) {
            self.learnt = Learnt::default();
        }
        self.used = Some(Instant::now());
    }

    /// Nothing is kept that a later request could need: no round, and nothing learnt within
    /// `idle`.
    pub fn forgettable(&self, idle: Duration) -> bool {
        self.is_empty() && self.used.is_none_or(|at| at.elapsed() >= idle)
    }
}

/// How an MRTR retry finds the round it answers: by its tool and `requestState`, else its tool
/// and the names of its input responses. The tool is part of the key either way: a call of
/// another tool sent with a round's state is not that round's retry (MCP 2026-07-28, "Multi
/// Round-Trip Requests": the state goes back with the retry of the original request), and
/// linking it used the round up (helper-95 F6).
pub(super) fn round_key(
    tool: &str,
    request_state: Option<&str>,
    keys: impl Iterator<Item = String>,
) -> String {
    match request_state {
        Some(state) => format!("tool:{tool}|state:{state}"),
        None => {
            let mut keys: Vec<String> = keys.collect();
            keys.sort();
            format!("tool:{tool}|{}", keys.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// helper-95 F6: `echo` sent with `mrtr`'s `requestState` was linked to `mrtr`'s round.
    #[test]
    fn a_round_is_found_by_its_tool_and_state_not_the_state_alone() {
        let none = || std::iter::empty::<String>();
        assert_eq!(
            round_key("mrtr", Some("s1"), none()),
            round_key("mrtr", Some("s1"), none())
        );
        assert_ne!(
            round_key("mrtr", Some("s1"), none()),
            round_key("echo", Some("s1"), none())
        );
        assert_ne!(
            round_key("mrtr", Some("s1"), none()),
            round_key("mrtr", Some("s2"), none())
        );
    }

    fn consent(tool: &str, hash: &str, policy: &str) -> Consent {
        Consent {
            tool: tool.into(),
            hash: hash.into(),
            policy: policy.into(),
        }
    }

    /// A person's accept carries to the retry of the same call only: the same tool, the same
    /// arguments, the same policy version, before its deadline; and once.
    #[test]
    fn an_accept_holds_for_the_same_call_under_the_same_policy_before_its_deadline() {
        let accepted = consent("delete_file", "h1", "v1");
        let granted = |until: Instant| Granted {
            consent: accepted.clone(),
            until,
        };
        let later = Instant::now() + Duration::from_secs(60);
        assert!(granted(later).holds_for(&accepted));
        for other in [
            consent("delete_file", "h1", "v2"),
            consent("delete_file", "h2", "v1"),
            consent("move_file", "h1", "v1"),
        ] {
            assert!(!granted(later).holds_for(&other), "{other:?}");
        }
        let past = Instant::now()
            .checked_sub(Duration::from_millis(1))
            .unwrap();
        assert!(!granted(past).holds_for(&accepted));

        let mut rounds = Rounds::default();
        let id = EventId(ulid::Ulid::from(7u128));
        rounds.remember("state:s1".into(), id, Some(granted(later)));
        rounds.remember("state:s2".into(), EventId(ulid::Ulid::from(7u128)), None);
        let (event, kept) = rounds.take("state:s1").unwrap();
        assert_eq!(event, id);
        assert!(kept.unwrap().holds_for(&accepted));
        assert!(rounds.take("state:s1").is_none(), "a round is used up");
        assert!(rounds.take("state:s2").unwrap().1.is_none());
    }
}
