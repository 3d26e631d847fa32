//! mcp-audit-proxy: a transparent MCP proxy that records every tool call in a durable audit
//! trail.
//!
//! # Layout
//!
//! ```text
//! main.rs, cli.rs     thin entry, jemalloc the global allocator; clap subcommands (stdio,
//!                     gateway, events, reindex, policy test, tools accept, keygen, verify,
//!                     export, store status, retention, erase, import, anomalies, analyze,
//!                     compliance, report, alerts; warden, hidden)
//! commands.rs         the modes behind the subcommands; commands/trail.rs: keygen, verify,
//!                     export (run without a config where they can); commands/retention.rs:
//!                     retention (dry run, --apply with a progress bar, the purge event);
//!                     commands/privacy.rs: erase --user, export --user (GDPR Art. 17, 20);
//!                     commands/analytics.rs: import (checked whole, then through the audit
//!                     writer), anomalies, analyze user / tools; commands/compliance.rs:
//!                     compliance (rule by rule, table or JSON, exit 1 on a failed rule)
//!                     commands/report.rs: report executive|detailed (to stdout or --out,
//!                     replaced whole)
//! progress.rs         progress bars of verify, export, reindex, retention (hidden off a
//!                     terminal)
//! config/             RawConfig (serde, unknown keys refused) -> Config (validated);
//!                     alerts.rs: [alerts] and [alerts.webhook] (the secret read at start);
//!                     analytics.rs: [analytics] (service accounts, networks, time zones);
//!                     source.rs: errors that name the file, the line and a hint;
//!                     gateway.rs: [gateway] (listen, TLS files, API keys, JWT keys loaded);
//!                     upstream.rs: [[upstream]] (a command, or a url with its credentials);
//!                     retention.rs: [retention] (periods per compliance tag, apply_daily)
//! error.rs            which side failed: client, upstream, internal
//! jsonrpc/            NDJSON framing with a size limit; classification of raw bytes;
//!                     salvage.rs: what a lenient peer could read of a refused line;
//!                     names.rs: member names as case-insensitive peers compare them;
//!                     members.rs: reading parts of a validated line again without
//!                     re-checking their strings (call params, arguments, results);
//!                     surrogates.rs: lone `\uD800`-style escapes read as U+FFFD in a copy
//! mcp.rs              borrowed views of the few MCP params and results the proxy reads
//! proxy/pipeline/     classify -> assess -> record -> forward or refuse -> correlate -> record;
//!                     access.rs (a tools/call assessed, its access event recorded, then
//!                     forwarded, held or blocked), refuse.rs (answers and events in place of forwarding), confirm.rs
//!                     (held calls), ends.rs (a call's end and its events), batch.rs
//!                     (client and server batches), tools.rs (tools/list pins and
//!                     filtering), reload.rs (policy reloads), rounds.rs (MRTR rounds,
//!                     and what a session learnt: tags for sequence rules, tools'
//!                     annotations; shared by a principal's sessionless gateway requests),
//!                     tasks.rs
//!                     (calls that became tasks: tasks/result, tasks/get, tasks/cancel),
//!                     owners.rs (at the gateway, the tasks each principal created: task
//!                     requests about others' refused, tasks/list filtered), lines.rs (a
//!                     line with lone surrogates read through its copy, the original
//!                     forwarded; a gateway request's HTTP context), recent.rs
//!                     (ids remembered after their request ended), deadlines.rs (calls
//!                     past their timeout; a call's progress moves its deadline), asks.rs
//!                     (a server's elicitation or sampling question and the client's
//!                     answer: judged, recorded as a server_request event, forwarded)
//! proxy/pool/         warm children shared by sessionless 2026-07-28 requests, per upstream and
//!                     principal: a lease stands where a child's pipes would, ids remapped to
//!                     the child's and restored for the client (remap.rs: the byte edits);
//!                     the child's output read only while the principal's budget has room
//! proxy/stdio.rs      the server side of a session (spawn, write, read, time out, supervise,
//!                     end the process group: run_session), shared by both front doors; the
//!                     stdio front door on top of it (client fds, signals);
//!                     servers' orphans adopted, reaped, and ended at exit (both doors)
//! proxy/warden.rs     the second process (`mcp-audit-proxy warden`) that ends the servers'
//!                     process groups when the proxy is killed (told of each group through
//!                     a pipe; acts at its EOF); replaced by a watching thread if it exits
//! proxy/remote/       a `url` upstream standing where the child would: the lines the core
//!                     forwards POSTed over Streamable HTTP (hyper + rustls, pooled), answers
//!                     (JSON, SSE, the GET stream) turned back into lines; failures answered
//!                     with -32011 naming the upstream; lines.rs: what the link reads
//!                     of a message (its head, the id an answer answers, one line);
//!                     sse.rs: a bounded SSE parser;
//!                     params.rs: Mcp-Param-* headers from the tools' x-mcp-header;
//!                     cookies.rs: the cookies the upstream sets, sent back per session;
//!                     tls.rs: the TLS client (ca_file or system roots, a ca_file
//!                     certificate pinned as it is; hints for refused certificates);
//!                     address.rs: what errors and logs may say of its address and of
//!                     where it redirects (the origin, never a path or query)
//! proxy/http/         the HTTP front door (MCP Streamable HTTP on hyper, TLS by rustls):
//!                     mod.rs (listener, TLS, routing, drain), refusal.rs (requests refused
//!                     before a session, recorded; summaries past a quota), request.rs
//!                     (POST/GET/DELETE; JSON or SSE answers), opening.rs (sessions opened
//!                     within the caps), session.rs (one server and pipeline
//!                     per session; answers dispatched to the POST or stream awaiting them,
//!                     progress to its request's stream), budget.rs (the bytes a client
//!                     that does not read may hold: per session, or per principal and
//!                     upstream for sessionless requests; stuck connections cut; a shared
//!                     server's messages admitted),
//!                     auth.rs (API keys, JWTs, Host/Origin, RFC 9728 metadata),
//!                     credentials.rs (the accepted ones, replaced on reload), headers.rs
//!                     (2026-07-28 Mcp-Method/Mcp-Name vs body), body.rs (JSON and SSE bodies),
//!                     metrics.rs (/metrics), limit.rs (a quota on refusal events of
//!                     unauthenticated requests), cors.rs (CORS for allowed origins, when
//!                     configured), retention.rs (daily retention, recorded as an event)
//! proxy/reload.rs     SIGHUP and config file changes: the [risk] policy of every session,
//!                     and the gateway's credentials (http/credentials.rs) reloaded
//! proxy/fdio.rs       non-blocking client pipes (no thread hop per read or write); whether
//!                     the client's stdin was handed to a session (else main answers the
//!                     first request with the start-up error)
//! policy/             the risk engine: [risk] config (settings.rs), rules.rs (pointers,
//!                     matchers, detectors), classify/ (sensitive data), secrets/
//!                     (credentials by shape; named.rs: by key id and by name; words.rs: the
//!                     label and credential-name words found in one pass), strict.rs
//!                     (arguments without duplicate keys, or keys that differ only in
//!                     case), embedded.rs (JSON inside a string argument read as the
//!                     servers that decode it read it: Python's `json`), pins.rs (tool
//!                     definitions pinned in the store folder),
//!                     tree.rs (a result read once, strings borrowed, for its shape and
//!                     its scan), admit.rs (what is refused before assessment: loose tool
//!                     names, arguments not one object; the pipeline and `policy test`),
//!                     changes.rs (what a reload changed, and whether it may weaken);
//!                     assess, protect, redact
//! audit/              AuditEvent (the stable JSON), the writer thread with group commit
//!                     (each event prepared alone: personal fields sealed from the event, a
//!                     damaged user key failing that user's events only; outages:
//!                     on_store_failure, recovery, the size budget; writer_checkpoints.rs:
//!                     when a signed checkpoint is due, and one as a journal opens),
//!                     bound.rs (stored arguments and error texts capped, cuts hashed),
//!                     settle.rs (at start, off the message path: the calls killed or
//!                     crashed proxies left open are ended in this process's journal)
//! store/              journal.rs (durable record, CRC'd segments), journals.rs (one
//!                     journal per writing process), index.rs (sled: references into the
//!                     journals by id, posting lists by eight fields, links), query.rs
//!                     (filters; the most selective posting lists, newest first, to the
//!                     limit), holder.rs (the one process feeding the index from every
//!                     journal; takeover), handoff.rs (the writer's durable records' index
//!                     keys handed to its indexer, which then reads its journal only at a
//!                     gap), serve.rs (the holder answering `events` over
//!                     index.sock, so queries skip opening sled), follow.rs (tailing every journal for --follow),
//!                     chain.rs (canonical records hash-chained per journal), canonical.rs
//!                     (RFC 8785 with numbers as written), canonical_ser.rs (that form
//!                     written from an event, no re-parse), checkpoint.rs
//!                     (signed heads, keys), verify.rs (tamper check of journals,
//!                     checkpoints, index; the store's own findings, which compliance
//!                     counts too, and the losses analytics refuse: mod.rs lost_records),
//!                     export.rs (a verifiable time range in one file),
//!                     marker.rs (store.json: a store, of which layout; bad folders refused),
//!                     usage.rs (bytes by part, for store status, the budget, /metrics)
//!                     settle.rs (a stopped journal's open calls, read once under its LOCK;
//!                     SETTLING / SETTLED)
//!                     retention.rs (expired events removed: purge statements, segments
//!                     removed or rewritten, index entries dropped)
//!                     personal.rs (personal fields sealed per user; keys; erasure),
//!                     erasures.rs (verify, events: no key gone without its audit/erase event)
//!                     scan.rs (the calls of a time range in one pass over the journals,
//!                     on several threads, ends joined per journal, each journal's hash
//!                     chain walked on the way when asked, verify.rs's JournalWalk;
//!                     scan/skeleton.rs: what is decoded of a record; scan/events.rs:
//!                     every event of a range, to one consumer per reading thread)
//! analytics/          after the fact, never on the message path: calls (access + end
//!                     joined, as they come; across journals once all are read), read.rs (calls from the store through
//!                     store/scan.rs, in no particular order), anomalies.rs (four
//!                     families, population context; anomalies/held.rs the calls held as
//!                     56-byte rows, texts shared, filled as read::each_call hands them
//!                     on; network.rs the network family; temporal.rs off-hours and
//!                     bursts; pace.rs a day of busy minutes far beyond the user's
//!                     others), behaviour.rs (a user's and the tools' figures, the
//!                     behavioural risk score), quality.rs (precision/recall against
//!                     labelled traffic), compliance.rs (GDPR, HIPAA, PCI DSS rules:
//!                     compliance/survey.rs the facts of the window's events (order-free,
//!                     one survey per reading thread, merged), read.rs the window through
//!                     store/scan/events.rs, the expired events, the chain walk; rules.rs
//!                     the rules per clause);
//!                     read::each_call streams calls with bounded state
//! report/             reports over the trail: tally.rs (a period's figures counted as calls
//!                     go by), model.rs (the Report, its JSON; findings, trends,
//!                     recommendations with their causes), render.rs (HTML and Markdown from
//!                     MiniJinja templates, auto-escaped), svg.rs (inline bar and line charts)
//! alerts/             real-time alerts, off the message path: fed by the audit writer once
//!                     events are durable (bounded queue, drops counted); detect.rs (blocked,
//!                     refused, high-risk calls; incremental first use, new network, many
//!                     networks, bursts; bounded per-user state), group.rs (one alert per user
//!                     and kind per window), webhook.rs (signed JSON POST, retries); alerts
//!                     go to the log, the store (`alert` events) and the webhook
//! telemetry.rs        the proxy's own log lines: queued without blocking, written by a
//!                     thread of their own to stderr or log.file; drops counted and reported;
//!                     control characters escaped there and in the commands' output (printable;
//!                     one_line for a table's cells: line breaks and invisible characters too)
//! ```
//!
//! # Data flow of one `tools/call`
//!
//! Bytes in -> frame (size limit, UTF-8) -> (lone surrogate escapes read as U+FFFD in a copy
//! of the same length; what is forwarded is taken from the original) -> classify by
//! `method`, whatever the id (a line
//! refused as invalid is read as a lenient server would, and every `tools/call` it is or may
//! be is recorded as refused; one without an id is never forwarded) -> decode `params` into a
//! borrowed view -> arguments parsed strictly (a repeated key is refused) -> context (session,
//! era, client, server) -> assess risk with the policy in force (score, level, reasons, tags)
//! -> a blocked call is recorded (access + failure, `blocked`) and answered with `-32010`,
//! never forwarded; a call to confirm is recorded and held while the person at the client is
//! asked (elicitation, or an input_required round in 2026-07-28) -> otherwise the access
//! event, with sensitive data protected, is recorded (the writer thread seals it into its
//! journal's hash chain; durable before forwarding in `sync` mode) -> forward the
//! **original bytes** -> the response is framed and classified -> correlated by id to the
//! waiting context (an answer to a call the server never received, held or answered by the
//! proxy, is dropped; the answer to a `tasks/result`, or a 2026-07-28 `tasks/get` at a terminal status, is the task's call's second end) -> the result
//! is read once and scanned (tags, raised risk) -> the execution or failure event is recorded (durable
//! before the client sees it in `sync` mode) -> the original response bytes go to the client
//! (masked only when `redact_results` asks; if it cannot reach the client (a failed write on
//! stdio; on the gateway, a closed request whose stream is not resumed) the call gets a
//! failure event saying its answer was not delivered). Everything that is not a `tools/call` is
//! forwarded untouched after classification, except `tools/list` results (their tool
//! definitions are compared with their pins, and tools the caller may never call are
//! removed), what the server sends the client under `redact_results` (a call's error
//! answer, answers to the client's other requests and unmatched ones, its own requests' and
//! notifications' params: masked), and what
//! the client sends the proxy itself (answers to its confirmation questions, cancellations of
//! calls held for them: never forwarded). The client's answer to a server's
//! `elicitation/create` or `sampling/createMessage` (2025 revisions) is scanned and recorded
//! as a `server_request` event with the question (durable before forwarding in `sync`
//! mode), then forwarded unchanged. Each direction's queue holds at most 1,024
//! messages and 32 MiB (a longer message waits alone; the timer's messages are not held back
//! by the bytes).
//!
//! Through the gateway, the same line flow runs per session, after the HTTP checks: Host and
//! Origin -> credential (API key or JWT; identity never from headers or `_meta`) -> session
//! (`Mcp-Session-Id`, bound to the principal; a new one, with its own server process, for
//! `initialize`; a session core per request for sessionless 2026-07-28, on a child shared
//! with the principal's other sessionless requests, ids remapped below the core so that it
//! sees the client's) -> 2026 routing headers against
//! the body -> the body as one line into the session's pipeline, with the request's HTTP
//! context for its events -> answers released by the pipeline go, by request id, to the POST
//! that carried the request (JSON or SSE); server requests and notifications to an open POST
//! stream or the GET stream. A request refused before the pipeline is recorded by the gateway
//! itself (`refused`, `metadata.http.status_code`): each `tools/call` in it as an access and
//! its end, as the pipeline records a refused call; a body without one as a lone
//! `tool_failure`.
//!
//! To a `url` upstream, either door's session core writes its forwarded lines to a
//! `RemoteServer` instead of a child's stdin: each line becomes a POST (`initialize` alone;
//! its `Mcp-Session-Id` and version on every later request; 2026-07-28 routing headers from
//! the body; the upstream's own credentials), and what comes back becomes server lines for
//! the same correlation and end events as a child's output.

pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod jsonrpc;
pub mod mcp;
pub mod policy;
pub mod progress;
pub mod proxy;
pub mod report;
pub mod store;
pub mod telemetry;
#[cfg(test)]
mod test_rng;
