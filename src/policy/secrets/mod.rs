//! Secret detection for [`Class::Secret`]: credentials found by their shape, by the key id next
//! to them, or by the name that introduces them.
//!
//! Three kinds of evidence, from strongest to weakest:
//!
//! - **Shape.** Provider formats with a fixed prefix or infix (AWS `AKIA`, GitHub `ghp_`, GitLab
//!   `glpat-`, Slack `xoxb-`, Stripe `sk_live_`, SendGrid `SG.x.y`, Vault `hvs.`, PEM private-key
//!   blocks, JWTs, Telegram `123:AA…`, Terraform `….atlasv1.…`, Azure client secrets `…8Q~…`,
//!   and more, listed in [`RE_TOKENS`]), and passwords in `scheme://user:password@host`.
//! - **Key id adjacency.** An AWS access key id (`AKIA…`/`ASIA…`), an Alibaba Cloud id (`LTAI…`)
//!   or a Twilio account SID (`AC` + 32 hex) makes the 40-, 30- or 32-character secret written
//!   next to it (within [`PAIR_WINDOW`] bytes) a finding, without any label.
//! - **Name.** A value introduced by a credential name: `password=…` and the other labels of
//!   [`RE_LABELLED`], and beyond them any identifier whose last part says credential
//!   (`DB_PASS`, `clientSecret`, `X-Api-Key`, `export FOO_TOKEN=`, `--password x`,
//!   `<password>x</password>`) and prose (`the password is …`, `api key 8f3a…`, `use token …`).
//!   The value must then look like a credential, more strictly the weaker the link: an
//!   assignment (`=`, `:`, a flag, a JSON key) accepts a short mixed value, prose accepts only
//!   long random-looking values (or, for passwords, a word with digits or symbols). Names that
//!   say something else (`page_token`, `max_tokens`, `public_key`, `cache_key`, `password_policy`)
//!   and values that are code, paths, URLs, versions or placeholders are left alone.
//!
//! - **Context.** A few places give the value after them away without a credential name
//!   ([`CONTEXTS`]): short password flags of `curl -u`, `mysql -p…`, `sshpass -p`, `docker
//!   login -p`, `redis-cli -a`; session cookies inside `Cookie:` headers; the `sig=` of an Azure
//!   SAS URL (with `sv=`); quoted seed phrases; `client.run('…')` Discord tokens; `Wallet("…")`
//!   private keys; Go MySQL DSNs (`user:pw@tcp(…)`).
//!
//! Hex digests, UUIDs, commit ids and base64 data are only reported when a credential name or key
//! id introduces them: shape alone never makes them secrets.
//!
//! Speed: one aho-corasick pass finds the literal starts of the provider shapes
//! ([`TOKEN_PREFIXES`]) and the anchored pattern runs only there; a second small pass finds the
//! infixes and Twilio SID prefixes ([`ANCHORS`]); one pass over the lowercased copy finds where the labels of
//! [`RE_LABELLED`] and the [`NAME_WORDS`] start (`words.rs`), and the labelled pattern and the
//! name rules do their work only there; a last small literal pass on the lowercased copy finds
//! the [`CONTEXTS`]. Texts shorter than [`MIN_TEXT`] skip everything.

use std::ops::Range;

use aho_corasick::{AhoCorasick, Input, MatchKind};
use memchr::memmem;
use regex::Regex;

use super::classify::{
    Class, Finding, base64_decode, is_b64, is_word, printable, sweep_at, sweep_caps,
};

mod named;
mod words;

use named::*;
use words::{Hit, Words};

/// Shortest text that can hold a finding (`pw=abc123`): shorter strings, most JSON keys and
/// enum values, skip every pass.
const MIN_TEXT: usize = 9;

/// How far from a key id its secret may be written (bytes, either side).
const PAIR_WINDOW: usize = 160;

/// Provider shapes, run on the original text. Every alternative starts with a literal.
const RE_TOKENS: &str = concat!(
    // Key ids: AWS (also the anchor of the secret next to it), Alibaba Cloud. Twilio SIDs
    // (`AC`/`SK` + 32 hex) are checked by hand in `twilio`: a 2-byte prefix would slow the
    // prefix search.
    r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
    r"|(?-u:\b)LTAI[A-Za-z0-9]{12,20}(?-u:\b)",
    // PEM / OpenSSH / PGP private key header (extended to the END line in code).
    r"|-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
    r"|(?-u:\b)AGE-SECRET-KEY-1[0-9A-Z]{58}",
    // JWT: base64url JSON header and payload, optional signature.
    r"|(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
    // GitHub, GitLab.
    r"|(?-u:\b)gh[pousr]_[A-Za-z0-9]{30,}(?-u:\b)",
    r"|(?-u:\b)github_pat_[A-Za-z0-9_]{22,}(?-u:\b)",
    r"|(?-u:\b)gl(?:pat|dt|ptt|rt)-[A-Za-z0-9_\-]{20,}",
    // Slack tokens and webhooks, Discord webhooks.
    r"|(?-u:\b)xox[abposre]-[A-Za-z0-9\-]{10,}",
    r"|(?-u:\b)xapp-[0-9]-[A-Za-z0-9\-]{10,}",
    r"|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,}",
    r"|https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{6,}/[A-Za-z0-9_\-]{30,}",
    // Stripe, SendGrid, Mailgun, Square, Meta/Square access tokens.
    r"|(?-u:\b)[rs]k_(?:live|test)_[A-Za-z0-9]{16,}(?-u:\b)",
    r"|(?-u:\b)whsec_[A-Za-z0-9]{24,}(?-u:\b)",
    r"|(?-u:\b)SG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}",
    r"|(?-u:\b)key-[0-9a-f]{32}(?-u:\b)",
    r"|(?-u:\b)sq0(?:atp|csp)-[A-Za-z0-9_\-]{22,}",
    r"|(?-u:\b)EAAA[A-Za-z0-9_\-]{60,}",
    // Google: API keys, OAuth client secrets, access and refresh tokens.
    r"|(?-u:\b)AIza[A-Za-z0-9_\-]{35}",
    r"|(?-u:\b)GOCSPX-[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)ya29\.[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)1//0[A-Za-z0-9_\-]{40,}",
    // OpenAI, Anthropic and other `sk-` keys.
    r"|(?-u:\b)sk-(?:proj|ant|svcacct|admin)-[A-Za-z0-9_\-]{20,}",
    r"|(?-u:\b)sk-[A-Za-z0-9]{32,}(?-u:\b)",
    // Package registries and developer platforms.
    r"|(?-u:\b)pypi-AgE[A-Za-z0-9_\-]{50,}",
    r"|(?-u:\b)(?:npm|hf|shpat|shpss|shpca|shppa|lin_api|lin_oauth|ntn|sbp|api_org)_[A-Za-z0-9]{30,}(?-u:\b)",
    r"|(?-u:\b)do[opr]_v1_[a-f0-9]{64}(?-u:\b)",
    r"|(?-u:\b)dckr_pat_[A-Za-z0-9_\-]{24,}",
    r"|(?-u:\b)glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}(?-u:\b)",
    r"|(?-u:\b)ATATT3[A-Za-z0-9_\-=]{50,}",
    r"|(?-u:\b)dp\.(?:st|ct|sa|scim|audit|pt)\.[A-Za-z0-9_\-.]{40,}",
    r"|(?-u:\b)hv[sb]\.[A-Za-z0-9_\-]{24,}",
    r"|(?-u:\b)dapi[0-9a-f]{32}(?:-[0-9])?(?-u:\b)",
    r"|(?-u:\b)secret_[A-Za-z0-9]{43}(?-u:\b)",
    r"|(?-u:\b)HRKU-[A-Za-z0-9_\-]{30,}",
    // JFrog Artifactory API keys, Microsoft Teams incoming webhooks, PuTTY key files (extended
    // over the private lines in code).
    r"|(?-u:\b)AKCp[A-Za-z0-9]{60,80}(?-u:\b)",
    r"|IncomingWebhook/[0-9a-f]{32}(?:/[0-9a-f\-]{36}(?:/[A-Za-z0-9_\-]{20,})?)?",
    r"|PuTTY-User-Key-File-[0-9]+:",
);

/// The literal each alternative of [`RE_TOKENS`] starts with (a test checks they agree). Kept
/// under 64 patterns of 3 bytes or more, so the search stays a packed SIMD one: more patterns,
/// or 2-byte ones, make it several times slower on ordinary text.
const TOKEN_PREFIXES: &[&str] = &[
    "AKIA",
    "ASIA",
    "LTAI",
    "-----BEGIN",
    "AGE-SECRET-KEY-",
    "eyJ",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "gldt-",
    "glptt-",
    "glrt-",
    "glsa_",
    "xox",
    "xapp-",
    "https://",
    "rk_live_",
    "rk_test_",
    "sk_live_",
    "sk_test_",
    "whsec_",
    "SG.",
    "key-",
    "sq0",
    "EAAA",
    "AIza",
    "GOCSPX-",
    "ya29.",
    "1//0",
    "sk-",
    "pypi-",
    "npm_",
    "hf_",
    "shp",
    "lin_",
    "ntn_",
    "sbp_",
    "api_org_",
    "dop_",
    "doo_",
    "dor_",
    "dckr_",
    "ATATT3",
    "dp.",
    "hvs.",
    "hvb.",
    "dapi",
    "secret_",
    "HRKU-",
    "AKCp",
    "IncomingWebhook/",
    "PuTTY-User-Key-File-",
];

/// Shapes known by an infix, run only where [`ANCHORS`] find one: Telegram bot tokens, Terraform
/// Cloud tokens, Azure AD client secrets.
const RE_INFIX_TOKENS: &str = concat!(
    r"(?-u:\b)[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}(?-u:\b)",
    r"|(?-u:\b)[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_\-]{60,}",
    r"|(?-u:\b)[A-Za-z0-9_.\-]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}",
);
/// What [`Secrets::anchored_shapes`] searches for: the infixes of [`RE_INFIX_TOKENS`] and the
/// Twilio SID prefixes.
const ANCHORS: [&str; 7] = [":AA", ".atlasv1.", "Q~", "SK", "AC", "@tcp(", "@unix("];

/// `scheme://user:password@`: the password.
///
/// The password may hold `?`, `#` and `@` (`amqp://guest:Rocket#sun22@host`): the match runs to
/// the last `@` before a `/` or blank, and [`url_passwords`] falls back to the first `@` when the
/// wide reading looks like a port and a query (`https://host:443?next=a@b`).
const RE_URL: &str = r"(?-u:\b)[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s:/?#@]*:(?P<pw>[^\s/]+)@";
const URL_PASSWORD: usize = 1;

/// Runs on the ASCII-lowercased text.
const RE_LABELLED: &str = concat!(
    // `label=value`, `label: value`, `"label": "value"`, also with JSON-escaped quotes.
    r"(?P<label>aws_?secret_?access_?key|pass(?:word|wd|phrase)|pwd|secret(?:[_\-]?key)?",
    r"|api[_\-]?key|access[_\-]?key|private[_\-]?key|client[_\-]?secret",
    r"|(?:access|auth|refresh|api|session)[_\-]?token)",
    r#"(?P<q>\\?["'])?[ \t]*[:=][ \t]*"#,
    r#"(?P<v>\\?"[^"\r\n]+"|\\?'[^'\r\n]+'|[^\s"',;<>(){}\[\]\\]+)"#,
    // HTTP authorization credentials.
    r"|(?-u:\b)bearer[ \t]+(?P<bearer>[a-z0-9._~+/=\-]{16,})",
    r"|(?-u:\b)basic[ \t]+(?P<basic>[a-z0-9+/]{8,}={0,2})",
);
const LBL_LABEL: usize = 1;
const LBL_QUOTE: usize = 2;
const LBL_VALUE: usize = 3;
const LBL_BEARER: usize = 4;
const LBL_BASIC: usize = 5;
/// The words every alternative of [`RE_LABELLED`] starts with (a test checks they cover it).
const LABEL_WORDS: &[&str] = &[
    "aws", "pass", "pwd", "secret", "api", "access", "private", "client", "auth", "refresh",
    "session", "bearer", "basic",
];

/// Contexts that give the value after them away (matched on the lowercased text): command lines
/// whose short flags take a password, cookie headers, Azure SAS signatures, seed phrases, Discord
/// bot logins and wallet constructors. Each is checked by hand in [`Secrets::contexts`].
const CONTEXTS: &[&str] = &[
    "curl ",
    "mysql",
    "mariadb",
    "sshpass",
    "docker login",
    "redis-cli",
    "cookie:",
    "sig=",
    "mnemonic",
    "seed_phrase",
    "seed phrase",
    "seedphrase",
    "client.run(",
    "client.login(",
    "wallet(",
];

/// Session cookie names whose value is a credential inside `Cookie:` / `Set-Cookie:`.
const SESSION_COOKIES: &[&str] = &["sessionid", "phpsessid", "jsessionid", "connect.sid"];

/// Words that may name a credential, found in the ASCII-lowercased text (the first listed where
/// several start at one place, none inside the one before, as a leftmost-first search finds
/// them); the identifier around each decides (see [`name_kind`]).
const NAME_WORDS: &[&str] = &[
    "pass", "pwd", "pw", "secret", "token", "key", "auth", "cred",
];

/// The compiled secret patterns (one set per [`super::classify::Classifiers`] with secrets on).
#[derive(Clone)]
pub(super) struct Secrets {
    /// The literal starts of [`RE_TOKENS`]' alternatives ([`TOKEN_PREFIXES`]).
    prefixes: AhoCorasick,
    /// [`RE_TOKENS`] anchored: run only where a prefix is.
    tokens: Regex,
    /// [`ANCHORS`]: infixes and Twilio SID prefixes.
    anchors: AhoCorasick,
    /// [`RE_INFIX_TOKENS`] anchored: run only where an infix is.
    infix_tokens: Regex,
    url: Regex,
    /// [`RE_LABELLED`] anchored: tried only where a [`LABEL_WORDS`] word starts.
    labelled: Regex,
    /// Where [`LABEL_WORDS`] and [`NAME_WORDS`] start (one pass for both).
    words: Words,
    /// [`CONTEXTS`], on the lowercased text.
    contexts: AhoCorasick,
}

impl Secrets {
    /// Compiles the built-in patterns; infallible because they are ours.
    pub(super) fn new() -> Secrets {
        let re = |p: &str| Regex::new(p).expect("built-in pattern compiles");
        Secrets {
            prefixes: AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(TOKEN_PREFIXES)
                .expect("built-in prefixes compile"),
            tokens: re(&format!("^(?:{RE_TOKENS})")),
            anchors: AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(ANCHORS)
                .expect("built-in anchors compile"),
            infix_tokens: re(&format!("^(?:{RE_INFIX_TOKENS})")),
            url: re(RE_URL),
            labelled: re(&format!("^(?:{RE_LABELLED})")),
            words: Words::new(&[(words::LABEL, LABEL_WORDS), (words::NAME, NAME_WORDS)])
                .expect("built-in words"),
            contexts: AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(CONTEXTS)
                .expect("built-in contexts compile"),
        }
    }

    /// Shapes, key-id pairs and URL passwords in `t` (original case).
    pub(super) fn scan(&self, t: &str, out: &mut Vec<Finding>) {
        if t.len() < MIN_TEXT {
            return;
        }
        self.secret_tokens(t, out);
        self.anchored_shapes(t, out);
        url_passwords(&self.url, t, out);
    }

    /// Labelled and named values; `lower` is `t` ASCII-lowercased (same offsets).
    pub(super) fn scan_lowered(&self, t: &str, lower: &str, out: &mut Vec<Finding>) {
        if t.len() < MIN_TEXT {
            return;
        }
        let mut hits = Vec::new();
        self.words.find(lower.as_bytes(), &mut hits);
        labelled_secrets(&self.labelled, t, lower, &hits, out);
        self.named_values(t, lower, &hits, out);
        self.contexts(t, lower, out);
    }

    /// Values given away by what comes before them (see [`CONTEXTS`]).
    fn contexts(&self, t: &str, lower: &str, out: &mut Vec<Finding>) {
        let b = t.as_bytes();
        for hit in self.contexts.find_iter(lower) {
            let (at, end) = (hit.start(), hit.end());
            match CONTEXTS[hit.pattern().as_usize()] {
                "curl " => command_flags(b, end, &[("-u", true), ("--user", true)], out),
                "mysql" | "mariadb" => command_flags(b, end, &[("-p", false)], out),
                "sshpass" => command_flags(b, end, &[("-p", false), ("-p", true)], out),
                "docker login" => command_flags(b, end, &[("-p", true), ("--password", true)], out),
                "redis-cli" => command_flags(b, end, &[("-a", true)], out),
                "cookie:" => session_cookies(b, lower.as_bytes(), end, out),
                "sig=" => sas_signature(b, lower.as_bytes(), at, end, out),
                "client.run(" | "client.login(" => discord_login(b, end, out),
                "wallet(" => wallet_key(b, end, out),
                _ => seed_phrase(b, end, out),
            }
        }
    }

    /// Whether `value`, stored under the field `name` (a JSON object key, a header name), is a
    /// credential by that name: `{"client_secret": "…"}`, `{"X-Api-Key": "…"}`,
    /// `{"auth": "Bearer …"}`. Placeholders, code references, paths and plain words are not.
    pub(super) fn field(&self, name: &str, value: &str) -> bool {
        if !mentions_name(name.as_bytes()) {
            return false;
        }
        let Some(kind) = name_kind(name.as_bytes(), None) else {
            return false;
        };
        let v = value.trim();
        let v = strip_scheme(v.as_bytes());
        accept(kind.0, Link::Field, true, v)
    }

    /// Provider shapes: a multi-pattern search for the literal starts, then the anchored
    /// pattern at each (one pass over the text whatever the number of providers; a regex with
    /// this many alternatives would shrink its own prefilter to single letters).
    fn secret_tokens(&self, t: &str, out: &mut Vec<Finding>) {
        let b = t.as_bytes();
        let mut pos = 0;
        // Where the next `-----END` is: searched once, not once per PEM header.
        let mut end_marker: Option<Option<usize>> = None;
        while pos < t.len() {
            let Some(hit) = self.prefixes.find(Input::new(b).range(pos..)) else {
                break;
            };
            let s = hit.start();
            let glued = s > 0 && is_word(b[s]) && is_word(b[s - 1]);
            let Some(m) = (!glued)
                .then(|| self.tokens.find(&t[s..]))
                .flatten()
                .filter(|m| !m.is_empty())
            else {
                pos = s + 1;
                continue;
            };
            let mut end = s + m.end();
            if b[s] != b'-' && !b[s..].starts_with(b"https://") && fake_token(&t[s..end]) {
                pos = end;
                continue;
            }
            if b[s] == b'P' {
                end = putty_end(b, end);
            }
            if b[s] == b'-' {
                let marker = match end_marker {
                    Some(Some(p)) if p >= end => Some(p),
                    Some(None) => None,
                    _ => memmem::find(&b[end..], b"-----END").map(|p| p + end),
                };
                end_marker = Some(marker);
                end = pem_end(b, end, marker);
            }
            let pair = match &b[s..s + 2] {
                b"AK" | b"AS" => Some(Pair::Aws),
                b"LT" => Some(Pair::Alibaba),
                _ => None,
            };
            push(out, s, end);
            if let Some(pair) = pair
                && let Some((ps, pe)) = paired_secret(b, s, end, pair)
            {
                push(out, ps, pe);
            }
            pos = end;
        }
    }

    /// Shapes found from a short anchor rather than a prefix, in one multi-pattern pass:
    /// Telegram, Terraform Cloud and Azure AD tokens from their infix (each occurrence gives the
    /// one place the token can start, where the anchored pattern is tried), Twilio SIDs.
    fn anchored_shapes(&self, t: &str, out: &mut Vec<Finding>) {
        let b = t.as_bytes();
        let mut after = 0;
        for hit in self.anchors.find_iter(b) {
            let at = hit.start();
            let start = match ANCHORS[hit.pattern().as_usize()] {
                "SK" | "AC" => {
                    twilio(b, at, out);
                    continue;
                }
                "@tcp(" | "@unix(" => {
                    go_dsn_password(b, at, out);
                    continue;
                }
                // Telegram: 8 to 10 digits before `:AA`.
                ":AA" => {
                    at - b[at.saturating_sub(10)..at]
                        .iter()
                        .rev()
                        .take_while(|c| c.is_ascii_digit())
                        .count()
                }
                // Terraform Cloud: 14 alphanumerics before `.atlasv1.`.
                ".atlasv1." => at.saturating_sub(14),
                // Azure AD client secret: 3 characters and a digit before `Q~`.
                _ => at.saturating_sub(4),
            };
            // `api.telegram.org/bot123…:AA…`: the `bot` glued to the digits.
            let bot_path = start >= 4 && &b[start - 4..start] == b"/bot";
            if start < after
                || !t.is_char_boundary(start)
                || (start > 0 && is_word(b[start - 1]) && is_word(b[start]) && !bot_path)
            {
                continue;
            }
            if let Some(m) = self.infix_tokens.find(&t[start..])
                && start + m.end() > at
            {
                push(out, start, start + m.end());
                after = start + m.end();
            }
        }
    }

    /// Values introduced by a credential name: see the module documentation.
    fn named_values(&self, t: &str, lower: &str, hits: &[Hit], out: &mut Vec<Finding>) {
        let b = t.as_bytes();
        let mut pos = 0;
        // Words inside a name or value already handled are skipped.
        for m in name_words(lower.as_bytes(), hits) {
            if m.start < pos {
                continue;
            }
            let (mut l, mut r) = (m.start, m.end);
            while l > 0 && is_ident(b[l - 1]) {
                l -= 1;
            }
            while r < b.len() && is_ident(b[r]) {
                r += 1;
            }
            pos = r.max(m.end);
            // A segment of a path or an ARN (`arn:aws:…:secret:prod/db`, `/v1/tokens/…`).
            if l > 0 && matches!(b[l - 1], b':' | b'/') && matches!(b.get(r), Some(b':' | b'/')) {
                continue;
            }
            while r > l && matches!(b[r - 1], b'.' | b'-') {
                r -= 1;
            }
            let flag = b[l] == b'-';
            while l < r && matches!(b[l], b'-' | b'.' | b'_') {
                l += 1;
            }
            if l >= r {
                continue;
            }
            let Some((kind, bare)) = name_kind(&b[l..r], prev_word(b, l)) else {
                continue;
            };
            if about_the_credential(lower.as_bytes(), l) {
                continue;
            }
            if let Some((s, e)) = value_after(b, l, r, kind, bare, flag) {
                push(out, s, e);
                pos = pos.max(e);
            }
        }
    }
}

/// The [`NAME_WORDS`] in `lower` as a leftmost-first search for them finds them (the first listed
/// where several start at one place, none inside the one before), from the word `hits`.
fn name_words<'a>(lower: &'a [u8], hits: &'a [Hit]) -> impl Iterator<Item = Range<usize>> + 'a {
    let mut next = 0;
    hits.iter()
        .filter(|h| h.kinds & words::NAME != 0)
        .filter_map(move |h| {
            if h.at < next {
                return None;
            }
            let word = NAME_WORDS
                .iter()
                .find(|w| lower[h.at..].starts_with(w.as_bytes()))?;
            next = h.at + word.len();
            Some(h.at..next)
        })
}

/// Whether `name` contains one of the [`NAME_WORDS`] (ASCII case-insensitive): the cheap
/// test before [`name_kind`] splits it.
fn mentions_name(name: &[u8]) -> bool {
    const WORDS: [&[u8]; 7] = [
        b"pass", b"pwd", b"secret", b"token", b"key", b"auth", b"cred",
    ];
    name.windows(3).enumerate().any(|(i, w)| {
        WORDS.iter().any(|word| {
            w.eq_ignore_ascii_case(&word[..3])
                && name
                    .get(i..i + word.len())
                    .is_some_and(|x| x.eq_ignore_ascii_case(word))
        })
    })
}

/// Twilio: an API key SID (`SK` + 32 hex) is reported; an account SID (`AC` + 32 hex) is an
/// identifier, only the auth token written next to it is.
fn twilio(b: &[u8], at: usize, out: &mut Vec<Finding>) {
    let end = at + 34;
    let hex = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
    if (at > 0 && is_word(b[at - 1]))
        || end > b.len()
        || !b[at + 2..end].iter().all(hex)
        || b.get(end).is_some_and(|&c| is_word(c))
    {
        return;
    }
    if b[at] == b'S' {
        push(out, at, end);
    } else if let Some((s, e)) = paired_secret(b, at, end, Pair::Twilio) {
        push(out, s, e);
    }
}

/// The end of the shell command that starts before `from`: a newline, `|`, `;` or `&&`.
fn command_end(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\n' | b'|' | b';' => return i,
            b'&' if b.get(i + 1) == Some(&b'&') => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// The credential passed with one of `flags` in the command after `from`. Each flag is
/// `(flag, spaced)`: `spaced` flags take the next word (`-u user:pw`, `--user=user:pw` too),
/// the others a value glued to them (`mysql -pSecret`). A `-u`/`--user` value is a credential
/// only after its `:` and when that part has letters (`-u 1000:1000` is a uid:gid).
fn command_flags(b: &[u8], from: usize, flags: &[(&str, bool)], out: &mut Vec<Finding>) {
    let stop = command_end(b, from);
    let mut i = from;
    while i < stop {
        while i < stop && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let w = i;
        while i < stop && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        if w == i || b[w] != b'-' {
            continue;
        }
        let word = &b[w..i];
        for &(flag, spaced) in flags {
            let f = flag.as_bytes();
            let at = if spaced && word == f {
                let mut v = i;
                skip_blanks(b, &mut v);
                v
            } else if spaced
                && f.len() > 2
                && word.len() > f.len() + 1
                && word.starts_with(f)
                && word[f.len()] == b'='
            {
                w + f.len() + 1
            } else if !spaced && word.len() > f.len() && word.starts_with(f) && f.len() == 2 {
                w + 2
            } else {
                continue;
            };
            let Some((s, e, quoted)) = read_value(b, at, false) else {
                continue;
            };
            let e = e.min(stop.max(s));
            if e <= s {
                continue;
            }
            let (s, e) = if flag == "-u" || flag == "--user" {
                match memchr::memchr(b':', &b[s..e]) {
                    Some(c) if b[s + c + 1..e].iter().any(u8::is_ascii_alphabetic) => {
                        (s + c + 1, e)
                    }
                    _ => continue,
                }
            } else {
                (s, e)
            };
            let v = &b[s..e];
            let ok = std::str::from_utf8(v).is_ok_and(|x| !placeholder(x) && !x.starts_with('$'));
            if ok
                && (flag.starts_with("-u")
                    || flag == "--user"
                    || accept(Kind::Password, Link::Assigned, quoted, v))
            {
                push(out, s, e);
            }
            i = i.max(e);
        }
    }
}

/// `Cookie:` / `Set-Cookie:` headers: the values of [`SESSION_COOKIES`] (one line).
fn session_cookies(b: &[u8], lower: &[u8], from: usize, out: &mut Vec<Finding>) {
    let stop = memchr::memchr(b'\n', &b[from..]).map_or(b.len(), |p| from + p);
    for pair in lower[from..stop].split(|&c| c == b';') {
        let off = pair.as_ptr() as usize - lower.as_ptr() as usize;
        let Some(eq) = memchr::memchr(b'=', pair) else {
            continue;
        };
        let name = pair[..eq].trim_ascii();
        if !one_of(name, SESSION_COOKIES) {
            continue;
        }
        let s = off + eq + 1;
        let mut e = s;
        while e < stop && !b[e].is_ascii_whitespace() && !matches!(b[e], b';' | b',' | b'"' | b'\'')
        {
            e += 1;
        }
        if e - s >= 16 && std::str::from_utf8(&b[s..e]).is_ok_and(|v| !placeholder(v)) {
            push(out, s, e);
        }
    }
}

/// Azure SAS: the `sig=` of a URL whose query also carries `sv=` (the signed version).
fn sas_signature(b: &[u8], lower: &[u8], at: usize, end: usize, out: &mut Vec<Finding>) {
    if at == 0 || !matches!(b[at - 1], b'?' | b'&') {
        return;
    }
    let mut q = at;
    while q > 0 && !b[q - 1].is_ascii_whitespace() && !matches!(b[q - 1], b'"' | b'\'') {
        q -= 1;
    }
    let mut e = end;
    while e < b.len() && !b[e].is_ascii_whitespace() && !matches!(b[e], b'&' | b'"' | b'\'' | b'#')
    {
        e += 1;
    }
    let url = &lower[q..e];
    let signed = memmem::find(url, b"?sv=").is_some() || memmem::find(url, b"&sv=").is_some();
    if signed && e - end >= 20 {
        push(out, end, e);
    }
}

/// Discord bot token in `client.run('…')` / `client.login('…')`: `[MNO]` + 23-25, `.`, 6, `.`,
/// 27-38 base64url characters.
fn discord_login(b: &[u8], from: usize, out: &mut Vec<Finding>) {
    let Some((s, e, true)) = read_value(b, from, false) else {
        return;
    };
    let v = &b[s..e];
    let mut parts = v.split(|&c| c == b'.');
    let (Some(id), Some(ts), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let b64u = |p: &[u8]| {
        p.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    };
    if matches!(id.first(), Some(b'M' | b'N' | b'O'))
        && (24..=26).contains(&id.len())
        && ts.len() == 6
        && (27..=38).contains(&mac.len())
        && b64u(id)
        && b64u(ts)
        && b64u(mac)
    {
        push(out, s, e);
    }
}

/// `new ethers.Wallet("<64 hex>")`, `Wallet('0x…')`: a private key written into the constructor.
fn wallet_key(b: &[u8], from: usize, out: &mut Vec<Finding>) {
    let Some((s, e, true)) = read_value(b, from, false) else {
        return;
    };
    let hex = b[s..e].strip_prefix(b"0x").unwrap_or(&b[s..e]);
    if hex.len() == 64 && hex.iter().all(u8::is_ascii_hexdigit) {
        push(out, s, e);
    }
}

/// `MNEMONIC="word word …"`, `seed_phrase: '…'`: a quoted run of 12 to 24 lowercase words.
fn seed_phrase(b: &[u8], from: usize, out: &mut Vec<Finding>) {
    let mut i = from;
    while i < b.len() && is_ident(b[i]) {
        i += 1;
    }
    if matches!(b.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    skip_blanks(b, &mut i);
    if !matches!(b.get(i), Some(b'=' | b':')) {
        return;
    }
    i += 1;
    skip_blanks(b, &mut i);
    let Some((s, e, true)) = read_value(b, i, false) else {
        return;
    };
    let v = &b[s..e];
    let words = v.split(|&c| c == b' ');
    let mut n = 0;
    for w in words {
        if w.len() < 3 || !w.iter().all(u8::is_ascii_lowercase) {
            return;
        }
        n += 1;
    }
    if (12..=24).contains(&n) {
        push(out, s, e);
    }
}

/// Go MySQL DSN `user:password@tcp(host:port)/db` (or `@unix(`): the password runs from the
/// first `:` of the DSN to the `@` at `at` (the driver splits the same way, so it may hold `@`).
fn go_dsn_password(b: &[u8], at: usize, out: &mut Vec<Finding>) {
    let mut s = at;
    while s > 0
        && at - s < 256
        && !b[s - 1].is_ascii_whitespace()
        && !matches!(b[s - 1], b'"' | b'\'' | b'`' | b'(' | b',' | b'=')
    {
        s -= 1;
    }
    let Some(colon) = memchr::memchr(b':', &b[s..at]).map(|p| s + p) else {
        return;
    };
    if colon == s || colon + 1 >= at {
        return;
    }
    let pw = &b[colon + 1..at];
    if std::str::from_utf8(pw).is_ok_and(|p| !placeholder(p)) {
        push(out, colon + 1, at);
    }
}

fn push(out: &mut Vec<Finding>, start: usize, end: usize) {
    out.push(Finding {
        class: Class::Secret,
        start,
        end,
    });
}

// ---------------------------------------------------------------------------------------------
// PEM blocks, URL passwords, labelled values.

/// Extends a PEM private-key header through its END line (`end_marker` is where the next `-----END`
/// starts), or over the key body if there is none.
fn pem_end(b: &[u8], header_end: usize, end_marker: Option<usize>) -> usize {
    if let Some(p) = end_marker {
        let after = p + 8;
        if let Some(q) = memmem::find(&b[after..], b"-----") {
            return after + q + 5;
        }
    }
    let mut e = header_end;
    while e < b.len()
        && (is_b64(b[e]) || b[e] == b'=' || b[e].is_ascii_whitespace() || b[e] == b'\\')
    {
        e += 1;
    }
    while e > header_end && b[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    e
}

/// Extends a PuTTY key file header over its private part: through the `Private-MAC:` line, or
/// the base64 lines after `Private-Lines:` when the MAC is cut off.
fn putty_end(b: &[u8], header_end: usize) -> usize {
    let window = &b[header_end..(header_end + 16 * 1024).min(b.len())];
    let Some(lines) = memmem::find(window, b"Private-Lines:") else {
        return header_end;
    };
    let line_end = |from: usize| memchr::memchr(b'\n', &b[from..]).map_or(b.len(), |p| from + p);
    if let Some(mac) = memmem::find(&window[lines..], b"Private-MAC:") {
        return line_end(header_end + lines + mac);
    }
    let mut e = line_end(header_end + lines);
    while e < b.len()
        && (is_b64(b[e]) || b[e] == b'=' || b[e].is_ascii_whitespace() || b[e] == b'\\')
    {
        e += 1;
    }
    while e > header_end && b[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    e
}

fn url_passwords(re: &Regex, t: &str, out: &mut Vec<Finding>) {
    sweep_caps(re, t, 0, |c| {
        let (s, mut e) = c.get(URL_PASSWORD)?;
        let b = t.as_bytes();
        let cut = b[s..e]
            .iter()
            .position(|&c| matches!(c, b'?' | b'#' | b'@'));
        if let Some(cut) = cut {
            // The wide reading: letters, no query parameter, no port before the symbol.
            let pw = &b[s..e];
            let wide = !pw.contains(&b'=')
                && pw.iter().any(u8::is_ascii_alphabetic)
                && !(cut > 0 && pw[..cut].iter().all(u8::is_ascii_digit));
            if !wide {
                // The narrow reading: up to the first `@`, with no `?` or `#` before it.
                if pw[cut] != b'@' {
                    return Some(c.get(0)?.1);
                }
                e = s + cut;
            }
        }
        if e == s || placeholder(&t[s..e]) {
            return Some(c.get(0)?.1);
        }
        push(out, s, e);
        Some(c.get(0)?.1)
    });
}

/// Where a [`RE_LABELLED`] match can start in `lower`, ascending: see [`labelled_secrets`].
fn label_starts<'a>(lower: &'a [u8], hits: &'a [Hit]) -> impl Iterator<Item = usize> + 'a {
    hits.iter()
        .filter(|h| h.kinds & words::LABEL != 0)
        .map(|h| h.at)
        .filter(|&at| at == 0 || !is_word(lower[at - 1]) || lower[at] != b'b')
}

/// Labelled values; `re` is [`RE_LABELLED`] anchored, tried where a [`LABEL_WORDS`] word starts
/// (`bearer` and `basic` only after a word boundary, the pattern's `\b`; no other alternative
/// starts with `b`).
fn labelled_secrets(re: &Regex, t: &str, lower: &str, hits: &[Hit], out: &mut Vec<Finding>) {
    let b = t.as_bytes();
    sweep_at(re, lower, label_starts(lower.as_bytes(), hits), |c| {
        let end = c.get(0)?.1;
        let (s, e) = if let Some((vs, ve)) = c.get(LBL_VALUE) {
            let (ls, le) = c.get(LBL_LABEL)?;
            let quoted = matches!(b[vs], b'"' | b'\'' | b'\\');
            let (mut s, mut e) = (vs, ve);
            if !quoted {
                e = cut_at_param(b, s, e);
            }
            if quoted {
                s += 1 + usize::from(b[vs] == b'\\');
                e -= 1;
                if b[e - 1] == b'\\' {
                    e -= 1;
                }
            }
            let value = &t[s..e];
            let colon = memchr::memchr(b':', &b[le..vs]).is_some();
            let plain_word = value.bytes().all(|x| x.is_ascii_alphabetic());
            if value.chars().count() < 6
                || placeholder(value)
                || code_reference(value.as_bytes())
                || (ls > 0 && matches!(b[ls - 1], b':' | b'/') && b.get(le) == Some(&b':'))
                || call_or_self(b, &lower[ls..le], value, e)
                || (&lower[ls..le] == "pwd" && value.starts_with(['/', '~', '.']))
                || (colon && plain_word && !quoted && c.get(LBL_QUOTE).is_none())
            {
                return None;
            }
            (s, e)
        } else if let Some((s, e)) = c.get(LBL_BEARER) {
            let token = &t[s..e];
            if !looks_random(token) || placeholder(token) {
                return None;
            }
            (s, e)
        } else {
            let (s, e) = c.get(LBL_BASIC)?;
            let raw = t[s..e].trim_end_matches('=').as_bytes();
            let decoded = base64_decode(raw)?;
            let creds = printable(&decoded)?;
            if !creds.contains(':') || creds.len() < 3 {
                return None;
            }
            (s, e)
        };
        push(out, s, e);
        Some(end)
    });
}

/// A provider prefix with a placeholder body: `ghp_XXXX…`, `xoxb-your-token-here`,
/// `sk_live_XXXXXXXXXXXXXXXX`. Real bodies are random: never one repeated character, and never
/// English placeholder words without a digit. (AWS's documentation key `AKIA…EXAMPLE` stays a
/// finding: the project's end-to-end tests use it as their canonical secret.)
fn fake_token(tok: &str) -> bool {
    let b = tok.as_bytes();
    // The body: after the first separator, or after a 4-letter prefix (`AKIA…`).
    let body = match b.iter().position(|&c| matches!(c, b'_' | b'-' | b'.')) {
        Some(p) if p + 1 < b.len() => &b[p + 1..],
        _ => &b[b.len().min(4)..],
    };
    let body: Vec<u8> = body
        .iter()
        .copied()
        .filter(|c| !matches!(c, b'_' | b'-' | b'.'))
        .collect();
    body.windows(2).all(|w| w[0] == w[1]) || placeholder(tok)
}

/// Opaque tokens have a digit or mix letter cases; prose after "bearer" (`token-based-auth`) and
/// placeholders (`YOUR_ACCESS_TOKEN`) do not.
fn looks_random(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().any(u8::is_ascii_digit)
        || (b.iter().any(u8::is_ascii_uppercase) && b.iter().any(u8::is_ascii_lowercase))
}

/// Words that, in a value without digits, say it stands in for one (`REPLACE_ME`, `changeme`,
/// `xoxb-your-token-here`).
const PLACEHOLDER_WORDS: &[&str] = &[
    "replace",
    "changeme",
    "change_me",
    "change-me",
    "your",
    "placeholder",
    "example",
    "dummy",
    "fixme",
    "insert",
    "-here",
    "_here",
];

/// Values that stand in for a secret rather than being one: `${DB_PASS}`, `<token>`, `{{ x }}`,
/// `%(pw)s`, `******`, `xxxxxx`, our own `[REDACTED:…]` masks, `undefined` and the like.
fn placeholder(v: &str) -> bool {
    let mut chars = v.chars();
    let Some(first) = chars.next() else {
        return true;
    };
    // `<token>`, `••••`, `**redacted**`; a password may start with a single `*`.
    if (v.len() > 1 && chars.all(|c| c == first))
        || matches!(first, '<' | '•')
        || (first == '*' && (v.len() < 4 || v.as_bytes()[1] == b'*'))
    {
        return true;
    }
    if let Some(var) = v.strip_prefix('$')
        && (var.starts_with('{')
            || var
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_'))
    {
        return true;
    }
    // YAML tags: Ansible Vault `!vault |`, Home Assistant `!secret db_password`, `!Ref`.
    if let Some(tag) = v.strip_prefix('!') {
        let name = tag.split(' ').next().unwrap_or("");
        if !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphabetic() || c == b'_') {
            return true;
        }
    }
    let lower = v.to_ascii_lowercase();
    let digits = v.bytes().any(|c| c.is_ascii_digit());
    // `sk_test_...`: a prefix and an ellipsis.
    if !digits && (v.ends_with("...") || v.ends_with('\u{2026}')) {
        return true;
    }
    if !digits && PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    v.starts_with("{{")
        || v.starts_with("%(")
        || v.starts_with("%s")
        || lower.starts_with("[redacted")
        || lower.starts_with("[hmac:")
        || matches!(
            lower.as_str(),
            "undefined"
                | "redacted"
                | "required"
                | "optional"
                | "hidden"
                | "masked"
                | "example"
                | "password"
                | "passwd"
                | "secret"
        )
        || lower.starts_with("your_")
        || lower.starts_with("your-")
        || lower.starts_with("xxxx")
        || lower.contains("placeholder")
}

#[cfg(test)]
mod tests;
