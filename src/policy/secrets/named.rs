//! Secrets named by their context: a key id and the secret written next to it (AWS, Alibaba,
//! Twilio), and a value introduced by a credential name (`password`, `api key`, `X-Api-Key`,
//! `DB_PASS`) in an identifier, a JSON key, a flag, an XML element or prose.

use super::*;

// ---------------------------------------------------------------------------------------------
// Key id + secret pairs.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pair {
    /// 40 characters of base64 (`A-Za-z0-9/+`).
    Aws,
    /// 30 alphanumerics.
    Alibaba,
    /// 32 lowercase hex digits.
    Twilio,
}

/// The first run of the pair's secret shape within [`PAIR_WINDOW`] bytes after the key id, else
/// before it.
pub(super) fn paired_secret(
    b: &[u8],
    id_start: usize,
    id_end: usize,
    pair: Pair,
) -> Option<(usize, usize)> {
    let in_run = |c: u8| match pair {
        Pair::Aws => c.is_ascii_alphanumeric() || c == b'/' || c == b'+',
        Pair::Alibaba => c.is_ascii_alphanumeric(),
        Pair::Twilio => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
    };
    let len = match pair {
        Pair::Aws => 40,
        Pair::Alibaba => 30,
        Pair::Twilio => 32,
    };
    let ok = |run: &[u8]| {
        let digit = run.iter().any(u8::is_ascii_digit);
        match pair {
            Pair::Twilio => digit && run.iter().any(u8::is_ascii_alphabetic),
            _ => {
                digit
                    && run.iter().any(u8::is_ascii_uppercase)
                    && run.iter().any(u8::is_ascii_lowercase)
            }
        }
    };
    let lo = id_start.saturating_sub(PAIR_WINDOW);
    let hi = (id_end + PAIR_WINDOW).min(b.len());
    let mut found = None;
    let mut i = lo;
    while i < hi {
        if !in_run(b[i]) {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && in_run(b[i]) {
            i += 1;
        }
        // Base64 padding is not part of an AWS secret; a word glued on either side is.
        let glued = (s > 0 && is_word(b[s - 1])) || b.get(i).is_some_and(|&c| is_word(c));
        if i - s == len && !glued && (s >= id_end || i <= id_start) && ok(&b[s..i]) {
            if s >= id_end {
                return Some((s, i));
            }
            found.get_or_insert((s, i));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Names and their values.

/// What a name says its value is; passwords accept weaker values than keys and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Password,
    /// Secrets, keys, tokens, credentials and authorization values.
    Key,
}

/// How the value is tied to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// The name is the value's JSON key or header name.
    Field,
    /// `=`, `:`, `=>`, a command-line flag, an XML element.
    Assigned,
    /// Words in between, or none (`the password is …`, `api key …`).
    Prose,
}

/// Identifier bytes: names like `spring.datasource.password`, `X-Api-Key`, `DB_PASS`.
pub(super) fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// Last parts of a token name that say it is not a credential (`page_token`, `max_tokens`,
/// `eos_token`, design tokens).
pub(super) const NOT_TOKEN: &[&str] = &[
    "page",
    "next",
    "continuation",
    "pagination",
    "cursor",
    "sync",
    "resume",
    "cancel",
    "cancellation",
    "max",
    "min",
    "num",
    "total",
    "input",
    "output",
    "prompt",
    "completion",
    "eos",
    "bos",
    "pad",
    "unk",
    "sep",
    "cls",
    "mask",
    "start",
    "end",
    "stop",
    "special",
    "first",
    "last",
    "design",
    "theme",
    "style",
    "word",
    "text",
    "reasoning",
    "cached",
    "per",
    "each",
    "every",
    "lexer",
    "parser",
    "cancellationtoken",
];

/// Parts before `key` that make it a credential (`api key`, `AccountKey`, `x-api-key`); other
/// keys (`primary key`, `cache_key`, `public_key`, `idempotency-key`) are not.
pub(super) const KEY_PREFIXES: &[&str] = &[
    "api",
    "access",
    "secret",
    "private",
    "signing",
    "encryption",
    "master",
    "account",
    "app",
    "application",
    "client",
    "license",
    "licence",
    "service",
    "admin",
    "auth",
    "subscription",
    "shared",
    "storage",
    "webhook",
    "deploy",
    "consumer",
    "developer",
    "rest",
    "server",
    "session",
    "live",
    "hmac",
    "jwt",
    "root",
    "personal",
    "sdk",
    "ingest",
    "management",
    "mgmt",
    "write",
    // Providers: `the Datadog key is …`, `STRIPE_KEY=…`.
    "aws",
    "azure",
    "gcp",
    "google",
    "github",
    "gitlab",
    "stripe",
    "openai",
    "anthropic",
    "datadog",
    "sendgrid",
    "mailgun",
    "twilio",
    "heroku",
    "cloudflare",
    "slack",
    "shopify",
    "algolia",
    "mapbox",
    "sentry",
    "pagerduty",
    "firebase",
    "supabase",
    "pinecone",
];

/// Compound names written as one word (`APIKEY`, `clientsecret`, `PGPASSWORD`).
pub(super) const COMPOUND_SUFFIXES: &[(&str, Kind)] = &[
    ("password", Kind::Password),
    ("passwd", Kind::Password),
    ("passphrase", Kind::Password),
    ("apikey", Kind::Key),
    ("accesskey", Kind::Key),
    ("secretkey", Kind::Key),
    ("accountkey", Kind::Key),
    ("privatekey", Kind::Key),
    ("signingkey", Kind::Key),
    ("masterkey", Kind::Key),
    ("secret", Kind::Key),
    ("token", Kind::Key),
];

/// The last parts of an identifier, lowercased, split at `_ - .` and at camelCase humps
/// (`XApiKey` -> x, api, key), without allocating: this runs at every name-like word.
pub(super) struct Parts {
    buf: [u8; 64],
    ranges: [(u8, u8); 32],
    n: usize,
}

impl Parts {
    /// Splits the last 64 bytes of `ident`.
    fn split(ident: &[u8]) -> Parts {
        let ident = &ident[ident.len().saturating_sub(64)..];
        let mut p = Parts {
            buf: [0; 64],
            ranges: [(0, 0); 32],
            n: 0,
        };
        let mut start = 0;
        for (i, &c) in ident.iter().enumerate() {
            p.buf[i] = c.to_ascii_lowercase();
            let sep = matches!(c, b'_' | b'-' | b'.' | b' ');
            let hump = c.is_ascii_uppercase()
                && i > 0
                && (ident[i - 1].is_ascii_lowercase()
                    || (ident[i - 1].is_ascii_uppercase()
                        && ident.get(i + 1).is_some_and(u8::is_ascii_lowercase)));
            if sep || hump {
                p.push(start, i);
                start = if sep { i + 1 } else { i };
            }
        }
        p.push(start, ident.len());
        p
    }

    fn push(&mut self, s: usize, e: usize) {
        if s < e && self.n < self.ranges.len() {
            self.ranges[self.n] = (s as u8, e as u8);
            self.n += 1;
        }
    }

    /// Part `i` counted from the end (0 is the last).
    fn back(&self, i: usize) -> Option<&[u8]> {
        let (s, e) = self.ranges[..self.n].iter().rev().nth(i)?;
        Some(&self.buf[usize::from(*s)..usize::from(*e)])
    }
}

/// The word before `at`, across one or two spaces (`api key`, `page token`).
pub(super) fn prev_word(b: &[u8], at: usize) -> Option<&[u8]> {
    let mut e = at;
    while e > 0 && at - e < 2 && b[e - 1] == b' ' {
        e -= 1;
    }
    if e == at {
        return None;
    }
    let mut s = e;
    while s > 0 && b[s - 1].is_ascii_alphanumeric() {
        s -= 1;
    }
    (s < e).then_some(&b[s..e])
}

/// Whether `word` is one of `list` (ASCII case-insensitive).
pub(super) fn one_of(word: &[u8], list: &[&str]) -> bool {
    list.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(word))
}

/// Last parts that say how a credential is written or which copy it is, not what it is.
pub(super) const FORM_WORDS: &[&str] = &[
    "value",
    "base",
    "str",
    "string",
    "plain",
    "raw",
    "b64",
    "base64",
    "confirm",
    "confirmation",
];

/// What the identifier `ident` names, and whether it is a bare short name (`pass`, `pwd`, `auth`,
/// `creds`) that only counts before `=` or `:`. `prev` is the word before it in prose.
pub(super) fn name_kind(ident: &[u8], prev: Option<&[u8]>) -> Option<(Kind, bool)> {
    let parts = Parts::split(ident);
    // `SECRET_KEY_BASE`, `token_value`, `password_confirmation`: the name before a form word.
    let mut skip = 0;
    while parts.n - skip >= 2 && parts.back(skip).is_some_and(|p| one_of(p, FORM_WORDS)) {
        skip += 1;
    }
    let last = parts.back(skip)?;
    let single = parts.n - skip == 1;
    let before = if single { prev } else { parts.back(skip + 1) };
    let last_str = std::str::from_utf8(last).ok()?;
    match last_str {
        "password" | "passwd" | "passphrase" | "passwort" => Some((Kind::Password, false)),
        "pwd" | "pass" | "pw" => Some((Kind::Password, single)),
        "secret" => Some((Kind::Key, false)),
        // `OAuth` is a protocol, not a credential name.
        "auth" if before.is_some_and(|p| p.eq_ignore_ascii_case(b"o")) => None,
        "credential" | "credentials" | "creds" | "auth" | "authorization" => {
            Some((Kind::Key, single))
        }
        "token" => (!before.is_some_and(|p| one_of(p, NOT_TOKEN))).then_some((Kind::Key, false)),
        "key" => before
            .is_some_and(|p| one_of(p, KEY_PREFIXES))
            .then_some((Kind::Key, false)),
        _ => {
            let (suffix, kind) = COMPOUND_SUFFIXES
                .iter()
                .find(|(s, _)| last_str.len() > s.len() && last_str.ends_with(s))?;
            let head = &last_str[..last_str.len() - suffix.len()];
            if *suffix == "token" && NOT_TOKEN.iter().any(|n| head.ends_with(n)) {
                return None;
            }
            Some((*kind, false))
        }
    }
}

/// Words allowed between a name and its value in prose (besides connectors, see
/// [`is_connector`]).
pub(super) const FILLERS: &[&str] = &[
    "of", "for", "to", "as", "be", "set", "now", "here", "the", "my", "our", "your", "new", "this",
    "its", "it's", "will", "should", "on", "at", "in", "with", "a", "an",
];

/// Words after a credential name that make the text about the credential rather than the
/// credential itself.
pub(super) const QUALIFIERS_NOT_VALUE: &[&str] = &[
    "fingerprint",
    "hash",
    "hashes",
    "hashed",
    "digest",
    "checksum",
    "id",
    "ids",
    "prefix",
    "suffix",
    "length",
    "count",
    "type",
    "expiry",
    "expires",
    "ttl",
    "lifetime",
    "name",
    "file",
    "path",
    "url",
    "hint",
    "sha",
    "sha1",
    "sha256",
    "md5",
    "policy",
    "format",
    "header",
    "field",
    "version",
    "scope",
    "scopes",
    "endpoint",
    "rotation",
    "reset",
    "strength",
    "manager",
    "store",
    "vault",
    "size",
    "entropy",
    "owner",
];

/// `sha256 digest of the API key: …`, `the length of the password is …`: the words before the
/// name say the value is something about the credential. `lower` is the lowercased text.
pub(super) fn about_the_credential(lower: &[u8], name_start: usize) -> bool {
    let before = &lower[name_start.saturating_sub(32)..name_start];
    let Some(of) = memmem::rfind(before, b" of ") else {
        return false;
    };
    let head = &before[..of];
    let word_start = head
        .iter()
        .rposition(|c| !c.is_ascii_alphanumeric())
        .map_or(0, |p| p + 1);
    let word = std::str::from_utf8(&head[word_start..]).unwrap_or("");
    QUALIFIERS_NOT_VALUE.contains(&word)
}

/// Authorization schemes skipped before the credential (`Authorization: token …`).
pub(super) const SCHEMES: &[&str] = &[
    "bearer", "token", "basic", "bot", "digest", "apikey", "sso-key", "key", "otoken", "ssws",
];

pub(super) fn strip_scheme(v: &[u8]) -> &[u8] {
    if let Some(sp) = v.iter().position(|&c| c == b' ') {
        let word = String::from_utf8_lossy(&v[..sp]).to_ascii_lowercase();
        if SCHEMES.contains(&word.as_str()) {
            let rest = &v[sp..];
            let skip = rest.iter().take_while(|&&c| c == b' ').count();
            return &rest[skip..];
        }
    }
    v
}

/// The value after the name `b[l..r]`: its range, if it passes [`accept`].
pub(super) fn value_after(
    b: &[u8],
    l: usize,
    r: usize,
    kind: Kind,
    bare: bool,
    flag: bool,
) -> Option<(usize, usize)> {
    let mut i = r;
    // The closing quote of a quoted key (`"password": …`, `\"token\": …`).
    if b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'"') {
        i += 2;
    } else if matches!(b.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    let xml = l > 0 && b[l - 1] == b'<' && b.get(i) == Some(&b'>');
    let spaced = skip_blanks(b, &mut i);
    let link = if xml {
        i += 1;
        Link::Assigned
    } else if matches!(b.get(i), Some(b'=' | b':')) {
        i += 1;
        if matches!(b.get(i), Some(b'=' | b'>')) {
            i += 1;
        }
        skip_blanks(b, &mut i);
        Link::Assigned
    } else if flag && spaced {
        Link::Assigned
    } else if !spaced || (bare && !(l + 2 == r && b[l..r].eq_ignore_ascii_case(b"pw"))) {
        return None;
    } else {
        Link::Prose
    };
    // A bare `pw` in prose counts only once a `:` closes its phrase (`pw for the admin: …`).
    let mut closed = !bare;
    if link == Link::Assigned {
        let (s, e, quoted) = read_value(b, i, true)?;
        let label = String::from_utf8_lossy(&b[l..r]);
        let value = String::from_utf8_lossy(&b[s..e]);
        return (accept(kind, link, quoted, &b[s..e]) && !call_or_self(b, &label, &value, e))
            .then_some((s, e));
    }
    // Prose: filler words, and up to three qualifiers (`for admin on staging`) that a connector
    // (`is`, `was`, a word ending in `:`) must close before the value may come.
    let mut free = 3;
    let mut pending = false;
    for _ in 0..8 {
        let (s, e, quoted) = read_value(b, i, false)?;
        let word = raw_word(b, i);
        let mut next = i + word.len();
        let more = skip_blanks(b, &mut next);
        if QUALIFIERS_NOT_VALUE.contains(&word.trim_end_matches([':', ',', '.'])) {
            // `token fingerprint: …`, `password hash: …`, `api key id …`: about the credential,
            // not the credential.
            return None;
        }
        let connector = is_connector(&word);
        // A qualifier closed by a connector (`password for db1-prod is …`) is not the value.
        let qualifier = more && is_connector(&raw_word(b, next));
        if !pending && closed && !connector && !qualifier && accept(kind, link, quoted, &b[s..e]) {
            return Some((s, e));
        }
        if connector {
            pending = false;
            closed |= word.ends_with(':');
        } else if !FILLERS.contains(&word.as_str()) {
            if free == 0 || word.ends_with(['.', ',', ';', '!', '?']) {
                return None;
            }
            free -= 1;
            pending = true;
        }
        if !more {
            return None;
        }
        i = next;
    }
    None
}

/// The lowercased word at `i`, up to the next whitespace.
pub(super) fn raw_word(b: &[u8], i: usize) -> String {
    let len = b[i..]
        .iter()
        .take_while(|c| !c.is_ascii_whitespace())
        .count();
    String::from_utf8_lossy(&b[i..i + len]).to_ascii_lowercase()
}

/// Words that tie a name (and its qualifiers) to the value that follows.
pub(super) fn is_connector(word: &str) -> bool {
    word.ends_with(':')
        || matches!(
            word,
            "is" | "was"
                | "are"
                | "="
                | "->"
                | "=>"
                | "\u{2192}"
                | "\u{2014}"
                | "-"
                | "reads"
                | "remains"
        )
}

/// Skips spaces and tabs; whether any were skipped.
pub(super) fn skip_blanks(b: &[u8], i: &mut usize) -> bool {
    let start = *i;
    while b.get(*i).is_some_and(|&c| c == b' ' || c == b'\t') {
        *i += 1;
    }
    *i > start
}

/// The value starting at `i`: quoted (`"…"`, `'…'`, `` `…` ``, `\"…\"`, on one line) or up to a
/// blank or a delimiter; an authorization scheme word before it is skipped when `schemes`.
pub(super) fn read_value(b: &[u8], mut i: usize, schemes: bool) -> Option<(usize, usize, bool)> {
    if schemes {
        let mut e = i;
        while b
            .get(e)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'-')
        {
            e += 1;
        }
        if e > i && b.get(e) == Some(&b' ') {
            let word = String::from_utf8_lossy(&b[i..e]).to_ascii_lowercase();
            if SCHEMES.contains(&word.as_str()) {
                i = e;
                skip_blanks(b, &mut i);
            }
        }
    }
    let c = *b.get(i)?;
    let (quote, open) = match c {
        b'"' | b'\'' | b'`' => (Some(&b[i..=i]), 1),
        b'\\' if b.get(i + 1) == Some(&b'"') => (Some(&b[i..i + 2]), 2),
        _ => (None, 0),
    };
    if let Some(q) = quote {
        let s = i + open;
        let limit = (s + 512).min(b.len());
        let close = memmem::find(&b[s..limit], q)? + s;
        if b[s..close].contains(&b'\n') || close == s {
            return None;
        }
        return Some((s, close, true));
    }
    let s = i;
    let mut e = s;
    while e < b.len()
        && !b[e].is_ascii_whitespace()
        && !matches!(
            b[e],
            b'"' | b'\''
                | b'`'
                | b','
                | b';'
                | b'<'
                | b'>'
                | b'('
                | b')'
                | b'{'
                | b'}'
                | b'['
                | b']'
                | b'\\'
                | b'|'
        )
    {
        e += 1;
    }
    let mut e = cut_at_param(b, s, e);
    // Sentence punctuation is not part of the value (`!` may end a password: it stays).
    while e > s && matches!(b[e - 1], b'.' | b':' | b'?') {
        e -= 1;
    }
    (e > s).then_some((s, e, false))
}

/// Where an unquoted value in `b[s..e]` ends: at the first `&` that starts another `name=`
/// (`password=l88oE&sOWA9yF1I` is one value, `password=x&user=y` two); trailing `&`s dropped.
pub(super) fn cut_at_param(b: &[u8], s: usize, mut e: usize) -> usize {
    let mut i = s;
    while let Some(p) = memchr::memchr(b'&', &b[i..e]) {
        let amp = i + p;
        let mut j = amp + 1;
        while j < e
            && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'-' | b'.' | b'[' | b']'))
        {
            j += 1;
        }
        if j > amp + 1 && b.get(j) == Some(&b'=') {
            e = amp;
            break;
        }
        i = amp + 1;
    }
    while e > s && b[e - 1] == b'&' {
        e -= 1;
    }
    e
}

/// File extensions that make a value a file name rather than a credential.
pub(super) const FILE_SUFFIXES: &[&str] = &[
    ".json", ".yaml", ".yml", ".txt", ".env", ".pem", ".key", ".toml", ".ini", ".cfg", ".conf",
    ".crt", ".p12", ".pfx", ".gpg", ".enc", ".js", ".ts", ".py", ".rs", ".go",
];

/// Whether `v`, tied to a name of `kind` by `link`, looks like a credential.
pub(super) fn accept(kind: Kind, link: Link, quoted: bool, v: &[u8]) -> bool {
    let n = v.len();
    if !(6..=1024).contains(&n) {
        return false;
    }
    let Ok(text) = std::str::from_utf8(v) else {
        return false;
    };
    if placeholder(text) || (text.starts_with('%') && text.ends_with('%')) {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("://")
        || text.starts_with(['/', '~', '-', '.', '@'])
        // A colour or an anchor, not a password that starts with `#`.
        || (v[0] == b'#'
            && v[1..]
                .iter()
                .all(|c| c.is_ascii_hexdigit() || c.is_ascii_lowercase() || *c == b'-'))
        || FILE_SUFFIXES.iter().any(|x| lower.ends_with(x))
        || matches!(lower.as_str(), "true" | "false" | "null" | "none" | "nil")
    {
        return false;
    }
    let mut st = Stats::default();
    for (i, &c) in v.iter().enumerate() {
        st.add(c, i.checked_sub(1).map(|p| v[p]));
    }
    let letters = st.lower + st.upper;
    if st.space > 0 && !(kind == Kind::Password && link == Link::Field) {
        return false;
    }
    if letters == 0 || code_reference(v) || versionish(v, &st) {
        return false;
    }
    match (kind, link) {
        (Kind::Password, Link::Field) => true,
        (Kind::Password, Link::Assigned) => quoted || st.digit + st.special > 0 || mixed(&st),
        (Kind::Password, Link::Prose) => {
            (n >= 8 || quoted)
                && (st.digit > 0 || st.strong_special > 0)
                && !text.find('@').is_some_and(|at| text[at..].contains('.'))
                && classes(&st) >= 2
        }
        (Kind::Key, Link::Field | Link::Assigned) => {
            n >= 8
                && (n >= 12 || quoted)
                && ((classes(&st) >= 2 && st.digit > 0)
                    || (n >= 24 && st.upper >= 4 && st.lower >= 4))
        }
        (Kind::Key, Link::Prose) => {
            (n >= 16 || (quoted && n >= 12))
                && st.digit > 0
                && (st.hex_only || st.transitions >= 3 || (st.upper > 0 && st.lower > 0))
        }
    }
}

#[derive(Default)]
pub(super) struct Stats {
    lower: usize,
    upper: usize,
    digit: usize,
    special: usize,
    /// Symbols other than the separators of words and versions (`-`, `_`, `.`).
    strong_special: usize,
    space: usize,
    /// Letter/digit alternations: random strings have many, words and versions few.
    transitions: usize,
    hex_only: bool,
}

impl Stats {
    fn add(&mut self, c: u8, prev: Option<u8>) {
        if prev.is_none() {
            self.hex_only = true;
        }
        match c {
            b'a'..=b'z' => self.lower += 1,
            b'A'..=b'Z' => self.upper += 1,
            b'0'..=b'9' => self.digit += 1,
            b' ' | b'\t' => self.space += 1,
            _ => {
                self.special += 1;
                if !matches!(c, b'-' | b'_' | b'.') {
                    self.strong_special += 1;
                }
            }
        }
        self.hex_only &= c.is_ascii_hexdigit();
        if let Some(p) = prev
            && p.is_ascii_digit() != c.is_ascii_digit()
            && p.is_ascii_alphanumeric()
            && c.is_ascii_alphanumeric()
        {
            self.transitions += 1;
        }
    }
}

pub(super) fn classes(st: &Stats) -> usize {
    usize::from(st.lower > 0)
        + usize::from(st.upper > 0)
        + usize::from(st.digit > 0)
        + usize::from(st.special > 0)
}

pub(super) fn mixed(st: &Stats) -> bool {
    st.lower > 0 && st.upper > 0
}

/// `process.env.API_KEY`, `settings.SECRET_KEY`, `os.environ`: code, not a value.
pub(super) fn code_reference(v: &[u8]) -> bool {
    let segments = v.split(|&c| c == b'.');
    let mut count = 0;
    for seg in segments {
        count += 1;
        if seg.is_empty()
            || seg.len() > 20
            || !seg[0].is_ascii_alphabetic()
            || !seg.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
            // `b5XGM.eYKFDfKHb`, `QKVMwb.wC7J9x`: digits inside mixed case are random, not an
            // identifier (`S3_KEY`, `db1`, `s3client` stay code).
            || (seg.iter().any(u8::is_ascii_digit)
                && seg.iter().any(u8::is_ascii_lowercase)
                && seg.iter().any(u8::is_ascii_uppercase))
        {
            return false;
        }
    }
    // `Falcon.dragon32`: a last part ending in two digits is a password's tail, where code ends
    // in an attribute name (`config.db1.password`, `form.password2`).
    let tail = v.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    count >= 2 && !(tail >= 2 && v.len() > tail && v[v.len() - tail - 1].is_ascii_lowercase())
}

/// Code rather than a value: a function call (`password = get_password()`) or the name itself
/// (`api_key=api_key`). `e` is where the value ends in `b`.
pub(super) fn call_or_self(b: &[u8], label: &str, value: &str, e: usize) -> bool {
    b.get(e) == Some(&b'(') || value.eq_ignore_ascii_case(label)
}

/// Versions, dates and times: `v1.2.3`, `2.0.0-rc.1`, `2026-11-27`, `10:15:30`.
pub(super) fn versionish(v: &[u8], st: &Stats) -> bool {
    let body = v.strip_prefix(b"v").unwrap_or(v);
    body.first().is_some_and(u8::is_ascii_digit)
        && st.strong_special == 0
        && st.lower + st.upper <= 4
        && st.special > 0
}
