//! Batches (JSON-RPC 2.0 §6, MCP 2025-03-26): a client's batch forwarded whole or refused
//! whole, after what in it is for the proxy is taken out; a server's batch decided element by
//! element and rebuilt only when one is dropped or replaced.

use super::*;

impl Pipeline {
    /// A batch is forwarded whole or refused whole, so the server never sees part of it; what
    /// in it is for the proxy (answers to its confirmation questions, cancellations of calls
    /// held for them) is taken out first, and the rest, if any, goes on as a batch of its own.
    pub(super) fn client_batch(&self, line: Bytes, items: &[BatchItem<'_>]) -> Route {
        let mut routes = Vec::new();
        // Routes are never nested (`Routes::send`).
        let mut add = |route: Route| match route {
            Route::Many(many) => routes.extend(many),
            route => routes.push(route),
        };
        let mut answered = false;
        let mut rest = Vec::new();
        for item in items {
            match item
                .message
                .as_ref()
                .ok()
                .and_then(|m| self.for_the_proxy(m))
            {
                Some(route) => {
                    answered = true;
                    add(route);
                }
                None => rest.push(Cow::Borrowed(item.raw.get())),
            }
        }
        if !answered {
            return self.client_batch_whole(line, items);
        }
        if !rest.is_empty() {
            // Without them (their calls are no longer held, so this ends).
            add(self.from_client(batch_line(rest)));
        }
        Route::of(routes)
    }

    fn client_batch_whole(&self, line: Bytes, items: &[BatchItem<'_>]) -> Route {
        if let Some(problem) = self.batch_problem(items) {
            tracing::warn!(problem = %problem, "batch from client refused");
            let message = format!("mcp-audit-proxy refused the whole batch: {problem}");
            let replies = self.refuse_batch(items, INVALID_REQUEST, &message, |found| {
                let events = self.record_refused(found, INVALID_REQUEST, &problem);
                events.into_iter().flatten().next()
            });
            let mut routes = self.batch_answers_refused(items, &message);
            match replies {
                Some(r) => routes.push(Route::ToClient(self.after_recorded(r))),
                // Over HTTP the POST of a batch of answers fails all the same (as for one
                // refused answer, `refuse_line`): an error with a null id is its 400's body.
                None if self.info.auth_method != STDIO && !routes.is_empty() => {
                    let error = error_response(None, INVALID_REQUEST, &message, None);
                    routes.push(Route::ToClient(Outbound::now(error)));
                }
                None => {}
            }
            return Route::of(routes);
        }
        let mut last = Ack::done();
        let mut opened = Vec::new();
        self.state().batching = true;
        for (at, item) in items.iter().enumerate() {
            let Ok(msg) = &item.message else { continue };
            match self.client_message(msg) {
                Ok((ack, call)) => {
                    if ack.is_pending() {
                        last = ack;
                    }
                    opened.extend(call);
                }
                Err(refusal) => {
                    self.state().batching = false;
                    return self.refuse_rest_of_batch(items, at, &opened, &refusal);
                }
            }
        }
        self.state().batching = false;
        let if_unrecorded = (!opened.is_empty()).then(|| {
            let message = audit_refusal(&opened[0], START_UNRECORDED).message;
            let reply = self
                .refuse_batch(items, INTERNAL_ERROR, &message, |_| None)
                .unwrap_or_default();
            Unrecorded {
                reply: Box::new(move || reply),
                calls: opened,
                to_server: false,
            }
        });
        Route::ToServer(Outbound {
            budget: None,
            bytes: line,
            ack: last,
            if_unrecorded,
            ends: Vec::new(),
            held: false,
        })
    }

    /// A batch from the server: each element decided on its own; the batch is rebuilt only
    /// when an element is dropped or replaced.
    pub(super) fn server_batch(&self, line: Bytes, items: &[BatchItem<'_>]) -> Route {
        let mut kept: Vec<Cow<'_, str>> = Vec::new();
        let mut if_unrecorded: Vec<Cow<'_, str>> = Vec::new();
        let mut any_unrecorded = false;
        let mut ends = Vec::new();
        let mut changed = false;
        let mut last = Ack::done();
        for item in items {
            let raw = Cow::Borrowed(item.raw.get());
            let delivery = match &item.message {
                Ok(msg) => self.server_message(msg, item.raw.get().len(), item.raw.get()),
                Err(invalid) => {
                    tracing::warn!(error = %invalid, "invalid element of a batch from server dropped");
                    let reason = format!("the server's message was refused: {invalid}");
                    let answers: Vec<Outbound> = salvage(item.raw.get().as_bytes(), TOOLS_CALL)
                        .iter()
                        .filter(|s| s.is_response())
                        .flat_map(|s| s.ids().cloned().collect::<Vec<_>>())
                        .filter_map(|id| self.fail_answered(&id, &reason))
                        .collect();
                    changed = true;
                    for answer in answers {
                        if answer.ack.is_pending() {
                            last = answer.ack;
                        }
                        let element = String::from_utf8_lossy(trim_line_end(&answer.bytes));
                        if_unrecorded.push(Cow::Owned(element.to_string()));
                        kept.push(Cow::Owned(element.into_owned()));
                    }
                    continue;
                }
            };
            match delivery {
                Delivery::Forward {
                    ack,
                    ended,
                    rewritten,
                } => {
                    if ack.is_pending() {
                        last = ack;
                    }
                    let raw = match rewritten {
                        Some(r) => {
                            changed = true;
                            Cow::Owned(r)
                        }
                        None => raw,
                    };
                    match ended {
                        Some(e) => {
                            any_unrecorded = true;
                            if_unrecorded.push(Cow::Owned(
                                audit_refusal(&e.answers, END_UNRECORDED).element(),
                            ));
                            ends.push(*e);
                        }
                        None => if_unrecorded.push(raw.clone()),
                    }
                    kept.push(raw);
                }
                Delivery::Drop => changed = true,
                Delivery::Replace(r) => {
                    changed = true;
                    let value: Cow<'_, str> = Cow::Owned(r.element());
                    if_unrecorded.push(value.clone());
                    kept.push(value);
                }
            }
        }
        if kept.is_empty() {
            return Route::Drop;
        }
        Route::ToClient(Outbound {
            budget: None,
            bytes: if changed { batch_line(kept) } else { line },
            ack: last,
            if_unrecorded: any_unrecorded.then(|| {
                let reply = batch_line(if_unrecorded);
                Unrecorded {
                    reply: Box::new(move || reply),
                    calls: Vec::new(),
                    to_server: false,
                }
            }),
            ends,
            held: false,
        })
    }
}
