//! A month of realistic MCP tool traffic, as audit events, for measuring the analytics
//! (issue 10 item 2): anomaly detectors are judged on traffic full of benign change, with
//! labelled anomalies injected into it.
//!
//! ```text
//! cargo run --release --example traffic -- --seed 1 --out month.jsonl --labels labels.json
//! cargo run --release --example traffic -- --seed 1 --no-anomalies --out clean.jsonl
//! ```
//!
//! The events are the store's documented JSON lines (`tool_access` + its end, linked), in time
//! order, ready for `mcp-audit-proxy import`. The labels file lists every injected anomaly
//! (family, kind, severity, subject, window, evidence event ids), the benign changes of the
//! month, and the context an operator would configure (service accounts, networks and their
//! places). The same seed gives the same benign traffic with and without `--no-anomalies`,
//! event ids included, so false alarms can be counted on the clean month.
//!
//! What is in a month (all from the seed):
//! * people in four roles (engineering, analytics, support, finance) in three offices and
//!   at home over the VPN, each with their own time zone, hours, pace, tools and client;
//!   four service accounts running around the clock;
//! * benign change that naive detectors flag: a team-wide rollout of a new tool, client
//!   auto-updates, a VPN renumbering, new hires, on-call nights, month-end load in finance,
//!   a public holiday in one office, DHCP moving people within their office network;
//! * injected anomalies of four families (statistical, behavioural, temporal, network), each
//!   kind at three severities (obvious, moderate, subtle).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use clap::Parser;
use mcp_audit_proxy::audit::event::{AuditEvent, EventId, HttpContext, Metadata};
use mcp_audit_proxy::audit::{EventType, Outcome, RiskLevel};
use mcp_audit_proxy::jsonrpc::RequestId;
use mcp_audit_proxy::mcp::Era;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
const MINUTE: u64 = 60_000;

#[derive(Parser)]
#[command(about = "Generates a month of labelled MCP audit traffic")]
struct Args {
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Days of traffic.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// People (service accounts come on top).
    #[arg(long, default_value_t = 56)]
    people: usize,
    /// First day, RFC 3339 (a Monday, midnight UTC).
    #[arg(long, default_value = "2026-10-05T00:00:00Z")]
    start: String,
    /// Leave the injected anomalies out (the same benign traffic).
    #[arg(long)]
    no_anomalies: bool,
    /// Where the events go (JSON lines); `-` for stdout.
    #[arg(long, default_value = "-")]
    out: PathBuf,
    /// Where the labels go (JSON).
    #[arg(long)]
    labels: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Engineering,
    Analytics,
    Support,
    Finance,
    Service,
}

/// An office network, or the VPN pool, and where it is.
struct Net {
    name: &'static str,
    /// First two octets.
    prefix: [u8; 2],
    place: &'static str,
    /// UTC offset of the people there, minutes.
    tz_min: i64,
}

const NETS: [Net; 4] = [
    Net {
        name: "office-berlin",
        prefix: [10, 1],
        place: "Berlin",
        tz_min: 60,
    },
    Net {
        name: "office-new-york",
        prefix: [10, 2],
        place: "New York",
        tz_min: -300,
    },
    Net {
        name: "office-singapore",
        prefix: [10, 3],
        place: "Singapore",
        tz_min: 480,
    },
    Net {
        name: "vpn",
        prefix: [172, 16],
        place: "VPN",
        tz_min: 0,
    },
];
/// The VPN pool after the renumbering day.
const VPN_AFTER: [u8; 2] = [172, 20];
/// Time zones of people at home on the VPN.
const REMOTE_TZ: [i64; 5] = [-480, -300, 0, 60, 330];

struct Tool {
    name: &'static str,
    risk: RiskLevel,
    /// Median execution time, ms.
    exec_ms: f64,
    /// Median output size, bytes.
    out_bytes: f64,
    /// Share of calls ending in an error result.
    error_rate: f64,
    tags: &'static [&'static str],
}

const TOOLS: [Tool; 14] = [
    Tool {
        name: "read_file",
        risk: RiskLevel::Low,
        exec_ms: 8.0,
        out_bytes: 6_000.0,
        error_rate: 0.02,
        tags: &[],
    },
    Tool {
        name: "search_docs",
        risk: RiskLevel::Low,
        exec_ms: 120.0,
        out_bytes: 3_000.0,
        error_rate: 0.01,
        tags: &[],
    },
    Tool {
        name: "list_tickets",
        risk: RiskLevel::Low,
        exec_ms: 90.0,
        out_bytes: 4_000.0,
        error_rate: 0.01,
        tags: &[],
    },
    Tool {
        name: "query_db",
        risk: RiskLevel::Medium,
        exec_ms: 60.0,
        out_bytes: 9_000.0,
        error_rate: 0.04,
        tags: &[],
    },
    Tool {
        name: "write_file",
        risk: RiskLevel::Medium,
        exec_ms: 12.0,
        out_bytes: 80.0,
        error_rate: 0.02,
        tags: &[],
    },
    Tool {
        name: "run_tests",
        risk: RiskLevel::Medium,
        exec_ms: 40_000.0,
        out_bytes: 20_000.0,
        error_rate: 0.15,
        tags: &[],
    },
    Tool {
        name: "run_shell",
        risk: RiskLevel::High,
        exec_ms: 300.0,
        out_bytes: 2_000.0,
        error_rate: 0.05,
        tags: &[],
    },
    Tool {
        name: "get_customer",
        risk: RiskLevel::High,
        exec_ms: 45.0,
        out_bytes: 1_500.0,
        error_rate: 0.01,
        tags: &["gdpr"],
    },
    Tool {
        name: "send_email",
        risk: RiskLevel::Medium,
        exec_ms: 400.0,
        out_bytes: 120.0,
        error_rate: 0.02,
        tags: &["gdpr"],
    },
    Tool {
        name: "http_post",
        risk: RiskLevel::High,
        exec_ms: 250.0,
        out_bytes: 500.0,
        error_rate: 0.03,
        tags: &[],
    },
    Tool {
        name: "export_report",
        risk: RiskLevel::Medium,
        exec_ms: 2_500.0,
        out_bytes: 60_000.0,
        error_rate: 0.02,
        tags: &[],
    },
    Tool {
        name: "payments_refund",
        risk: RiskLevel::High,
        exec_ms: 700.0,
        out_bytes: 300.0,
        error_rate: 0.03,
        tags: &["pci_dss"],
    },
    Tool {
        name: "delete_file",
        risk: RiskLevel::High,
        exec_ms: 10.0,
        out_bytes: 60.0,
        error_rate: 0.02,
        tags: &[],
    },
    Tool {
        name: "summarize_doc",
        risk: RiskLevel::Low,
        exec_ms: 1_800.0,
        out_bytes: 2_500.0,
        error_rate: 0.02,
        tags: &[],
    },
];

fn tool(name: &str) -> usize {
    TOOLS
        .iter()
        .position(|t| t.name == name)
        .expect("known tool")
}

/// The tool mix of a role: (tool, weight).
fn mix(role: Role) -> &'static [(&'static str, f64)] {
    match role {
        Role::Engineering => &[
            ("read_file", 30.0),
            ("search_docs", 12.0),
            ("write_file", 14.0),
            ("run_tests", 6.0),
            ("query_db", 6.0),
            ("list_tickets", 6.0),
            ("run_shell", 4.0),
            ("http_post", 1.0),
            ("delete_file", 1.0),
        ],
        Role::Analytics => &[
            ("query_db", 35.0),
            ("read_file", 15.0),
            ("search_docs", 12.0),
            ("export_report", 6.0),
            ("list_tickets", 3.0),
        ],
        Role::Support => &[
            ("list_tickets", 30.0),
            ("get_customer", 20.0),
            ("search_docs", 15.0),
            ("send_email", 10.0),
            ("read_file", 5.0),
        ],
        Role::Finance => &[
            ("query_db", 20.0),
            ("export_report", 10.0),
            ("read_file", 8.0),
            ("payments_refund", 3.0),
            ("search_docs", 4.0),
        ],
        Role::Service => &[("read_file", 1.0)],
    }
}

struct Person {
    id: String,
    role: Role,
    /// Index into NETS (3: the VPN).
    net: usize,
    tz_min: i64,
    /// Local start of the working day, minutes after midnight.
    day_start: u64,
    /// Working day length, minutes.
    day_len: u64,
    /// Calls per working hour.
    rate: f64,
    /// Host part of the office address (DHCP moves it now and then).
    host: [u8; 2],
    client: usize,
    /// First day with traffic (new hires join mid-month).
    joins: u32,
    /// Week index of their on-call week (engineers only).
    on_call_week: Option<u32>,
    service: Option<Service>,
}

#[derive(Clone, Copy)]
enum Service {
    /// Reads every 10 minutes, around the clock.
    Backup,
    /// A burst of test runs at the top of each hour.
    Ci,
    /// A steady query every 2 minutes.
    Sync,
    /// A batch of reports at 02:00 UTC.
    Reports,
}

/// Clients as `name/version` before and after their auto-update day.
const CLIENTS: [(&str, &str, &str, u32); 3] = [
    ("claude-desktop", "1.4.2", "1.5.0", 14),
    ("cursor", "0.45.1", "0.46.0", 21),
    ("vscode-copilot", "1.98.0", "1.98.0", 0),
];

/// One call, before it becomes two events.
#[derive(Clone)]
struct Call {
    t: u64,
    person: usize,
    tool: usize,
    session: String,
    ip: Ipv4Addr,
    client: String,
    arguments: Value,
    exec_ms: u64,
    out_bytes: u64,
    error: bool,
    /// Serial for the event ids: the same call has the same ids in every run of a seed.
    serial: u64,
    /// The anomaly this call is evidence of.
    label: Option<usize>,
}

struct Label {
    family: &'static str,
    kind: &'static str,
    severity: &'static str,
    subject: Value,
    from: u64,
    to: u64,
    explanation: String,
}

struct Gen {
    start: u64,
    days: u32,
    people: Vec<Person>,
    calls: Vec<Call>,
    serial: u64,
}

fn lognormal(rng: &mut SmallRng, median: f64, sigma: f64) -> f64 {
    // Box-Muller: a standard normal from two uniforms.
    let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    median * (sigma * z).exp()
}

fn exp_gap(rng: &mut SmallRng, per_hour: f64) -> u64 {
    let u: f64 = rng.random_range(1e-12..1.0);
    ((-u.ln() / per_hour) * HOUR as f64) as u64
}

fn pick<'a>(rng: &mut SmallRng, weights: &'a [(&'a str, f64)]) -> &'a str {
    let total: f64 = weights.iter().map(|w| w.1).sum();
    let mut x = rng.random_range(0.0..total);
    for (name, w) in weights {
        if x < *w {
            return name;
        }
        x -= w;
    }
    weights[weights.len() - 1].0
}

impl Gen {
    fn new(rng: &mut SmallRng, start: u64, days: u32, n: usize) -> Gen {
        let mut people = Vec::new();
        for i in 0..n {
            let role = match i % 20 {
                0..=8 => Role::Engineering,
                9..=12 => Role::Analytics,
                13..=16 => Role::Support,
                _ => Role::Finance,
            };
            // A fifth at home on the VPN, the rest in the three offices.
            let net = if rng.random_bool(0.2) {
                3
            } else {
                rng.random_range(0..3)
            };
            let tz_min = if net == 3 {
                REMOTE_TZ[rng.random_range(0..REMOTE_TZ.len())]
            } else {
                NETS[net].tz_min
            };
            let rate = match role {
                Role::Engineering => 12.0,
                Role::Analytics => 8.0,
                Role::Support => 15.0,
                Role::Finance => 6.0,
                Role::Service => 0.0,
            } * lognormal(rng, 1.0, 0.35);
            let joins = match i {
                7 => days.min(9),
                23 => days.min(17),
                _ => 0,
            };
            people.push(Person {
                id: format!("{}{:02}", prefix(role), i),
                role,
                net,
                tz_min,
                day_start: (lognormal(rng, 9.0, 0.06) * 60.0) as u64,
                day_len: (lognormal(rng, 8.5, 0.08) * 60.0) as u64,
                rate,
                host: [rng.random_range(1..255), rng.random_range(1..255)],
                client: rng.random_range(0..CLIENTS.len()),
                joins,
                on_call_week: None,
                service: None,
            });
        }
        // On call: one engineer a week, in turn.
        let engineers: Vec<usize> = (0..n)
            .filter(|&i| people[i].role == Role::Engineering && people[i].joins == 0)
            .collect();
        for (w, &e) in engineers.iter().take(days.div_ceil(7) as usize).enumerate() {
            people[e].on_call_week = Some(w as u32);
        }
        for (name, kind) in [
            ("svc-backup", Service::Backup),
            ("svc-ci", Service::Ci),
            ("svc-sync", Service::Sync),
            ("svc-reports", Service::Reports),
        ] {
            people.push(Person {
                id: name.into(),
                role: Role::Service,
                net: 0,
                tz_min: 0,
                day_start: 0,
                day_len: 24 * 60,
                rate: 0.0,
                host: [200, people.len() as u8],
                client: 2,
                joins: 0,
                on_call_week: None,
                service: Some(kind),
            });
        }
        Gen {
            start,
            days,
            people,
            calls: Vec::new(),
            serial: 0,
        }
    }

    /// The address of `p` at `t` in `session`: on the VPN, one address of the pool per session
    /// (the tunnel's); in an office, the host's, which DHCP moves about once a week.
    fn ip(&self, p: usize, t: u64, session: &str) -> Ipv4Addr {
        let person = &self.people[p];
        if person.net == 3 {
            let day = (t.saturating_sub(self.start) / DAY) as u32;
            let pool = if day >= 20 { VPN_AFTER } else { NETS[3].prefix };
            let h = session.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            return Ipv4Addr::new(pool[0], pool[1], (h >> 8) as u8 % 64, 1 + (h as u8 % 254));
        }
        let week = t.saturating_sub(self.start) / (7 * DAY);
        let [a, b] = NETS[person.net].prefix;
        Ipv4Addr::new(
            a,
            b,
            person.host[0],
            person.host[1].wrapping_add(week as u8 * 3),
        )
    }

    fn client(&self, p: usize, t: u64) -> String {
        let (name, before, after, day) = CLIENTS[self.people[p].client];
        let today = (t.saturating_sub(self.start) / DAY) as u32;
        // The update lands over the day, person by person.
        let lands = day as u64 * DAY + (p as u64 * 37 % 20) * HOUR;
        let version = if day > 0 && t.saturating_sub(self.start) >= lands && today >= day {
            after
        } else {
            before
        };
        format!("{name}/{version}")
    }

    fn push(
        &mut self,
        rng: &mut SmallRng,
        t: u64,
        p: usize,
        tool_name: &str,
        session: &str,
        label: Option<usize>,
    ) -> usize {
        let ti = tool(tool_name);
        let spec = &TOOLS[ti];
        let ip = self.ip(p, t, session);
        let client = self.client(p, t);
        let arguments = arguments(rng, tool_name, &self.people[p].id);
        let call = Call {
            t,
            person: p,
            tool: ti,
            session: session.to_string(),
            ip,
            client,
            arguments,
            exec_ms: lognormal(rng, spec.exec_ms, 0.5).max(1.0) as u64,
            out_bytes: lognormal(rng, spec.out_bytes, 0.6).max(10.0) as u64,
            error: rng.random_bool(spec.error_rate),
            serial: self.serial,
            label,
        };
        self.serial += 1;
        self.calls.push(call);
        self.calls.len() - 1
    }

    /// The benign month.
    fn benign(&mut self, rng: &mut SmallRng) {
        for p in 0..self.people.len() {
            if let Some(s) = self.people[p].service {
                self.service(rng, p, s);
                continue;
            }
            for day in 0..self.days {
                self.workday(rng, p, day);
            }
        }
    }

    fn service(&mut self, rng: &mut SmallRng, p: usize, kind: Service) {
        let end = self.start + self.days as u64 * DAY;
        let session = format!("s-{}", self.people[p].id);
        match kind {
            Service::Backup | Service::Sync => {
                let (step, name) = match kind {
                    Service::Backup => (10 * MINUTE, "read_file"),
                    _ => (2 * MINUTE, "query_db"),
                };
                let mut t = self.start + rng.random_range(0..step);
                while t < end {
                    self.push(rng, t, p, name, &session, None);
                    t += step + rng.random_range(0..5_000);
                }
            }
            Service::Ci => {
                let mut h = self.start;
                while h < end {
                    for k in 0..rng.random_range(2..6u64) {
                        let t = h + k * 20_000 + rng.random_range(0..10_000);
                        self.push(rng, t, p, "run_tests", &session, None);
                    }
                    h += HOUR;
                }
            }
            Service::Reports => {
                for day in 0..self.days as u64 {
                    let t = self.start + day * DAY + 2 * HOUR;
                    for k in 0..8 {
                        self.push(rng, t + k * 30_000, p, "export_report", &session, None);
                    }
                }
            }
        }
    }

    fn workday(&mut self, rng: &mut SmallRng, p: usize, day: u32) {
        let person = &self.people[p];
        if day < person.joins {
            return;
        }
        let weekday = day % 7; // the start is a Monday
        let week = day / 7;
        let on_call = person.on_call_week == Some(week);
        let tz = person.tz_min;
        // The New York office's holiday (the fourth Thursday of the month's run).
        let holiday = person.net == 1 && day == 24.min(self.days.saturating_sub(1)) && weekday == 3;
        let weekend = weekday >= 5;
        let mut rate = person.rate;
        let role = person.role;
        let month_end = day + 2 >= self.days;
        if role == Role::Finance && month_end {
            rate *= 3.0;
        }
        // Local midnight of this day, in UTC ms.
        let midnight = (self.start as i64 + day as i64 * DAY as i64 - tz * MINUTE as i64) as u64;
        let work = !(weekend || holiday) || rng.random_bool(0.04);
        if work {
            let from = midnight + person.day_start * MINUTE + rng.random_range(0..40) * MINUTE;
            let to = from + person.day_len * MINUTE;
            let factor = if weekend || holiday { 0.2 } else { 1.0 };
            self.sessions(rng, p, from, to, rate * factor, day);
        }
        if on_call && rng.random_bool(0.45) {
            // An incident at night: a short burst of engineering work.
            let at = midnight + rng.random_range(22 * 60..(24 + 5) * 60u64) * MINUTE;
            let until = at + rng.random_range(20..70) * MINUTE;
            self.sessions(rng, p, at, until, 14.0, day);
        }
    }

    /// Sessions of 30-120 minutes with short breaks, from `from` to `to`.
    fn sessions(&mut self, rng: &mut SmallRng, p: usize, from: u64, to: u64, rate: f64, day: u32) {
        let mut t = from;
        let mut n = 0;
        while t < to {
            let len = rng.random_range(30..120) * MINUTE;
            let session = format!("s-{}-{}-{}", self.people[p].id, day, n);
            let end = (t + len).min(to);
            let mut c = t + exp_gap(rng, rate);
            while c < end {
                let name = self.choose_tool(rng, p, c);
                self.push(rng, c, p, name, &session, None);
                c += exp_gap(rng, rate);
            }
            t = end + rng.random_range(5..40) * MINUTE;
            n += 1;
        }
    }

    fn choose_tool(&self, rng: &mut SmallRng, p: usize, t: u64) -> &'static str {
        let person = &self.people[p];
        let day = (t.saturating_sub(self.start) / DAY) as u32; // a zone east of UTC starts before it
        let month_end = day + 2 >= self.days;
        // The team-wide rollout: from day 8, most engineers and analysts adopt summarize_doc.
        let adopted = matches!(person.role, Role::Engineering | Role::Analytics)
            && day >= 8 + (p as u32 % 4)
            && !p.is_multiple_of(7);
        if adopted && rng.random_bool(0.12) {
            return "summarize_doc";
        }
        if person.role == Role::Finance && month_end && rng.random_bool(0.5) {
            return if rng.random_bool(0.5) {
                "export_report"
            } else {
                "query_db"
            };
        }
        pick(rng, mix(person.role))
    }
}

fn prefix(role: Role) -> &'static str {
    match role {
        Role::Engineering => "eng",
        Role::Analytics => "ana",
        Role::Support => "sup",
        Role::Finance => "fin",
        Role::Service => "svc",
    }
}

fn arguments(rng: &mut SmallRng, tool: &str, user: &str) -> Value {
    let n = rng.random_range(1..400);
    match tool {
        "read_file" | "write_file" | "delete_file" => json!({"path": format!("src/module_{n}.rs")}),
        "search_docs" | "summarize_doc" => {
            json!({"query": format!("how to configure service {n}")})
        }
        "list_tickets" => json!({"queue": (["billing", "access", "bugs"][n % 3]), "limit": 20}),
        "query_db" => {
            json!({"sql": format!("SELECT id, status FROM orders WHERE id > {n} LIMIT 50")})
        }
        "run_tests" => json!({"suite": format!("unit-{}", n % 12)}),
        "run_shell" => {
            json!({"command": (["git status", "ls -la", "cargo build", "make lint"][n % 4])})
        }
        "get_customer" => json!({"customer_id": format!("C{:06}", n * 97)}),
        "send_email" => {
            json!({"to": format!("customer{n}@clients.example.com"), "subject": "Your ticket"})
        }
        "http_post" => {
            json!({"url": format!("https://hooks.internal.example.com/deploy/{n}"), "body": "{}"})
        }
        "export_report" => {
            json!({"report": (["revenue", "churn", "usage"][n % 3]), "period": "month"})
        }
        "payments_refund" => {
            json!({"payment_id": format!("P{:07}", n * 131), "amount": (n % 90) + 10})
        }
        _ => json!({"user": user}),
    }
}

/// The injections: each kind at three severities, on people and times chosen by `rng`.
fn inject(g: &mut Gen, rng: &mut SmallRng, labels: &mut Vec<Label>) {
    let humans: Vec<usize> = (0..g.people.len())
        .filter(|&p| {
            g.people[p].service.is_none()
                && g.people[p].joins == 0
                && g.people[p].on_call_week.is_none()
        })
        .collect();
    let severities = ["obvious", "moderate", "subtle"];
    // A working moment of `p` on a weekday between day 5 and the end: local 10:00-16:00.
    // Weekdays after the first week (a baseline before them), before month-end; `main`
    // asks for 14 days at least, so there are some.
    let weekdays: Vec<u64> = (7..g.days as u64)
        .filter(|d| d % 7 < 5 && d + 2 < g.days as u64)
        .collect();
    let work_time = |g: &Gen, rng: &mut SmallRng, p: usize| -> u64 {
        let day = weekdays[rng.random_range(0..weekdays.len())];
        let local = rng.random_range(10 * 60..16 * 60) as i64;
        (g.start as i64 + day as i64 * DAY as i64 + (local - g.people[p].tz_min) * MINUTE as i64)
            as u64
    };
    let mut used = std::collections::HashSet::new();
    let mut someone = |rng: &mut SmallRng| loop {
        let p = humans[rng.random_range(0..humans.len())];
        if used.insert(p) || used.len() >= humans.len() {
            return p;
        }
    };
    let session = |p: &Person, k: usize| format!("s-{}-x{k}", p.id);
    for (s, &severity) in severities.iter().enumerate() {
        // --- statistical ---
        // A user calling far faster than they ever do, for an hour.
        let p = someone(rng);
        let t0 = work_time(g, rng, p);
        let times = [12.0, 6.0, 3.5][s];
        let rate = g.people[p].rate * times;
        let l = labels.len();
        let mut t = t0;
        while t < t0 + HOUR {
            let name = pick(rng, mix(g.people[p].role));
            g.push(rng, t, p, name, &session(&g.people[p], l), Some(l));
            t += exp_gap(rng, rate);
        }
        labels.push(Label {
            family: "statistical",
            kind: "call_rate",
            severity,
            subject: json!({"user": g.people[p].id}),
            from: t0,
            to: t0 + HOUR,
            explanation: format!(
                "{} calls at {times}x their usual rate for an hour",
                g.people[p].id
            ),
        });
        // A user's reads returning far more data than theirs ever do (bulk extraction).
        let p = someone(rng);
        let t0 = work_time(g, rng, p);
        let factor = [400.0, 60.0, 15.0][s];
        let l = labels.len();
        for k in 0..[8, 5, 4][s] {
            let i = g.push(
                rng,
                t0 + k * 4 * MINUTE,
                p,
                "query_db",
                &session(&g.people[p], l),
                Some(l),
            );
            g.calls[i].out_bytes =
                (TOOLS[tool("query_db")].out_bytes * factor * lognormal(rng, 1.0, 0.2)) as u64;
        }
        labels.push(Label {
            family: "statistical",
            kind: "output_size",
            severity,
            subject: json!({"user": g.people[p].id}),
            from: t0,
            to: t0 + 40 * MINUTE,
            explanation: format!(
                "query_db results {factor}x the usual size for {}",
                g.people[p].id
            ),
        });
        // A tool failing far more often than it does, for two hours, for everyone.
        let name = ["search_docs", "list_tickets", "read_file"][s];
        let rate = [0.8, 0.4, 0.22][s];
        let p0 = someone(rng);
        let t0 = work_time(g, rng, p0);
        let l = labels.len();
        let ti = tool(name);
        for c in g
            .calls
            .iter_mut()
            .filter(|c| c.tool == ti && c.t >= t0 && c.t < t0 + 2 * HOUR && c.label.is_none())
        {
            if rng.random_bool(rate) {
                c.error = true;
                c.label = Some(l);
            }
        }
        labels.push(Label {
            family: "statistical",
            kind: "error_rate",
            severity,
            subject: json!({"tool": name}),
            from: t0,
            to: t0 + 2 * HOUR,
            explanation: format!(
                "{name} failing {}% of calls for two hours",
                (rate * 100.0) as u32
            ),
        });

        // --- behavioural ---
        // A tool nobody in the person's role uses.
        let p = loop {
            let p = someone(rng);
            if matches!(g.people[p].role, Role::Support | Role::Analytics) {
                break p;
            }
        };
        let t0 = work_time(g, rng, p);
        let (name, n) = [("run_shell", 6), ("delete_file", 3), ("payments_refund", 1)][s];
        let l = labels.len();
        for k in 0..n {
            g.push(
                rng,
                t0 + k * 3 * MINUTE,
                p,
                name,
                &session(&g.people[p], l),
                Some(l),
            );
        }
        labels.push(Label {
            family: "behavioural",
            kind: "first_use",
            severity,
            subject: json!({"user": g.people[p].id, "tool": name}),
            from: t0,
            to: t0 + n * 3 * MINUTE + MINUTE,
            explanation: format!(
                "{} ({:?}) used {name} for the first time",
                g.people[p].id, g.people[p].role
            ),
        });
        // Reads of customer data, then data sent out.
        let p = loop {
            let p = someone(rng);
            if g.people[p].role == Role::Support {
                break p;
            }
        };
        let t0 = work_time(g, rng, p);
        let reads = [25, 8, 3][s];
        let l = labels.len();
        let sess = session(&g.people[p], l);
        for k in 0..reads {
            g.push(rng, t0 + k * 20_000, p, "get_customer", &sess, Some(l));
        }
        let out_at = t0 + reads * 20_000 + 2 * MINUTE;
        let (out_tool, arguments) = [
            (
                "http_post",
                json!({"url": "https://paste.example.net/api/new", "body": "<customer records>"}),
            ),
            (
                "http_post",
                json!({"url": "https://files.example.org/upload", "body": "<export>"}),
            ),
            (
                "send_email",
                json!({"to": "someone@freemail.example", "subject": "notes"}),
            ),
        ][s]
            .clone();
        let i = g.push(rng, out_at, p, out_tool, &sess, Some(l));
        g.calls[i].arguments = arguments;
        labels.push(Label {
            family: "behavioural",
            kind: "read_then_send",
            severity,
            subject: json!({"user": g.people[p].id}),
            from: t0,
            to: out_at + MINUTE,
            explanation: format!(
                "{} read {reads} customers, then sent data out with {out_tool}",
                g.people[p].id
            ),
        });
        // A client the person never used.
        let p = someone(rng);
        let t0 = work_time(g, rng, p);
        let agent = [
            "python-httpx/0.27.0",
            "curl/8.5.0",
            CLIENTS[(g.people[p].client + 1) % 2].0,
        ][s];
        let l = labels.len();
        for k in 0..[10, 5, 3][s] {
            let name = pick(rng, mix(g.people[p].role));
            let i = g.push(
                rng,
                t0 + k * 2 * MINUTE,
                p,
                name,
                &session(&g.people[p], l),
                Some(l),
            );
            g.calls[i].client = if s == 2 {
                format!("{agent}/0.45.1")
            } else {
                agent.to_string()
            };
        }
        labels.push(Label {
            family: "behavioural",
            kind: "new_client",
            severity,
            subject: json!({"user": g.people[p].id}),
            from: t0,
            to: t0 + 25 * MINUTE,
            explanation: format!(
                "{} called tools from a client they never used ({agent})",
                g.people[p].id
            ),
        });
        // Arguments unlike anything the person sends to that tool.
        let p = loop {
            let p = someone(rng);
            if matches!(g.people[p].role, Role::Engineering | Role::Analytics) {
                break p;
            }
        };
        let t0 = work_time(g, rng, p);
        let (name, arguments) = [
            ("read_file", json!({"path": "../../../../etc/shadow"})),
            ("query_db", json!({"sql": "SELECT * FROM payroll"})),
            ("read_file", json!({"path": "/home/fin40/.ssh/id_ed25519"})),
        ][s]
            .clone();
        let l = labels.len();
        let i = g.push(rng, t0, p, name, &session(&g.people[p], l), Some(l));
        g.calls[i].arguments = arguments;
        labels.push(Label {
            family: "behavioural",
            kind: "unusual_arguments",
            severity,
            subject: json!({"user": g.people[p].id, "tool": name}),
            from: t0,
            to: t0 + MINUTE,
            explanation: format!("{} sent {name} arguments unlike their own", g.people[p].id),
        });

        // --- temporal ---
        // Work in the middle of the person's night.
        let p = someone(rng);
        // A Monday to Thursday night (the next morning is a working day).
        let day = loop {
            let d = weekdays[rng.random_range(0..weekdays.len())];
            if d % 7 < 4 {
                break d;
            }
        };
        let t0 = (g.start as i64
            + day as i64 * DAY as i64
            + (3 * 60 - g.people[p].tz_min) * MINUTE as i64) as u64;
        let n = [30, 10, 4][s];
        let l = labels.len();
        for k in 0..n {
            let name = pick(rng, mix(g.people[p].role));
            g.push(
                rng,
                t0 + k * 90_000,
                p,
                name,
                &session(&g.people[p], l),
                Some(l),
            );
        }
        labels.push(Label {
            family: "temporal",
            kind: "off_hours",
            severity,
            subject: json!({"user": g.people[p].id}),
            from: t0,
            to: t0 + n * 90_000 + MINUTE,
            explanation: format!("{} worked at 03:00 their time", g.people[p].id),
        });
        // A burst: many calls within a minute.
        let p = someone(rng);
        let t0 = work_time(g, rng, p);
        let n = [80, 35, 18][s];
        let l = labels.len();
        for k in 0..n {
            g.push(
                rng,
                t0 + k * (60_000 / n),
                p,
                "read_file",
                &session(&g.people[p], l),
                Some(l),
            );
        }
        labels.push(Label {
            family: "temporal",
            kind: "burst",
            severity,
            subject: json!({"user": g.people[p].id}),
            from: t0,
            to: t0 + MINUTE,
            explanation: format!("{} made {n} calls within a minute", g.people[p].id),
        });

        // --- network ---
        // A network the company does not own, then several at once.
        let p = someone(rng);
        let t0 = work_time(g, rng, p);
        let ips: Vec<Ipv4Addr> = match s {
            0 => (0..6)
                .map(|k| Ipv4Addr::new(185, 220, 101, 10 + k))
                .collect(),
            1 => (0..3).map(|k| Ipv4Addr::new(34, 91, 7, 20 + k)).collect(),
            _ => vec![Ipv4Addr::new(203, 0, 113, 77)],
        };
        let l = labels.len();
        for (k, ip) in ips.iter().enumerate() {
            for j in 0..3u64 {
                let name = pick(rng, mix(g.people[p].role));
                let i = g.push(
                    rng,
                    t0 + k as u64 * 2 * MINUTE + j * 20_000,
                    p,
                    name,
                    &session(&g.people[p], l),
                    Some(l),
                );
                g.calls[i].ip = *ip;
            }
        }
        labels.push(Label {
            family: "network",
            kind: "new_network",
            severity,
            subject: json!({"user": g.people[p].id}),
            from: t0,
            to: t0 + (ips.len() as u64 * 2 + 1) * MINUTE,
            explanation: format!(
                "{} called from {} address(es) outside the company's networks",
                g.people[p].id,
                ips.len()
            ),
        });
        // One outside address acting for several people.
        let n_users = [10, 5, 3][s];
        let ip = Ipv4Addr::new(198, 51, 100, 10 + s as u8);
        let p0 = someone(rng);
        let t0 = work_time(g, rng, p0);
        let l = labels.len();
        let mut who = Vec::new();
        for k in 0..n_users {
            let p = if k == 0 { p0 } else { someone(rng) };
            who.push(g.people[p].id.clone());
            let name = pick(rng, mix(g.people[p].role));
            let i = g.push(
                rng,
                t0 + k as u64 * 3 * MINUTE,
                p,
                name,
                &session(&g.people[p], l),
                Some(l),
            );
            g.calls[i].ip = ip;
        }
        labels.push(Label {
            family: "network",
            kind: "shared_address",
            severity,
            subject: json!({"ip": ip.to_string(), "users": who}),
            from: t0,
            to: t0 + n_users as u64 * 3 * MINUTE + MINUTE,
            explanation: format!("{ip} acted for {n_users} people within an hour"),
        });
        // Impossible travel between two offices.
        let p = loop {
            let p = someone(rng);
            if g.people[p].net < 3 {
                break p;
            }
        };
        let t0 = work_time(g, rng, p);
        let gap = [20 * MINUTE, 2 * HOUR, 5 * HOUR][s];
        let far = match (g.people[p].net, s) {
            (0, 2) => 1, // Berlin -> New York in 5 h
            (0, _) => 2, // Berlin -> Singapore
            (1, _) => 0, // New York -> Berlin
            _ => 0,      // Singapore -> Berlin
        };
        let l = labels.len();
        let i = g.push(rng, t0, p, "read_file", &session(&g.people[p], l), Some(l));
        let home_ip = g.calls[i].ip;
        let j = g.push(
            rng,
            t0 + gap,
            p,
            "read_file",
            &format!("{}-b", session(&g.people[p], l)),
            Some(l),
        );
        let [a, b] = NETS[far].prefix;
        g.calls[j].ip = Ipv4Addr::new(a, b, 9, 9);
        labels.push(Label {
            family: "network",
            kind: "impossible_travel",
            severity,
            subject: json!({"user": g.people[p].id}),
            from: t0,
            to: t0 + gap + MINUTE,
            explanation: format!(
                "{} at {home_ip} ({}) then {} later at {} ({})",
                g.people[p].id,
                NETS[g.people[p].net].place,
                humantime::format_duration(Duration::from_millis(gap)),
                g.calls[j].ip,
                NETS[far].place
            ),
        });
    }
}

/// A ULID for `serial` at `t`: the time part from `t`, the random part from the seed and the
/// serial, so one call keeps its ids across runs of a seed.
fn ulid(seed: u64, serial: u64, half: u64, t: u64) -> ulid::Ulid {
    let mut x = seed ^ serial.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (half << 63);
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let random = ((next() as u128) << 64 | next() as u128) & ((1u128 << 80) - 1);
    ulid::Ulid::from_parts(t, random)
}

fn events(g: &Gen, c: &Call, seed: u64) -> [AuditEvent; 2] {
    let person = &g.people[c.person];
    let spec = &TOOLS[c.tool];
    let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
    let (access_id, end_id) = (
        EventId(ulid(seed, c.serial, 0, c.t)),
        EventId(ulid(seed, c.serial, 1, c.t + c.exec_ms)),
    );
    let http = HttpContext {
        client_address: Some(c.ip.to_string()),
        user_agent: Some(c.client.clone()),
        roles: vec![format!("{:?}", person.role).to_lowercase()],
        ..HttpContext::default()
    };
    let base = Metadata {
        request_id: Some(RequestId::Int((c.serial % 1_000_000) as i64)),
        protocol_version: Some("2025-06-18".into()),
        protocol_era: Era::V2025,
        auth_method: Some(
            if person.service.is_some() {
                "api_key"
            } else {
                "jwt"
            }
            .into(),
        ),
        user_agent: Some(c.client.clone()),
        tool_version: Some("internal-tools/3.2.0".into()),
        http: Some(Box::new(http)),
        ..Metadata::default()
    };
    let tags: Vec<String> = spec.tags.iter().map(|t| t.to_string()).collect();
    let access = AuditEvent {
        event_id: access_id,
        timestamp: at(c.t),
        event_type: EventType::ToolAccess,
        user_id: person.id.clone(),
        tool_name: Some(spec.name.into()),
        action: "tools/call".into(),
        result: Outcome::Initiated,
        metadata: Metadata {
            arguments: serde_json::value::to_raw_value(&c.arguments).ok(),
            ..base.clone()
        },
        risk_level: spec.risk,
        compliance_tags: tags.clone(),
        session_id: c.session.clone(),
        upstream: "tools".into(),
        linked_event_id: Some(end_id),
    };
    let end = AuditEvent {
        event_id: end_id,
        timestamp: at(c.t + c.exec_ms),
        event_type: EventType::ToolExecution,
        result: if c.error {
            Outcome::Error
        } else {
            Outcome::Success
        },
        metadata: Metadata {
            execution_time_us: Some(c.exec_ms * 1000),
            output_size_bytes: Some(c.out_bytes),
            content_types: vec!["text".into()],
            error_messages: if c.error {
                vec!["the tool failed".into()]
            } else {
                Vec::new()
            },
            ..base
        },
        linked_event_id: Some(access_id),
        ..access.clone()
    };
    let mut access = access;
    // The journal is append-only: an access event is written before its end exists.
    access.linked_event_id = None;
    [access, end]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.days < 14 || args.people < 20 {
        return Err(format!(
            "--days {} --people {}: the injections need a baseline week and a second working week, and 20 people at least (--days 14 --people 20 or more)",
            args.days, args.people
        )
        .into());
    }
    let start = humantime::parse_rfc3339(&args.start)?
        .duration_since(UNIX_EPOCH)?
        .as_millis() as u64;
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let mut g = Gen::new(&mut rng, start, args.days, args.people);
    g.benign(&mut rng);
    let mut labels = Vec::new();
    if !args.no_anomalies {
        // Its own stream: the benign traffic is the same with and without injections.
        let mut rng = SmallRng::seed_from_u64(args.seed ^ 0xA5A5_5A5A_0F0F_F0F0);
        g.serial = 1 << 40;
        inject(&mut g, &mut rng, &mut labels);
    }
    // By the access event's id: time first, then the id's random part, so the file is in id
    // order (what the store and `events` sort by).
    g.calls
        .sort_by_cached_key(|c| ulid(args.seed, c.serial, 0, c.t));

    let mut out: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::new(File::create(&args.out)?))
    };
    let mut evidence: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    // Ends are written in time order among the accesses: held until an access is later.
    let mut ends: BTreeMap<EventId, AuditEvent> = BTreeMap::new();
    let mut written = 0u64;
    let mut write = |out: &mut dyn Write, e: &AuditEvent| -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, e)?;
        out.write_all(b"\n")?;
        written += 1;
        Ok(())
    };
    for c in &g.calls {
        let [access, end] = events(&g, c, args.seed);
        if let Some(l) = c.label {
            evidence
                .entry(l)
                .or_default()
                .extend([access.event_id.to_string(), end.event_id.to_string()]);
        }
        while let Some(first) = ends.first_entry() {
            if *first.key() > access.event_id {
                break;
            }
            write(&mut out, &first.remove())?;
        }
        write(&mut out, &access)?;
        ends.insert(end.event_id, end);
    }
    while let Some((_, e)) = ends.pop_first() {
        write(&mut out, &e)?;
    }
    out.flush()?;

    if let Some(path) = &args.labels {
        let iso = |ms: u64| {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        };
        let anomalies: Vec<Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                json!({
                    "id": i, "family": l.family, "kind": l.kind, "severity": l.severity,
                    "subject": l.subject, "from": iso(l.from), "to": iso(l.to),
                    "explanation": l.explanation,
                    "evidence": evidence.get(&i).cloned().unwrap_or_default(),
                })
            })
            .collect();
        let people: Vec<Value> = g
            .people
            .iter()
            .map(|p| json!({"user": p.id, "role": format!("{:?}", p.role).to_lowercase(), "network": NETS[p.net].name, "tz_offset_min": p.tz_min, "joins_day": p.joins, "on_call_week": p.on_call_week}))
            .collect();
        let doc = json!({
            "seed": args.seed,
            "start": args.start,
            "days": args.days,
            "events": written,
            "anomalies": anomalies,
            "benign_changes": [
                "day 8-11: engineering and analytics adopt the new tool summarize_doc",
                "day 9 and 17: two new hires start",
                "day 14: claude-desktop 1.4.2 -> 1.5.0 auto-update; day 21: cursor 0.45.1 -> 0.46.0",
                "day 20: the VPN pool moves from 172.16.0.0/16 to 172.20.0.0/16",
                "weekly: one engineer on call works some nights",
                "last two days: finance month-end load (3x)",
                "day 24 (a Thursday): the New York office is on holiday",
                "weekly: DHCP moves office addresses within the office network",
                "service accounts run around the clock",
            ],
            "context": {
                "service_accounts": ["svc-backup", "svc-ci", "svc-sync", "svc-reports"],
                "networks": [
                    {"cidr": "10.1.0.0/16", "name": "office-berlin", "place": "Berlin", "lat": 52.52, "lon": 13.40},
                    {"cidr": "10.2.0.0/16", "name": "office-new-york", "place": "New York", "lat": 40.71, "lon": -74.01},
                    {"cidr": "10.3.0.0/16", "name": "office-singapore", "place": "Singapore", "lat": 1.35, "lon": 103.82},
                    {"cidr": "172.16.0.0/16", "name": "vpn", "place": null},
                    {"cidr": "172.20.0.0/16", "name": "vpn", "place": null},
                ],
            },
            "people": people,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
    }
    eprintln!(
        "{} events, {} calls, {} anomalies injected",
        written,
        g.calls.len(),
        labels.len()
    );
    Ok(())
}
