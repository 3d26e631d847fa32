//! Opening a session for a POST: its own server process (a 2025 session, kept in the
//! table until DELETE or idle), or a session core on a shared child of the principal's pool
//! (sessionless 2026-07-28); within the caps (`max_sessions`, `max_sessions_per_principal`,
//! the pool's), counted from the check that admits it ([`super::session::Opening`]).

use super::request::McpRequest;
use super::*;

impl McpRequest<'_> {
    /// Starts a server for a new session of this principal (`keep`: a 2025 session, kept in
    /// the table), or, `pooled`, a session core on a shared child of its pool.
    pub(super) async fn open_session(
        &self,
        keep: bool,
        pooled: bool,
    ) -> Result<Arc<Session>, Response<ResponseBody>> {
        let g = &self.gateway.config.gateway;
        let mut evicted = None;
        let ended = CancellationToken::new();
        let mut opening = None;
        let full = if pooled {
            None
        } else {
            let mut sessions = self.gateway.sessions();
            let owner = self.principal.key();
            // Sessions ended while their server finishes count for `max_sessions` only; those
            // whose server is starting count too.
            let mine = sessions
                .values()
                .filter(|s| s.owner == owner && s.is_open())
                .count()
                + Opening::of(self.gateway, &owner);
            // Every running server counts, a sessionless request's included: the cap bounds
            // the processes, not only the table.
            let full = if sessions.len().max(self.gateway.live_sessions()) >= g.max_sessions {
                Some(format!(
                    "the gateway holds gateway.max_sessions = {} sessions",
                    g.max_sessions
                ))
            } else if mine >= g.max_sessions_per_principal {
                // helper-92 F2: clients that end without DELETE (the TypeScript SDK's
                // `Client.close()`) left sessions that locked their principal out until the
                // idle timeout. Its session idle longest makes room, if idle long enough.
                let oldest = sessions
                    .iter()
                    .filter(|(_, s)| s.owner == owner && s.is_open())
                    .filter_map(|(id, s)| Some((s.idle_for()?, id.clone())))
                    .filter(|(idle, _)| *idle >= g.session_evict_idle)
                    .max();
                match oldest.and_then(|(idle, id)| Some((idle, sessions.remove(&id)?))) {
                    Some(old) => {
                        evicted = Some(old);
                        None
                    }
                    None => Some(format!(
                        "{} holds gateway.max_sessions_per_principal = {} sessions, none idle for gateway.session_evict_idle_ms = {} ms; end one with DELETE",
                        self.principal.user_id,
                        g.max_sessions_per_principal,
                        g.session_evict_idle.as_millis()
                    )),
                }
            } else {
                None
            };
            if full.is_none() {
                // Counted now, under the lock, not once the server runs: requests racing at a
                // cap would all pass it (helper-93 L6).
                self.gateway
                    .session_tasks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((ended.clone(), true));
                if keep {
                    opening = Some(Opening::start(self.gateway, owner));
                }
            }
            full
        };
        if let Some((idle, old)) = evicted {
            tracing::info!(session = %old.id, user = %self.principal.user_id, idle_ms = idle.as_millis() as u64, "ending the principal's session idle longest to make room for a new one (gateway.max_sessions_per_principal)");
            old.end("its principal opened a new session at gateway.max_sessions_per_principal, and it was the one idle longest");
        }
        if let Some(reason) = full {
            // The request's own id, as every other refusal of a readable body names it.
            let id = self.body_request_id();
            self.refuse(
                StatusCode::TOO_MANY_REQUESTS,
                reason.clone(),
                None,
                None,
                id.clone(),
            )
            .await;
            return Err(rpc_refusal(
                StatusCode::TOO_MANY_REQUESTS,
                id.as_ref(),
                INVALID_REQUEST,
                &reason,
            ));
        }
        if self.gateway.stopping.is_cancelled() {
            ended.cancel();
            return Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway is shutting down",
            ));
        }
        let lease = if pooled {
            let room = self.gateway.live_sessions() < g.max_sessions;
            let budget = self
                .gateway
                .budget_of(&self.principal.key(), &self.upstream.name);
            match self
                .gateway
                .pool
                .lease(self.upstream, &self.principal.key(), room, &budget)
            {
                Ok(lease) => Some(lease),
                Err(e) => {
                    use crate::proxy::pool::PoolError;
                    let (status, code, reason) = match e {
                        PoolError::Spawn(e) => (
                            StatusCode::BAD_GATEWAY,
                            message::INTERNAL_ERROR,
                            format!(
                                "upstream {:?} could not be started: {e}",
                                self.upstream.name
                            ),
                        ),
                        full => (
                            StatusCode::TOO_MANY_REQUESTS,
                            INVALID_REQUEST,
                            full.to_string(),
                        ),
                    };
                    let id = self.body_request_id();
                    self.refuse(status, reason.clone(), None, None, id.clone())
                        .await;
                    let told = if status == StatusCode::BAD_GATEWAY {
                        self.not_started()
                    } else {
                        reason
                    };
                    return Err(rpc_refusal(status, id.as_ref(), code, &told));
                }
            }
        } else {
            None
        };
        // 160 random bits (two ULIDs' worth, the ids' random parts from a CSPRNG), visible
        // ASCII as the spec asks of session ids.
        let id = format!("{}{}", ulid::Ulid::generate(), ulid::Ulid::generate());
        let info = SessionInfo {
            session_id: id.clone(),
            user_id: self.principal.user_id.clone(),
            upstream: self.upstream.name.clone(),
            auth_method: self.principal.method,
            http: Some(Box::new(self.http.clone())),
        };
        let (give, take) = oneshot::channel::<Arc<Session>>();
        let config = self.gateway.config.clone();
        let upstream = self.upstream.clone();
        let remote = self.gateway.remotes.get(&upstream.name).cloned();
        let audit = self.gateway.audit.clone();
        let policy = self.gateway.policy.clone();
        // A sessionless request's MRTR retry comes as a request of its own: the rounds it
        // answers are the principal's on this upstream, not one request's.
        // Not kept in the table: a sessionless 2026-07-28 request's (a 2025 request without a
        // session is refused before this, unless it is an `initialize`, which is kept).
        let sessionless = !keep;
        let rounds = sessionless.then(|| {
            self.gateway
                .rounds_of(&self.principal.key(), &self.upstream.name)
        });
        // Every session and request of the principal on the upstream names only the tasks
        // its own requests created (helper-109 F1: a `url` upstream sees one caller).
        let tasks = self
            .gateway
            .task_owners
            .of(&self.principal.key(), &self.upstream.name);
        // A 2025 session's responses have a budget of their own; sessionless requests share
        // their principal's on the upstream.
        let budget = if sessionless {
            self.gateway
                .budget_of(&self.principal.key(), &self.upstream.name)
        } else {
            super::budget::Budget::new(id.clone())
        };
        let gateway = Arc::downgrade(self.gateway);
        let owner = self.principal.key();
        if pooled {
            self.gateway
                .session_tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((ended.clone(), false));
        }
        let session_id = id.clone();
        let (spawn_error_tx, spawn_error_rx) = oneshot::channel::<String>();
        tokio::spawn(async move {
            let setup = SessionSetup {
                config: &config,
                server: match (lease, &remote) {
                    (Some(lease), _) => Server::Pooled(lease),
                    (None, Some(remote)) => Server::Remote {
                        remote: remote.clone(),
                        reopen: false,
                    },
                    (None, None) => Server::Command {
                        command: &upstream.command,
                        cwd: upstream.cwd.as_deref(),
                    },
                },
                session: info,
                audit,
                policy,
                own_signals: false,
                rounds,
                tasks: Some(tasks),
            };
            let name = upstream.name.clone();
            let result = run_session(setup, move |door: ClientDoor| {
                let (session, dispatcher) =
                    Session::start(session_id.clone(), owner, name, (sessionless, budget), door);
                let _ = give.send(session);
                dispatcher
            })
            .await;
            match result {
                Ok(code) => tracing::info!(session = %id, code, "session's server exited"),
                Err(e) => {
                    tracing::error!(session = %id, error = %e, "session's server could not run");
                    let _ = spawn_error_tx.send(e.to_string());
                }
            }
            ended.cancel();
            if let Some(g) = gateway.upgrade() {
                g.sessions().remove(&id);
                g.session_tasks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(t, _)| !t.is_cancelled());
            }
        });
        match take.await {
            Ok(session) => {
                if keep {
                    let mut sessions = self.gateway.sessions();
                    sessions.insert(session.id.clone(), session.clone());
                    if let Some(opening) = opening {
                        opening.entered();
                    }
                }
                Ok(session)
            }
            Err(_) => {
                let why = spawn_error_rx
                    .await
                    .unwrap_or_else(|_| "unknown error".into());
                let reason = format!(
                    "upstream {:?} could not be started: {why}",
                    self.upstream.name
                );
                let id = self.body_request_id();
                self.refuse(StatusCode::BAD_GATEWAY, reason, None, None, id.clone())
                    .await;
                Err(rpc_refusal(
                    StatusCode::BAD_GATEWAY,
                    id.as_ref(),
                    message::INTERNAL_ERROR,
                    &self.not_started(),
                ))
            }
        }
    }
}
