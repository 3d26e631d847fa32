//! Built-in sensitive-data classifiers: e-mail addresses, phone numbers, national ids, IBANs,
//! payment cards, health information and secrets in the strings of tool-call arguments and results.
//!
//! [`Classifiers`] is compiled once from the configured [`Class`] set and shared;
//! [`Classifiers::scan`] reports byte ranges into the scanned text. Precision comes first: every
//! candidate a pattern finds is validated (Luhn and issuer prefix for cards, mod-97 and country
//! length for IBANs, SSN number ranges, boundary and separator rules for phone numbers, placeholder
//! rules for labelled passwords), so version numbers, dates, UUIDs, timestamps and order ids stay
//! quiet. Secrets have their own module (`secrets/`: shapes, key-id pairs, credential names);
//! [`Classifiers::field_secret`] adds the one context a string scan cannot see, the JSON key a
//! value is stored under.
//!
//! Disguised data is looked for too. Text with Unicode look-alikes (fullwidth or other decimal
//! digits, fullwidth letters, zero-width and bidi characters, exotic spaces and dashes) is scanned
//! through a folded copy; text with `%XX` escapes is also scanned percent-decoded; runs of base64
//! are decoded and scanned for secrets and card numbers. Findings in derived text are mapped back
//! to ranges of the original text that cover the encoded occurrence.
//!
//! Speed: a 1 KiB ASCII string costs roughly one pass of byte checks plus a few prefiltered regex
//! passes. Digit-based classes (phone, national id, IBAN, card) share one hand-written scan for
//! clusters of digits, and their regexes only run on the few clusters long enough to matter; the
//! health and labelled-secret patterns run on an ASCII-lowercased copy so their literal prefilters
//! stay small.

use std::cmp::Reverse;
use std::fmt;
use std::ops::Range;

use memchr::{memchr, memchr_iter, memrchr};
use regex::{CaptureLocations, Regex};
use serde::{Deserialize, Serialize};

use super::secrets::Secrets;

/// Kinds of sensitive data the built-in classifiers find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// E-mail addresses, also inside `mailto:` links.
    Email,
    /// Phone numbers: international `+` form and US/NANP forms.
    Phone,
    /// US Social Security numbers and UK National Insurance numbers.
    NationalId,
    /// International bank account numbers that pass the ISO 13616 mod-97 check.
    Iban,
    /// Payment card numbers with a known issuer prefix that pass the Luhn check.
    PaymentCard,
    /// Health information: clear medical terms, labelled ICD-10 codes, medical record numbers.
    Health,
    /// Credentials: cloud and SaaS keys, tokens, private keys, passwords.
    Secret,
}

impl Class {
    /// Every class, in declaration order, for "enable everything" and config validation.
    pub const ALL: [Class; 7] = [
        Class::Email,
        Class::Phone,
        Class::NationalId,
        Class::Iban,
        Class::PaymentCard,
        Class::Health,
        Class::Secret,
    ];

    /// The config / JSON spelling: "email", "phone", "national_id", "iban", "payment_card",
    /// "health", "secret" (the same as the serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Email => "email",
            Class::Phone => "phone",
            Class::NationalId => "national_id",
            Class::Iban => "iban",
            Class::PaymentCard => "payment_card",
            Class::Health => "health",
            Class::Secret => "secret",
        }
    }

    /// Parses the config spelling (ASCII case-insensitive), so configs can name classes; `None` if
    /// unknown.
    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }

    /// The compliance regime a finding falls under, for audit tags: Email/Phone/NationalId/Iban ->
    /// "gdpr"; PaymentCard -> "pci_dss"; Health -> "hipaa"; Secret -> "secrets".
    pub fn tag(self) -> &'static str {
        match self {
            Class::Email | Class::Phone | Class::NationalId | Class::Iban => "gdpr",
            Class::PaymentCard => "pci_dss",
            Class::Health => "hipaa",
            Class::Secret => "secrets",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One match: byte range into the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// What was found.
    pub class: Class,
    /// Offset of the first byte; always on a char boundary.
    pub start: usize,
    /// Offset one past the last byte; on a char boundary, `start < end <= text.len()`.
    pub end: usize,
}

impl Finding {
    /// The byte range, for slicing the scanned text.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

const EMAIL: u8 = Class::Email.bit();
const PHONE: u8 = Class::Phone.bit();
const NATIONAL_ID: u8 = Class::NationalId.bit();
const IBAN: u8 = Class::Iban.bit();
const CARD: u8 = Class::PaymentCard.bit();
const HEALTH: u8 = Class::Health.bit();
const SECRET: u8 = Class::Secret.bit();
/// Classes found by the digit-cluster scan.
const DIGIT_CLASSES: u8 = PHONE | NATIONAL_ID | IBAN | CARD;
/// Classes looked for inside base64 runs.
const BASE64_CLASSES: u8 = SECRET | CARD;
/// How many decoding layers (percent, base64) may nest.
const MAX_DEPTH: u8 = 2;
/// Shortest base64 run (padding included) worth decoding: 13 card digits encode to 20 chars.
const MIN_BASE64_RUN: usize = 20;

// Patterns. ASCII classes and `(?-u:\b)` throughout: Unicode `\d`/`\w`/`\b` would match look-alike
// digits (handled by folding instead) and keep the lazy DFA from running on non-ASCII text.

const RE_EMAIL: &str = concat!(
    r"[A-Za-z0-9._%+\-]+@",
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?-u:\b)",
);
const RE_PHONE_INTL: &str = r"\+\(?[0-9]{1,4}(?:\)?[ .\-]?\(?[0-9]{1,6}){0,7}";
const RE_PHONE_NANP: &str = concat!(
    r"(?:1[ .\-])?(?:\([2-9][0-9]{2}\)[ .\-]?|[2-9][0-9]{2}[ .\-])",
    r"[0-9]{3}[ .\-][0-9]{4}",
);
const RE_SSN: &str = concat!(
    // An optional label; only labelled numbers may be written without dashes.
    r"(?i:(?P<label>(?-u:\b)(?:ssn|social[ \t]+security(?:[ \t]+(?:number|no\.?|\#))?))",
    r"[ \t]*[:\#]?[ \t]*)?",
    r"(?P<n>[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}|[0-9]{9})",
);
const SSN_LABEL: usize = 1;
const SSN_NUMBER: usize = 2;
const RE_NINO: &str = concat!(
    r"(?-u:\b)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]",
    r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?-u:\b)",
);
const RE_IBAN: &str = concat!(
    r"(?-u:\b)[A-Z]{2}[0-9]{2}",
    r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?-u:\b)",
);
const RE_CARD: &str = r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)";
/// Runs on the ASCII-lowercased text.
const RE_HEALTH: &str = concat!(
    r"(?-u:\b)(?:",
    // An ICD-10 code after an "icd" / "icd10" / "ICD-10-CM" label.
    r"icd(?:[\- ]?10(?:[\- ]?cm)?)?[ \t]*(?:codes?)?[ \t]*[:\#=]?[ \t]*",
    r"(?P<code>[a-tv-z][0-9][0-9a-z](?:\.[0-9a-z]{1,4})?)",
    // A medical record number after its label.
    r"|(?:mrn|medical[ \t]+record[ \t]+(?:number|no\.?|\#))[ \t]*[:\#=\-]?[ \t]*",
    r"(?P<id>[a-z0-9]{6,10})",
    // Clear health terms.
    r"|diagnos(?:is|es|ed[ \t]+with)|prognosis|hiv|hepatitis(?:[ \t]+[a-e])?",
    r"|chemotherapy|radiotherapy|cancer|carcinoma|leuka?emia|lymphoma|melanoma|tumou?rs?",
    r"|diabetes|diabetic|insulin|prescriptions?|dialysis|tuberculosis|pregnan(?:t|cy)",
    r"|patient[ \t]+(?:id|name|record)s?|medical[ \t]+(?:records?|history|conditions?)",
    r"|health[ \t]+records?|mental[ \t]+health|psychiatric|schizophrenia",
    r"|bipolar[ \t]+disorder|dementia|alzheimer'?s|antidepressants?|antiretrovirals?",
    r")(?-u:\b)",
);
const HEALTH_CODE: usize = 1;
const HEALTH_ID: usize = 2;
/// Compiled classifiers (compile once at config load, then share via Arc; Send + Sync).
#[derive(Clone)]
pub struct Classifiers {
    enabled: Vec<Class>,
    mask: u8,
    email: Option<Regex>,
    phone_intl: Option<Regex>,
    phone_nanp: Option<Regex>,
    ssn: Option<Regex>,
    nino: Option<Regex>,
    /// Also compiled for the other digit classes: digits inside an IBAN are not cards or phones.
    iban: Option<Regex>,
    card: Option<Regex>,
    health: Option<Regex>,
    secrets: Option<Secrets>,
}

impl fmt::Debug for Classifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifiers")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Classifiers {
    /// Compile the given set (duplicates ignored). Infallible: the patterns are ours.
    pub fn new(enabled: &[Class]) -> Classifiers {
        let mask = enabled.iter().fold(0u8, |m, c| m | c.bit());
        let compile = |on: u8, pattern: &str| {
            (mask & on != 0).then(|| Regex::new(pattern).expect("built-in pattern compiles"))
        };
        Classifiers {
            enabled: Class::ALL
                .into_iter()
                .filter(|c| mask & c.bit() != 0)
                .collect(),
            mask,
            email: compile(EMAIL, RE_EMAIL),
            phone_intl: compile(PHONE, RE_PHONE_INTL),
            phone_nanp: compile(PHONE, RE_PHONE_NANP),
            ssn: compile(NATIONAL_ID, RE_SSN),
            nino: compile(NATIONAL_ID, RE_NINO),
            iban: compile(DIGIT_CLASSES, RE_IBAN),
            card: compile(CARD, RE_CARD),
            health: compile(HEALTH, RE_HEALTH),
            secrets: (mask & SECRET != 0).then(Secrets::new),
        }
    }

    /// The enabled classes (deduplicated, in [`Class::ALL`] order), so callers can report what is
    /// being looked for.
    pub fn enabled(&self) -> &[Class] {
        &self.enabled
    }

    /// Whether `value`, stored under the field `name` (a JSON object key), is a credential by
    /// that name (`{"client_secret": "…"}`, `{"X-Api-Key": "…"}`): the name's context that a
    /// scan of the value alone cannot see. False when secrets are not enabled.
    pub fn field_secret(&self, name: &str, value: &str) -> bool {
        self.secrets.as_ref().is_some_and(|s| s.field(name, value))
    }

    /// Append every finding in `text` to `out`, ordered by start, non-overlapping per class
    /// (overlapping findings of one class are merged).
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        if self.mask == 0 || text.is_empty() {
            return;
        }
        let mut found = Vec::new();
        self.scan_layer(text, self.mask, MAX_DEPTH, false, &mut found);
        settle(text, &mut found);
        out.append(&mut found);
    }

    /// Cheap: true if scan would find anything (short-circuits after the first pass that finds
    /// something).
    pub fn any(&self, text: &str) -> bool {
        if self.mask == 0 || text.is_empty() {
            return false;
        }
        let mut found = Vec::new();
        self.scan_layer(text, self.mask, MAX_DEPTH, true, &mut found);
        !found.is_empty()
    }

    /// Scans `text`, or its folded copy if it has Unicode look-alikes; findings are in `text`
    /// offsets.
    fn scan_layer(&self, text: &str, mask: u8, depth: u8, early: bool, out: &mut Vec<Finding>) {
        if !text.is_ascii()
            && let Some(folded) = fold_lookalikes(text)
        {
            let at = out.len();
            self.scan_plain(&folded.text, mask, depth, early, out);
            folded.remap(&mut out[at..]);
            return;
        }
        self.scan_plain(text, mask, depth, early, out);
    }

    fn scan_plain(&self, t: &str, mask: u8, depth: u8, early: bool, out: &mut Vec<Finding>) {
        let base = out.len();
        let stop = |len: usize| early && len > base;
        let b = t.as_bytes();
        if mask & SECRET != 0
            && let Some(secrets) = &self.secrets
        {
            secrets.scan(t, out);
        }
        if mask & EMAIL != 0
            && memchr(b'@', b).is_some()
            && let Some(re) = &self.email
        {
            emails(re, t, out);
        }
        if stop(out.len()) {
            return;
        }
        if mask & DIGIT_CLASSES != 0 {
            self.numeric(t, mask, out);
        }
        if mask & (HEALTH | SECRET) != 0 && !stop(out.len()) {
            // A text without capitals is its own lowercase: no 64 KiB copy for a long one.
            let capitals = b
                .chunks(32)
                .any(|k| k.iter().fold(false, |a, c| a | c.is_ascii_uppercase()));
            let lower = if capitals {
                std::borrow::Cow::Owned(t.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(t)
            };
            if mask & HEALTH != 0
                && let Some(re) = &self.health
            {
                health(re, &lower, b, out);
            }
            if mask & SECRET != 0
                && let Some(secrets) = &self.secrets
            {
                secrets.scan_lowered(t, &lower, out);
            }
        }
        if depth == 0 || stop(out.len()) {
            return;
        }
        if has_percent_escape(b)
            && let Some(decoded) = percent_decode(t)
        {
            let at = out.len();
            self.scan_layer(&decoded.text, mask, depth - 1, early, out);
            decoded.remap(&mut out[at..]);
        }
        if mask & BASE64_CLASSES != 0 && !stop(out.len()) {
            self.base64_runs(t, mask & BASE64_CLASSES, depth - 1, early, out);
        }
    }

    /// Phone numbers, national ids, IBANs and cards: walk clusters of digits (digits joined by at
    /// most two separator characters) and run the class regexes only on clusters that can hold a
    /// match.
    fn numeric(&self, t: &str, mask: u8, out: &mut Vec<Finding>) {
        let b = t.as_bytes();
        let mut from = 0;
        // Clusters starting before this offset lie inside an IBAN already found.
        let mut iban_end = 0;
        while let Some(cs) = next_digit(b, from) {
            let c = Cluster::walk(b, cs);
            from = c.end;
            if cs < iban_end {
                continue;
            }
            let letters = |at: usize| {
                at >= 2
                    && b[at - 1].is_ascii_uppercase()
                    && b[at - 2].is_ascii_uppercase()
                    && (at == 2 || !is_word(b[at - 3]))
            };
            if letters(cs)
                && let Some(re) = &self.iban
                && let Some(f) = find_iban(re, t, cs - 2)
            {
                iban_end = f.end;
                if mask & IBAN != 0 {
                    out.push(f);
                }
                continue;
            }
            if mask & NATIONAL_ID != 0
                && let Some(re) = &self.nino
            {
                let start = if letters(cs) {
                    Some(cs - 2)
                } else if cs >= 1 && b[cs - 1] == b' ' && letters(cs - 1) {
                    Some(cs - 3)
                } else {
                    None
                };
                if let Some(s) = start
                    && let Some(m) = re.find_at(window(t, s + 16), s)
                    && m.start() == s
                    && word_end(b, m.end())
                    && nino_prefix_ok(&b[s..s + 2])
                {
                    out.push(Finding {
                        class: Class::NationalId,
                        start: s,
                        end: m.end(),
                    });
                }
            }
            let plus = if cs >= 1 && b[cs - 1] == b'+' {
                Some(cs - 1)
            } else if cs >= 2 && b[cs - 1] == b'(' && b[cs - 2] == b'+' {
                Some(cs - 2)
            } else {
                None
            };
            if let (Some(p), Some(re)) = (plus, &self.phone_intl)
                && mask & PHONE != 0
                && c.digits >= 8
            {
                intl_phones(re, t, p, c.end, out);
            }
            if mask & PHONE != 0
                && c.digits >= 10
                && c.punct
                && let Some(re) = &self.phone_nanp
            {
                let s = if cs >= 1 && b[cs - 1] == b'(' {
                    cs - 1
                } else {
                    cs
                };
                nanp_phones(re, t, s, c.end, out);
            }
            if mask & NATIONAL_ID != 0
                && c.digits >= 9
                && let Some(re) = &self.ssn
            {
                let labelled = ssn_label_near(b, cs);
                if c.dash || labelled {
                    let s = if labelled {
                        floor_boundary(t, cs.saturating_sub(40))
                    } else {
                        cs
                    };
                    ssns(re, t, s, c.end, out);
                }
            }
            if mask & CARD != 0
                && c.digits >= 13
                && let Some(re) = &self.card
            {
                cards(re, t, cs, c.end, out);
            }
        }
    }

    /// Decodes base64 runs and reports the whole run for each class found inside it.
    fn base64_runs(&self, t: &str, mask: u8, depth: u8, early: bool, out: &mut Vec<Finding>) {
        let b = t.as_bytes();
        let mut inner = Vec::new();
        // A long enough run has at least STEP chars before its padding, so it covers one of the
        // positions probed every STEP bytes: probe those and expand.
        const STEP: usize = MIN_BASE64_RUN - 2;
        let mut i = STEP - 1;
        while i < b.len() {
            if !is_b64(b[i]) {
                i += STEP;
                continue;
            }
            let mut s = i;
            while s > 0 && is_b64(b[s - 1]) {
                s -= 1;
            }
            let e = b64_run_end(b, i + 1);
            let mut pe = e;
            while pe < b.len() && pe - e < 2 && b[pe] == b'=' {
                pe += 1;
            }
            // A long run is decoded whole only if its start decodes to text.
            let probe = s + (e - s).min(64) / 4 * 4;
            if pe - s >= MIN_BASE64_RUN
                && (e - s <= 64 || printable_start(&b[s..probe]))
                && let Some(bytes) = base64_decode(&b[s..e])
                && let Some(text) = printable(&bytes)
            {
                inner.clear();
                self.scan_layer(text, mask, depth, early, &mut inner);
                let before = out.len();
                for class in [Class::Secret, Class::PaymentCard] {
                    if mask & class.bit() != 0 && inner.iter().any(|f| f.class == class) {
                        out.push(Finding {
                            class,
                            start: s,
                            end: pe,
                        });
                    }
                }
                if early && out.len() > before {
                    return;
                }
            }
            let next_run = if pe > e { pe } else { e + 1 };
            i = next_run + STEP - 1;
        }
    }
}

/// Luhn checksum over ASCII digits (non-digits ignored by the caller; here input is digits only).
/// Empty input or any non-digit byte is invalid.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        if !d.is_ascii_digit() {
            return false;
        }
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// ISO 13616 IBAN check (mod 97 == 1), spaces allowed between groups, case-insensitive. Checks
/// structure (country letters, check digits, 15–34 alphanumerics) but not the per-country length.
pub fn iban_valid(s: &str) -> bool {
    let mut buf = [0u8; 34];
    let mut n = 0;
    for c in s.bytes() {
        if c == b' ' {
            continue;
        }
        if n == buf.len() || !c.is_ascii_alphanumeric() {
            return false;
        }
        buf[n] = c.to_ascii_uppercase();
        n += 1;
    }
    let iban = &buf[..n];
    if n < 15
        || !iban[..2].iter().all(u8::is_ascii_uppercase)
        || !iban[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    let mut rem = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        rem = if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    rem == 1
}

/// Replace each finding's bytes in `text` by a mask like `[REDACTED:payment_card]` (keep text
/// outside findings). Findings may come in any order and overlap: overlapping ones are merged and
/// masked once, with the class of the finding that starts first (the longer one on a tie).
/// Out-of-range ends are clamped and ranges widened to char boundaries, so this never panics.
pub fn mask(text: &str, findings: &[Finding]) -> String {
    replace_findings(text, findings, |class, _| format!("[REDACTED:{class}]"))
}

/// Replaces each finding's bytes in `text` by what `with` makes of its class and the text it
/// covers, merging overlapping findings as [`mask`] does; the one place findings are cut out.
pub fn replace_findings(
    text: &str,
    findings: &[Finding],
    mut with: impl FnMut(Class, &str) -> String,
) -> String {
    let mut spans: Vec<Finding> = findings
        .iter()
        .filter_map(|f| {
            let end = ceil_boundary(text, f.end.min(text.len()));
            let start = floor_boundary(text, f.start.min(end));
            (start < end).then_some(Finding {
                class: f.class,
                start,
                end,
            })
        })
        .collect();
    spans.sort_unstable_by_key(|f| (f.start, Reverse(f.end), f.class));
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut i = 0;
    while i < spans.len() {
        let Finding {
            class,
            start,
            mut end,
        } = spans[i];
        i += 1;
        while i < spans.len() && spans[i].start < end {
            end = end.max(spans[i].end);
            i += 1;
        }
        out.push_str(&text[pos..start]);
        out.push_str(&with(class, &text[start..end]));
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

// ---------------------------------------------------------------------------------------------
// Finishing: boundaries, order, per-class merging.

/// Snaps to char boundaries, sorts by start and merges overlapping findings of one class.
fn settle(text: &str, found: &mut Vec<Finding>) {
    for f in found.iter_mut() {
        f.end = ceil_boundary(text, f.end.min(text.len()));
        f.start = floor_boundary(text, f.start.min(f.end));
    }
    found.retain(|f| f.start < f.end);
    found.sort_unstable_by_key(|f| (f.start, f.class, Reverse(f.end)));
    let mut last = [usize::MAX; Class::ALL.len()];
    let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found.drain(..) {
        let k = f.class as usize;
        if let Some(prev) = kept.get_mut(last[k])
            && f.start < prev.end
        {
            prev.end = prev.end.max(f.end);
            continue;
        }
        last[k] = kept.len();
        kept.push(f);
    }
    *found = kept;
}

fn floor_boundary(t: &str, mut i: usize) -> usize {
    while !t.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(t: &str, mut i: usize) -> usize {
    while !t.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn next_boundary(t: &str, i: usize) -> usize {
    ceil_boundary(t, i + 1)
}

pub(super) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The prefix of `t` up to `want`, so a regex searches a small neighbourhood instead of scanning on
/// to the end of the text. The cut looks like a word boundary to the regex: callers whose pattern
/// ends in `\b` confirm the end against the whole text with [`word_end`].
fn window(t: &str, want: usize) -> &str {
    &t[..ceil_boundary(t, want.min(t.len()))]
}

/// No ASCII word byte follows offset `e` in the whole text.
fn word_end(b: &[u8], e: usize) -> bool {
    b.get(e).is_none_or(|&c| !is_word(c))
}

/// Runs `re` over a (small) window from `pos`; `check` validates a raw match, pushing what it
/// accepts, and returns the accepted end. A rejected match resumes one character after its start,
/// so a valid candidate that overlaps a rejected one (a card right after an unrelated number group)
/// is still found.
fn sweep(
    re: &Regex,
    hay: &str,
    mut pos: usize,
    mut check: impl FnMut(usize, usize) -> Option<usize>,
) {
    while pos < hay.len() {
        let Some(m) = re.find_at(hay, pos) else { break };
        pos = match check(m.start(), m.end()) {
            Some(end) => end.max(m.start() + 1),
            None => next_boundary(hay, m.start()),
        };
    }
}

/// [`sweep`] with capture groups, for patterns run over the whole text: a rejected match resumes at
/// its end, which keeps the work linear however long the matches (labelled values, URL user parts)
/// are.
pub(super) fn sweep_caps(
    re: &Regex,
    hay: &str,
    mut pos: usize,
    mut check: impl FnMut(&CaptureLocations) -> Option<usize>,
) {
    let mut locs = re.capture_locations();
    while pos < hay.len() {
        let Some(m) = re.captures_read_at(&mut locs, hay, pos) else {
            break;
        };
        pos = match check(&locs) {
            Some(end) => end.max(m.end()),
            None => m.end(),
        };
    }
}

/// Capture locations of an anchored pattern tried at `base`, in offsets of the whole text.
pub(super) struct Caps<'a> {
    locs: &'a CaptureLocations,
    base: usize,
}

impl Caps<'_> {
    /// Group `i`'s range, if it took part in the match.
    pub(super) fn get(&self, i: usize) -> Option<(usize, usize)> {
        self.locs
            .get(i)
            .map(|(s, e)| (s + self.base, e + self.base))
    }
}

/// [`sweep_caps`] for a pattern whose matches can only start at `starts` (ascending, on char
/// boundaries): `re` is the pattern anchored with `^`, tried at each start not inside an
/// earlier match, so the matches and their order are the ones the unanchored search over the
/// whole text would give, without running the pattern over the text between the starts.
/// Look-behind at a start (a leading `\b`) is the caller's to check.
pub(super) fn sweep_at(
    re: &Regex,
    hay: &str,
    starts: impl Iterator<Item = usize>,
    mut check: impl FnMut(&Caps<'_>) -> Option<usize>,
) {
    let mut locs = re.capture_locations();
    let mut pos = 0;
    for at in starts {
        if at < pos {
            continue;
        }
        let Some(m) = re.captures_read(&mut locs, &hay[at..]) else {
            continue;
        };
        let end = at + m.end();
        pos = match check(&Caps {
            locs: &locs,
            base: at,
        }) {
            Some(e) => e.max(end),
            None => end,
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Email.

/// Domain "TLDs" that are really file extensions (`icon@2x.png`, `bundle@1x.js`).
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "avif", "js", "mjs", "css", "ts",
    "tsx", "jsx", "map", "json", "yaml", "yml", "toml", "lock",
];

fn emails(re: &Regex, t: &str, out: &mut Vec<Finding>) {
    let b = t.as_bytes();
    let mut pos = 0;
    while pos < t.len() {
        let Some(m) = re.find_at(t, pos) else { break };
        let (s, e) = (m.start(), m.end());
        let local = &b[s..e];
        let at = memchr(b'@', local).unwrap_or(0);
        let lead = local[..at]
            .iter()
            .take_while(|&&c| matches!(c, b'.' | b'%' | b'+' | b'-'))
            .count();
        let tld = &t[s + memrchr(b'.', local).map_or(0, |d| d + 1)..e];
        // `git@github.com:org/repo` is an SSH remote, not a mailbox.
        let ssh = b.get(e) == Some(&b':') && b.get(e + 1).is_some_and(|c| !c.is_ascii_whitespace());
        // `scheme://user:password@host` is a password (a secret) before a host, not a mailbox.
        let userinfo = s > 0 && b[s - 1] == b':' && {
            let from = s.saturating_sub(64);
            let run = b[from..s]
                .iter()
                .rposition(u8::is_ascii_whitespace)
                .map_or(from, |p| from + p);
            memchr::memmem::find(&b[run..s], b"://").is_some()
        };
        if lead == at
            || ssh
            || userinfo
            || FILE_EXTENSIONS.iter().any(|x| tld.eq_ignore_ascii_case(x))
        {
            // Every address through this `@` has the same domain: go on after it (linear work).
            pos = s + at + 1;
            continue;
        }
        out.push(Finding {
            class: Class::Email,
            start: s + lead,
            end: e,
        });
        pos = e;
    }
}

// ---------------------------------------------------------------------------------------------
// Digit clusters: phones, SSNs, UK NI numbers, IBANs, cards.

/// Offset of the next ASCII digit at or after `from`: blocks of 32 bytes tested without a branch
/// per byte (vector compares), then eight bytes at a time.
fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    let mut from = from;
    while let Some(block) = b.get(from..from + 32) {
        if block.iter().fold(false, |any, &c| any | c.is_ascii_digit()) {
            break;
        }
        from += 32;
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= b.len() {
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&b[i..i + 8]);
        let x = u64::from_le_bytes(chunk);
        let low7 = x & !HIGH;
        // Per byte (high bits cleared, so no carries between bytes):
        // the high bit of `ge0` is set iff the byte is >= b'0', of `gt9` iff it is > b'9'.
        let ge0 = low7 + ONES * 0x50;
        let gt9 = low7 + ONES * 0x46;
        let digits = ge0 & !gt9 & !x & HIGH;
        if digits != 0 {
            return Some(i + (digits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| p + i)
}

/// Digits joined by runs of at most two separators (`555) 123-4567`, `4111 1111`, `2026-11-27`).
struct Cluster {
    end: usize,
    digits: usize,
    /// Has a `-`.
    dash: bool,
    /// Has a `-`, `.` or `(`/`)`: the NANP forms we accept are never space-only.
    punct: bool,
}

impl Cluster {
    fn walk(b: &[u8], start: usize) -> Cluster {
        let mut c = Cluster {
            end: start,
            digits: 0,
            dash: false,
            punct: false,
        };
        let mut j = start;
        loop {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
                c.digits += 1;
            }
            c.end = j;
            let mut k = j;
            while k < b.len() && k - j < 2 && matches!(b[k], b' ' | b'-' | b'.' | b'(' | b')') {
                k += 1;
            }
            if k == j || k >= b.len() || !b[k].is_ascii_digit() {
                return c;
            }
            for &s in &b[j..k] {
                c.dash |= s == b'-';
                c.punct |= s != b' ';
            }
            j = k;
        }
    }
}

/// Nothing glued on the left that makes the number part of something longer (`v1.`, `#`, `/`, `-`).
fn clean_left(b: &[u8], s: usize) -> bool {
    s == 0 || !(is_word(b[s - 1]) || matches!(b[s - 1], b'-' | b'.' | b'+' | b'/' | b'#' | b'$'))
}

/// Nothing glued on the right: no word byte, no `-7`/`.7`/`/7` continuation.
fn clean_right(b: &[u8], e: usize) -> bool {
    match b.get(e) {
        None => true,
        Some(&c) if is_word(c) => false,
        Some(b'-' | b'.' | b'/') => !b.get(e + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

fn intl_phones(re: &Regex, t: &str, from: usize, to: usize, out: &mut Vec<Finding>) {
    let b = t.as_bytes();
    sweep(re, window(t, to), from, |s, e| {
        if (s > 0 && is_word(b[s - 1])) || b.get(e).is_some_and(|&c| is_word(c)) {
            return None;
        }
        // Too many digits usually means a following number was swallowed: cut at separators.
        let mut end = e;
        loop {
            let digits = b[s..end].iter().filter(|c| c.is_ascii_digit()).count();
            if (8..=15).contains(&digits) {
                out.push(Finding {
                    class: Class::Phone,
                    start: s,
                    end,
                });
                return Some(end);
            }
            if digits < 8 {
                return None;
            }
            end = memrchr_any(&b[s..end], b" .-(")?;
            end += s;
            while end > s && !b[end - 1].is_ascii_digit() {
                end -= 1;
            }
        }
    });
}

fn nanp_phones(re: &Regex, t: &str, from: usize, to: usize, out: &mut Vec<Finding>) {
    let b = t.as_bytes();
    sweep(re, window(t, to), from, |s, e| {
        if !clean_left(b, s) || !clean_right(b, e) {
            return None;
        }
        let mut m = &b[s..e];
        if m[0] == b'1' {
            m = &m[2..];
        }
        // `555-123-4567` / `555.123.4567`: one separator kind, and not spaces (lists of numbers).
        if m[0] != b'(' && (m[3] != m[7] || m[3] == b' ') {
            return None;
        }
        out.push(Finding {
            class: Class::Phone,
            start: s,
            end: e,
        });
        Some(e)
    });
}

/// Whether "ssn" or "social security" appears in the 40 bytes before `at`.
fn ssn_label_near(b: &[u8], at: usize) -> bool {
    let w = &b[at.saturating_sub(40)..at];
    w.windows(3).any(|x| x.eq_ignore_ascii_case(b"ssn"))
        || w.windows(6).any(|x| x.eq_ignore_ascii_case(b"social"))
}

fn ssns(re: &Regex, t: &str, from: usize, to: usize, out: &mut Vec<Finding>) {
    let b = t.as_bytes();
    sweep_caps(re, window(t, to), from, |c| {
        let (s, e) = c.get(SSN_NUMBER)?;
        let n = &b[s..e];
        let labelled = c.get(SSN_LABEL).is_some();
        if !clean_left(b, s) || !clean_right(b, e) || (!labelled && n[3] != b'-') {
            return None;
        }
        let mut d = [0u8; 9];
        for (slot, &digit) in d.iter_mut().zip(n.iter().filter(|x| x.is_ascii_digit())) {
            *slot = digit;
        }
        let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
        if area == b"000"
            || area == b"666"
            || area[0] == b'9'
            || group == b"00"
            || serial == b"0000"
        {
            return None;
        }
        out.push(Finding {
            class: Class::NationalId,
            start: s,
            end: e,
        });
        Some(e)
    });
}

fn nino_prefix_ok(p: &[u8]) -> bool {
    !matches!(p, b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ")
}

/// IBAN length per country (SWIFT IBAN registry), as `CCnn` entries.
const IBAN_LENGTHS: &str = "\
    AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 \
    DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HN28 HR21 HU28 \
    IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 \
    MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 \
    SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30";

fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .split_ascii_whitespace()
        .find(|e| &e.as_bytes()[..2] == country)
        .and_then(|e| e[2..].parse().ok())
}

/// An IBAN starting exactly at `s`: the longest prefix of the pattern match (cut at group spaces)
/// with a known country, that country's length, and a valid checksum.
fn find_iban(re: &Regex, t: &str, s: usize) -> Option<Finding> {
    let m = re.find_at(window(t, s + 48), s)?;
    if m.start() != s {
        return None;
    }
    let b = t.as_bytes();
    let want = iban_length(&b[s..s + 2])?;
    let mut e = m.end();
    loop {
        let len = b[s..e].iter().filter(|&&c| c != b' ').count();
        if len == want && word_end(b, e) && iban_valid(&t[s..e]) {
            return Some(Finding {
                class: Class::Iban,
                start: s,
                end: e,
            });
        }
        if len < want {
            return None;
        }
        e = s + memrchr(b' ', &b[s..e])?;
    }
}

fn cards(re: &Regex, t: &str, from: usize, to: usize, out: &mut Vec<Finding>) {
    let b = t.as_bytes();
    sweep(re, window(t, to), from, |s, mut e| {
        // Try the whole match, then shorter prefixes ending at a group separator.
        loop {
            if e - s < 13 {
                return None;
            }
            if word_end(b, e) && card_number(&b[s..e]) {
                out.push(Finding {
                    class: Class::PaymentCard,
                    start: s,
                    end: e,
                });
                return Some(e);
            }
            e = s + memrchr_any(&b[s..e], b" -")?;
        }
    });
}

/// Digits with optional single separators: the usual groupings (4-4-4-4[-3], 4-6-5, 4-6-4, or
/// none), 13–19 digits, a known issuer prefix and length, and a valid Luhn checksum.
fn card_number(m: &[u8]) -> bool {
    let mut digits = [0u8; 19];
    let mut n = 0;
    let mut groups = [0u8; 19];
    let mut g = 0;
    for &c in m {
        if c.is_ascii_digit() {
            if n == digits.len() {
                return false;
            }
            digits[n] = c;
            n += 1;
            groups[g] += 1;
        } else {
            g += 1;
        }
    }
    let groups = &groups[..=g];
    let grouped = match groups {
        [_] | [4, 6, 5] | [4, 6, 4] => true,
        [first @ .., last] => first.iter().all(|&x| x == 4) && (1..=4).contains(last),
        [] => false,
    };
    let d = &digits[..n];
    grouped && n >= 13 && issuer_accepts(d) && luhn_valid(d)
}

/// Known issuer prefixes with their card lengths: Visa, Mastercard (51–55, 2221–2720), Maestro
/// (5018, 5020, 5038, 5893, 6304, 6759, 6761–6763), American Express, JCB, Diners Club,
/// Discover, UnionPay.
fn issuer_accepts(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| {
        d[..k]
            .iter()
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x - b'0'))
    };
    let (p2, p3, p4) = (prefix(2), prefix(3), prefix(4));
    match d[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => {
            ((51..=55).contains(&p2) && n == 16)
                || (matches!(p4, 5018 | 5020 | 5038 | 5893) && (16..=19).contains(&n))
        }
        b'2' => (2221..=2720).contains(&p4) && n == 16,
        b'3' => {
            (matches!(p2, 34 | 37) && n == 15)
                || ((3528..=3589).contains(&p4) && (16..=19).contains(&n))
                || ((matches!(p2, 36 | 38) || (300..=305).contains(&p3)) && (14..=19).contains(&n))
        }
        b'6' => {
            (p4 == 6011
                || p2 == 65
                || (644..=649).contains(&p3)
                || p2 == 62
                || matches!(p4, 6304 | 6759 | 6761..=6763))
                && (16..=19).contains(&n)
        }
        _ => false,
    }
}

/// Offset of the last byte in `hay` that is one of `set`.
fn memrchr_any(hay: &[u8], set: &[u8]) -> Option<usize> {
    hay.iter().rposition(|c| set.contains(c))
}

// ---------------------------------------------------------------------------------------------
// Health.

/// Health terms in `lower` (the ASCII-lowercased copy of `original`), but for those inside
/// an encoded blob ([`in_blob`]).
fn health(re: &Regex, lower: &str, original: &[u8], out: &mut Vec<Finding>) {
    let b = lower.as_bytes();
    sweep_caps(re, lower, 0, |c| {
        let (ms, me) = c.get(0)?;
        if in_blob(original, ms, me) {
            return Some(me);
        }
        let (s, e) = if let Some(code) = c.get(HEALTH_CODE) {
            code
        } else if let Some((s, e)) = c.get(HEALTH_ID) {
            if !b[s..e].iter().any(u8::is_ascii_digit) {
                return None;
            }
            (s, e)
        } else {
            (ms, me)
        };
        out.push(Finding {
            class: Class::Health,
            start: s,
            end: e,
        });
        Some(me)
    });
}

/// Shortest run of base64 characters taken for an encoded blob (a PEM line is 64).
const BLOB_RUN: usize = 64;

/// Whether `b[s..e]` lies inside an encoded blob: a run of base64 characters (either
/// alphabet) of [`BLOB_RUN`] or more, holding capitals, small letters and digits, with
/// fewer than one separator (`+ / - _`) in ten. Random base64 (an image, a file) holds a
/// separator in 32 characters, and between two of them any three letters now and then: a
/// 3 MB PNG sent as base64 read `hiv` and got a HIPAA tag and a high-risk alert (helper-99
/// F4). Words in text are cut by spaces and punctuation; a path or an identifier that long
/// is separators every few letters, or of one case.
fn in_blob(b: &[u8], s: usize, e: usize) -> bool {
    // At most this far each way: a match every few bytes of one long run must not walk the
    // run each time (a 1 MiB `+hiv+hiv…` was quadratic; review helper-106).
    const LOOK: usize = 4 * BLOB_RUN;
    let mut start = s;
    while start > 0 && is_b64(b[start - 1]) && s - start < LOOK {
        start -= 1;
    }
    let mut end = e;
    while end < b.len() && is_b64(b[end]) && end - e < LOOK {
        end += 1;
    }
    let run = &b[start..end];
    if run.len() < BLOB_RUN || !run[..].iter().all(|&c| is_b64(c)) {
        return false;
    }
    // The term between two segments that are no words, as in random data: a word or a
    // number beside it (`<token>/hiv/report`, `Ref-<token>-HIV-Cancer`, `…/hiv/2024`), or
    // nothing (the run ends there), is text, not a blob.
    let separator = |c: &u8| matches!(c, b'+' | b'/' | b'-' | b'_');
    let before = b[start..s].rsplit(separator).nth(1);
    let after = b[e..end].split(separator).nth(1);
    let no_word = |segment: Option<&[u8]>| {
        segment.is_some_and(|g| {
            let (first, rest) = g.split_first().unwrap_or((&b'0', &[]));
            let word = g.len() >= 3
                && g.iter().all(u8::is_ascii_alphabetic)
                && (rest.iter().all(u8::is_ascii_lowercase)
                    || g.iter().all(u8::is_ascii_uppercase))
                && first.is_ascii_alphabetic();
            let number = g.len() >= 2 && g.iter().all(u8::is_ascii_digit);
            !g.is_empty() && !word && !number
        })
    };
    if !(no_word(before) && no_word(after)) {
        return false;
    }
    let (mut upper, mut small, mut digit, mut separators) = (false, false, false, 0);
    for &c in run {
        upper |= c.is_ascii_uppercase();
        small |= c.is_ascii_lowercase();
        digit |= c.is_ascii_digit();
        separators += usize::from(matches!(c, b'+' | b'/' | b'-' | b'_'));
    }
    upper && small && digit && separators * 10 < run.len()
}

// ---------------------------------------------------------------------------------------------
// Derived text: folding and percent-decoding, with a map back to the original offsets.

/// Text derived from an original, with each byte's source range in the original.
struct Derived {
    text: String,
    starts: Vec<usize>,
    ends: Vec<usize>,
}

impl Derived {
    fn with_capacity(n: usize) -> Derived {
        Derived {
            text: String::with_capacity(n),
            starts: Vec::with_capacity(n),
            ends: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, s: &str, start: usize, end: usize) {
        self.text.push_str(s);
        for _ in 0..s.len() {
            self.starts.push(start);
            self.ends.push(end);
        }
    }

    /// Appends `s`, found at offset `at` of the original, byte for byte.
    fn push_verbatim(&mut self, s: &str, at: usize) {
        self.text.push_str(s);
        self.starts.extend(at..at + s.len());
        self.ends.extend(at + 1..=at + s.len());
    }

    /// Maps findings in derived offsets to original offsets.
    fn remap(&self, found: &mut [Finding]) {
        for f in found {
            let (s, e) = (self.starts[f.start], self.ends[f.end - 1]);
            f.start = s;
            f.end = e;
        }
    }
}

enum Fold {
    Keep,
    Drop,
    To(u8),
}

/// Zero code points of the non-ASCII Unicode decimal-digit (Nd) runs of ten.
const UNICODE_DIGIT_ZEROS: &[u32] = &[
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE, 0x1D7D8,
    0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

fn unicode_digit(cp: u32) -> Option<u8> {
    let i = UNICODE_DIGIT_ZEROS.partition_point(|&z| z <= cp);
    let zero = *UNICODE_DIGIT_ZEROS.get(i.checked_sub(1)?)?;
    (cp - zero < 10).then(|| b'0' + (cp - zero) as u8)
}

fn fold(c: char) -> Fold {
    match c as u32 {
        0..=0x7F => Fold::Keep,
        // Soft hyphen, Mongolian vowel separator, zero-width and bidi controls, word joiner and
        // invisible operators, variation selectors, combining keycap, BOM.
        0xAD
        | 0x180E
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x2069
        | 0xFE00..=0xFE0F
        | 0x20E3
        | 0xFEFF => Fold::Drop,
        0xA0 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => Fold::To(b' '),
        0x2010..=0x2015 | 0x2212 | 0xFE58 | 0xFE63 => Fold::To(b'-'),
        // Fullwidth ASCII.
        cp @ 0xFF01..=0xFF5E => Fold::To((cp - 0xFEE0) as u8),
        cp => unicode_digit(cp).map_or(Fold::Keep, Fold::To),
    }
}

/// A folded copy of `text` if it has look-alike characters; `None` if folding changes nothing.
fn fold_lookalikes(text: &str) -> Option<Derived> {
    let first_non_ascii = text.bytes().position(|b| !b.is_ascii())?;
    text[first_non_ascii..]
        .chars()
        .find(|&c| !matches!(fold(c), Fold::Keep))?;
    let b = text.as_bytes();
    let mut d = Derived::with_capacity(text.len());
    let mut buf = [0u8; 4];
    let mut o = 0;
    while o < b.len() {
        let ascii = b[o..].iter().take_while(|x| x.is_ascii()).count();
        if ascii > 0 {
            d.push_verbatim(&text[o..o + ascii], o);
            o += ascii;
            continue;
        }
        let Some(c) = text[o..].chars().next() else {
            break;
        };
        let end = o + c.len_utf8();
        match fold(c) {
            Fold::Keep => d.push(c.encode_utf8(&mut buf), o, end),
            Fold::Drop => {}
            Fold::To(a) => d.push(char::from(a).encode_utf8(&mut buf), o, end),
        }
        o = end;
    }
    Some(d)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn has_percent_escape(b: &[u8]) -> bool {
    memchr_iter(b'%', b)
        .any(|i| i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some())
}

/// The percent-decoded text (`+` stays `+`); invalid UTF-8 becomes U+FFFD.
fn percent_decode(t: &str) -> Option<Derived> {
    let b = t.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut src = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            bytes.push(h * 16 + l);
            src.push((i, i + 3));
            i += 3;
        } else {
            bytes.push(b[i]);
            src.push((i, i + 1));
            i += 1;
        }
    }
    if bytes.len() == b.len() {
        return None;
    }
    let mut d = Derived::with_capacity(bytes.len());
    let mut off = 0;
    for chunk in bytes.utf8_chunks() {
        for (k, c) in chunk.valid().char_indices() {
            let (s, e) = (src[off + k].0, src[off + k + c.len_utf8() - 1].1);
            d.push(c.encode_utf8(&mut [0u8; 4]), s, e);
        }
        off += chunk.valid().len();
        let bad = chunk.invalid().len();
        if bad > 0 {
            d.push("\u{FFFD}", src[off].0, src[off + bad - 1].1);
            off += bad;
        }
    }
    Some(d)
}

// ---------------------------------------------------------------------------------------------
// Base64.

/// Standard and URL-safe alphabets (not `=`).
pub(super) fn is_b64(c: u8) -> bool {
    B64[usize::from(c)]
}

/// Which bytes belong to a base64 run (either alphabet), by table: the run scan touches every
/// byte of long texts.
static B64: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
        c += 1;
    }
    table
};

/// The end of the base64 run that goes on at `from`: after the first 32 bytes, whole blocks are
/// tested without a branch per byte (the compiler turns the test into vector compares), so a
/// long run (a 64 KiB string of one letter is one) costs a fraction of a byte-by-byte walk.
fn b64_run_end(b: &[u8], from: usize) -> usize {
    const RUN_BLOCK: usize = 32;
    // Most runs are short (words, identifiers): those end within the first block.
    let head = &b[from..(from + RUN_BLOCK).min(b.len())];
    if let Some(n) = head.iter().position(|&c| !is_b64(c)) {
        return from + n;
    }
    let mut i = from + head.len();
    while let Some(block) = b.get(i..i + RUN_BLOCK) {
        let all = block.iter().fold(true, |all, &c| {
            let letter = (c | 0x20).wrapping_sub(b'a') < 26;
            let digit = c.wrapping_sub(b'0') < 10;
            all & (letter | digit | (c == b'+') | (c == b'/') | (c == b'-') | (c == b'_'))
        });
        if !all {
            break;
        }
        i += RUN_BLOCK;
    }
    b[i..]
        .iter()
        .position(|&c| !is_b64(c))
        .map_or(b.len(), |n| i + n)
}

/// Decodes unpadded base64 in either alphabet (not both mixed).
pub(super) fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let standard = s.iter().any(|c| matches!(c, b'+' | b'/'));
    let url_safe = s.iter().any(|c| matches!(c, b'-' | b'_'));
    if (standard && url_safe) || s.len() % 4 == 1 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * k);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

/// Whether a base64 prefix decodes to the start of printable text (a character may be cut at
/// the end).
fn printable_start(prefix: &[u8]) -> bool {
    let Some(bytes) = base64_decode(prefix) else {
        return false;
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// The bytes as text if they are UTF-8 without control characters other than tab and newlines.
pub(super) fn printable(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .then_some(s)
}

#[cfg(test)]
mod tests;
