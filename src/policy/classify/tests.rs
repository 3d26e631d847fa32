//! Unit tests of the classifiers (`policy/classify/`).

use super::*;

// Fixtures that look like live credentials are assembled with `concat!` so the source file
// itself does not trip secret scanners (push protection) — the compiled strings are the real
// shapes.
const AWS_KEY_ID: &str = concat!("AKIA", "IOSFODNN7EXAMPLE");
const AWS_SECRET: &str = concat!("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY");
const GH_CLASSIC: &str = concat!("gh", "p_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8");
const GH_FINE: &str = concat!(
    "github",
    "_pat_",
    "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF"
);
const SLACK: &str = concat!(
    "xo",
    "xb-",
    "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
);
const STRIPE: &str = concat!("sk", "_live_", "4eC39HqLyjWDarjtT1zdp7dc");
const GOOGLE: &str = concat!("AI", "za", "SyA1234567890abcdefghijklmnopqrstuv");
const OPENAI: &str = concat!("sk", "-proj-", "Ab12Cd34Ef56Gh78Ij90Kl12Mn34");
const JWT: &str = concat!(
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.",
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.",
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
);
const PEM: &str = concat!(
    "-----BEGIN RSA PRIV",
    "ATE KEY-----\nMIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi\nb3BlbnNzaC1rZXktdjEAAAAA\n",
    "-----END RSA PRIV",
    "ATE KEY-----"
);

fn all() -> Classifiers {
    Classifiers::new(&Class::ALL)
}

/// Scans and checks the output contract: sorted by start, non-empty ranges on char boundaries,
/// no overlap within a class, and `any` agreeing with `scan`.
fn findings(c: &Classifiers, text: &str) -> Vec<Finding> {
    let mut out = vec![Finding {
        class: Class::Email,
        start: 0,
        end: 0,
    }];
    c.scan(text, &mut out);
    assert_eq!(
        out.remove(0),
        Finding {
            class: Class::Email,
            start: 0,
            end: 0
        },
        "appends"
    );
    for w in out.windows(2) {
        assert!(w[0].start <= w[1].start, "ordered: {out:?}");
    }
    for f in &out {
        assert!(f.start < f.end && f.end <= text.len(), "{f:?} in {text:?}");
        assert!(
            text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
            "{f:?} in {text:?}"
        );
    }
    for class in Class::ALL {
        let same: Vec<_> = out.iter().filter(|f| f.class == class).collect();
        for w in same.windows(2) {
            assert!(w[0].end <= w[1].start, "overlap within {class}: {out:?}");
        }
    }
    assert_eq!(
        c.any(text),
        !out.is_empty(),
        "any vs scan on {text:?}: {out:?}"
    );
    out
}

fn shown(text: &str, found: &[Finding]) -> Vec<(Class, String)> {
    found
        .iter()
        .map(|f| (f.class, text[f.range()].to_string()))
        .collect()
}

/// `class` is found with exactly the range of `expect` (a substring of `text`), both with only
/// that class enabled and with everything enabled.
fn assert_exact(class: Class, text: &str, expect: &str) {
    let at = text.find(expect).expect("expected part is in the text");
    for c in [Classifiers::new(&[class]), all()] {
        let found = findings(&c, text);
        assert!(
            found
                .iter()
                .any(|f| f.class == class && f.range() == (at..at + expect.len())),
            "{class}: expected {expect:?} in {text:?}, got {:?}",
            shown(text, &found)
        );
    }
}

/// `class` is found with a range covering `expect` (for encoded and disguised inputs).
fn assert_covers(class: Class, text: &str, expect: &str) {
    let at = text.find(expect).expect("expected part is in the text");
    for c in [Classifiers::new(&[class]), all()] {
        let found = findings(&c, text);
        assert!(
            found
                .iter()
                .any(|f| f.class == class && f.start <= at && at + expect.len() <= f.end),
            "{class}: expected a range covering {expect:?} in {text:?}, got {:?}",
            shown(text, &found)
        );
    }
}

fn assert_none(class: Class, text: &str) {
    for c in [Classifiers::new(&[class]), all()] {
        let found = findings(&c, text);
        assert!(
            !found.iter().any(|f| f.class == class),
            "{class}: expected nothing in {text:?}, got {:?}",
            shown(text, &found)
        );
    }
}

fn b64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let mut acc = 0u32;
        for (k, &x) in chunk.iter().enumerate() {
            acc |= u32::from(x) << (16 - 8 * k);
        }
        for k in 0..=chunk.len() {
            out.push(char::from(alphabet[(acc >> (18 - 6 * k) & 63) as usize]));
        }
        if pad {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}
const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[test]
fn class_names_tags_and_serde_agree() {
    let table = [
        (Class::Email, "email", "gdpr"),
        (Class::Phone, "phone", "gdpr"),
        (Class::NationalId, "national_id", "gdpr"),
        (Class::Iban, "iban", "gdpr"),
        (Class::PaymentCard, "payment_card", "pci_dss"),
        (Class::Health, "health", "hipaa"),
        (Class::Secret, "secret", "secrets"),
    ];
    assert_eq!(table.map(|t| t.0), Class::ALL);
    for (class, name, tag) in table {
        assert_eq!(class.as_str(), name);
        assert_eq!(class.to_string(), name);
        assert_eq!(class.tag(), tag);
        assert_eq!(Class::parse(name), Some(class));
        assert_eq!(Class::parse(&name.to_uppercase()), Some(class));
        assert_eq!(
            serde_json::to_string(&class).unwrap(),
            format!("\"{name}\"")
        );
        assert_eq!(
            serde_json::from_str::<Class>(&format!("\"{name}\"")).unwrap(),
            class
        );
    }
    assert_eq!(Class::parse("ssn"), None);
    assert_eq!(Class::parse(""), None);
}

#[test]
fn enabled_is_deduplicated_in_canonical_order() {
    let c = Classifiers::new(&[Class::Secret, Class::Email, Class::Secret]);
    assert_eq!(c.enabled(), &[Class::Email, Class::Secret]);
    assert_eq!(Classifiers::new(&Class::ALL).enabled(), &Class::ALL);
    let none = Classifiers::new(&[]);
    assert!(none.enabled().is_empty());
    assert!(!none.any("alice@example.com 4111 1111 1111 1111"));
    fn shareable<T: Send + Sync + Clone + fmt::Debug>() {}
    shareable::<Classifiers>();
    assert!(format!("{c:?}").contains("Email"));
}

#[test]
fn capture_group_indices_match_names() {
    let table: [(&str, usize, &str); 4] = [
        (RE_SSN, SSN_LABEL, "label"),
        (RE_SSN, SSN_NUMBER, "n"),
        (RE_HEALTH, HEALTH_CODE, "code"),
        (RE_HEALTH, HEALTH_ID, "id"),
    ];
    for (pattern, index, name) in table {
        let re = Regex::new(pattern).unwrap();
        assert_eq!(re.capture_names().nth(index), Some(Some(name)), "{pattern}");
    }
}

#[test]
fn luhn() {
    for good in [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "79927398713",
        "0",
    ] {
        assert!(luhn_valid(good.as_bytes()), "{good}");
    }
    for bad in [
        "4111111111111112",
        "79927398710",
        "1234567890123456",
        "",
        "4111 1111 1111 1111",
        "12a4",
    ] {
        assert!(!luhn_valid(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn iban_checksum() {
    for good in [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "gb82 west 1234 5698 7654 32",
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
        "NO9386011117947",
    ] {
        assert!(iban_valid(good), "{good}");
    }
    for bad in [
        "GB82 WEST 1234 5698 7654 33",
        "GB83 WEST 1234 5698 7654 32",
        "DE89370400440532013001",
        "DE88370400440532013000",
        "DE8937040044",
        "",
        "8289370400440532013000",
        "DE89-3704-0044-0532-0130-00",
        "DE89370400440532013000DE89370400440532013000",
    ] {
        assert!(!iban_valid(bad), "{bad}");
    }
}

#[test]
fn email_positive_and_negative() {
    for (text, expect) in [
        ("alice@example.com", "alice@example.com"),
        (
            "write to mailto:bob.smith+tag@mail.example.co.uk today",
            "bob.smith+tag@mail.example.co.uk",
        ),
        ("Contact: <j.doe@sub.example.org>", "j.doe@sub.example.org"),
        ("x_y-z@example.io.", "x_y-z@example.io"),
        ("USER@EXAMPLE.COM", "USER@EXAMPLE.COM"),
        ("...lead.dots@example.com", "lead.dots@example.com"),
        (r#"{"to":"carol@example.net"}"#, "carol@example.net"),
    ] {
        assert_exact(Class::Email, text, expect);
    }
    for text in [
        "@decorator on a method",
        "ssh user@localhost",
        "install pkg@1.2.3",
        "icon@2x.png",
        "a @ b . com",
        "git@github.com:org/repo.git",
        "foo@bar",
        "@types/node@18.0.0",
    ] {
        assert_none(Class::Email, text);
    }
}

#[test]
fn phone_positive_and_negative() {
    for (text, expect) in [
        ("+1 (555) 123-4567", "+1 (555) 123-4567"),
        ("call +44 20 7946 0958.", "+44 20 7946 0958"),
        ("+49-30-1234567", "+49-30-1234567"),
        ("(555) 123-4567", "(555) 123-4567"),
        ("555-123-4567", "555-123-4567"),
        ("call 555.123.4567 now", "555.123.4567"),
        ("+33 1 23 45 67 89", "+33 1 23 45 67 89"),
        ("1-800-555-0199", "1-800-555-0199"),
        ("tel:+14155552671", "+14155552671"),
    ] {
        assert_exact(Class::Phone, text, expect);
    }
    for text in [
        "5551234567",
        "on 2026-11-27",
        "host 192.168.100.200",
        "version 10.20.30",
        "+1234",
        "sizes 256 512 1024",
        "ISBN 978-3-16-148410-0",
        "1+2345678901",
        "order #555-123-4567",
        "12:30:45",
        "2026-11-27T10:15:30+01:00",
        "555-123-4567-89",
    ] {
        assert_none(Class::Phone, text);
    }
}

#[test]
fn national_id_positive_and_negative() {
    for (text, expect) in [
        ("123-45-6789", "123-45-6789"),
        ("SSN: 078-05-1120", "078-05-1120"),
        ("ssn 123456789", "123456789"),
        ("Social Security Number: 219 09 9999", "219 09 9999"),
        ("NI number AB123456C.", "AB123456C"),
        ("AB 12 34 56 C", "AB 12 34 56 C"),
        ("JG103759A", "JG103759A"),
    ] {
        assert_exact(Class::NationalId, text, expect);
    }
    for text in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "123-00-4567",
        "123-45-0000",
        "GB123456A",
        "QQ123456C",
        "id 123456789",
        "ab123456c",
        "2026-11-27",
        "ORD-123-45-6789",
        "123 45 6789",
    ] {
        assert_none(Class::NationalId, text);
    }
}

#[test]
fn iban_positive_and_negative() {
    for (text, expect) in [
        ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
        ("DE89370400440532013000", "DE89370400440532013000"),
        ("FR1420041010050500013M02606", "FR1420041010050500013M02606"),
        ("NL91ABNA0417164300", "NL91ABNA0417164300"),
        ("IBAN: BE68 5390 0754 7034, thanks", "BE68 5390 0754 7034"),
        ("CH9300762011623852957", "CH9300762011623852957"),
        ("NO93 8601 1117 947", "NO93 8601 1117 947"),
        ("pay BE68 5390 0754 7034 THIS week", "BE68 5390 0754 7034"),
    ] {
        assert_exact(Class::Iban, text, expect);
    }
    for text in [
        "GB82 WEST 1234 5698 7654 33",
        "DE89370400440532013001",
        "XX89370400440532013000",
        "GB82WEST123456987654",
        "de89370400440532013000",
        "ABCD1234EFGH5678",
        "DE89 3704 0044 0532 0130",
        "XDE89370400440532013000",
    ] {
        assert_none(Class::Iban, text);
    }
    // The digits of an IBAN are not reported as a card or phone number.
    let found = findings(&all(), "DE89 3704 0044 0532 0130 00");
    assert_eq!(
        found.iter().map(|f| f.class).collect::<Vec<_>>(),
        [Class::Iban]
    );
}

#[test]
fn card_positive_and_negative() {
    for (text, expect) in [
        ("4111 1111 1111 1111", "4111 1111 1111 1111"),
        ("5555555555554444", "5555555555554444"),
        ("amex 378282246310005.", "378282246310005"),
        ("6011-1111-1111-1117", "6011-1111-1111-1117"),
        ("jcb 3530111333300000", "3530111333300000"),
        ("card: 4012888888881881.", "4012888888881881"),
        ("2223003122003222", "2223003122003222"),
        ("diners 30569309025904", "30569309025904"),
        ("unionpay 6200000000000005", "6200000000000005"),
        ("maestro 6304 0000 0000 0000", "6304 0000 0000 0000"),
        ("maestro 6759649826438453", "6759649826438453"),
        ("5018 1200 0000 0000 002", "5018 1200 0000 0000 002"),
        ("3782 822463 10005", "3782 822463 10005"),
        ("ref 1234 4111 1111 1111 1111", "4111 1111 1111 1111"),
        ("{\"pan\":\"4111111111111111\"}", "4111111111111111"),
    ] {
        assert_exact(Class::PaymentCard, text, expect);
    }
    for text in [
        "4111 1111 1111 1112",
        "1234567890123456",
        "4111 1111 1111",
        "0000 0000 0000 0000",
        "ts 1700000000000",
        "12345678-1234-5678-9abc-def012345678",
        "ISBN 978-3-16-148410-0",
        "x4111111111111111",
        "41111111111111111111111",
        "4111  1111  1111  1111",
    ] {
        assert_none(Class::PaymentCard, text);
    }
}

#[test]
fn health_positive_and_negative() {
    for (text, expect) in [
        ("Patient was diagnosed with diabetes", "diagnosed with"),
        ("Patient was diagnosed with diabetes", "diabetes"),
        ("ICD-10: E11.9", "E11.9"),
        ("icd10 J45.909", "J45.909"),
        ("icd: F32.A", "F32.A"),
        ("MRN: 12345678", "12345678"),
        ("MRN#A1234567", "A1234567"),
        ("HIV positive", "HIV"),
        ("undergoing chemotherapy", "chemotherapy"),
        ("new prescription for insulin", "prescription"),
        ("Patient ID 4433", "Patient ID"),
        ("see the medical record", "medical record"),
    ] {
        assert_exact(Class::Health, text, expect);
    }
    for text in [
        "the diagnostic tool",
        "E11.9 release notes",
        "MRN pending review",
        "this cancels the job",
        "prescriptive grammar",
        "medical team meeting",
        "ICD-10 rollout plan",
        "the patient waited",
    ] {
        assert_none(Class::Health, text);
    }
}

#[test]
fn secret_positive_and_negative() {
    let table = [
        (format!("key {AWS_KEY_ID} used"), AWS_KEY_ID.to_string()),
        (
            format!("aws_secret_access_key = {AWS_SECRET}"),
            AWS_SECRET.to_string(),
        ),
        (format!("key:\n{PEM}\nend"), PEM.to_string()),
        (format!("token={JWT}"), JWT.to_string()),
        (format!("GITHUB_TOKEN {GH_CLASSIC}"), GH_CLASSIC.to_string()),
        (format!("pat {GH_FINE}"), GH_FINE.to_string()),
        (format!("slack {SLACK}"), SLACK.to_string()),
        (format!("stripe {STRIPE}."), STRIPE.to_string()),
        (format!("maps {GOOGLE}"), GOOGLE.to_string()),
        (format!("openai {OPENAI}"), OPENAI.to_string()),
        (
            "Authorization: Bearer abcDEF1234567890xyz".into(),
            "abcDEF1234567890xyz".into(),
        ),
        (
            "postgres://admin:S3cr3t!@db.internal:5432/app".into(),
            "S3cr3t!".into(),
        ),
        ("password=hunter22".into(), "hunter22".into()),
        (
            r#"{"api_key": "abcd1234efgh5678"}"#.into(),
            "abcd1234efgh5678".into(),
        ),
        ("passwd: s3cr3t!".into(), "s3cr3t!".into()),
        ("secret=letmein".into(), "letmein".into()),
        (
            "DB_PASSWORD='correct horse battery'".into(),
            "correct horse battery".into(),
        ),
        (r#"{\"password\": \"hunter22\"}"#.into(), "hunter22".into()),
        (
            "Authorization: Basic dXNlcjpwYXNzd29yZA==".into(),
            "dXNlcjpwYXNzd29yZA==".into(),
        ),
        ("Server=db;Uid=sa;Pwd=P@ssw0rd;".into(), "P@ssw0rd".into()),
    ];
    for (text, expect) in &table {
        assert_exact(Class::Secret, text, expect);
    }
    // Without an END line the header and the key body are covered.
    let header = &PEM[..PEM.find('\n').unwrap()];
    let truncated = format!("{header}\nMIIEowIBAAKCAQEA3Tz2\nmr7SZiAM");
    assert_exact(Class::Secret, &truncated, &truncated);
    for text in [
        "Enter your password to continue",
        "secret: nothing",
        "password: letmein",
        "password=${DB_PASSWORD}",
        "api_key: <your key here>",
        "the bearer of bad news",
        "Authorization: Bearer token-based-authentication",
        "Authorization: Bearer YOUR_ACCESS_TOKEN_HERE",
        "AKIA is a prefix",
        "ghp_short",
        "https://example.com:8443/path",
        "token_count=123456",
        "password=******",
        "postgres://admin:****@db",
        "PWD=/home/user",
        "password_policy: strong",
        "password=[REDACTED:secret]",
        "Authorization: Basic configuration",
    ] {
        assert_none(Class::Secret, text);
    }
}

#[test]
fn unicode_lookalikes_are_folded() {
    // Fullwidth digits, zero-width splits, NBSP / Unicode dash separators, other scripts'
    // digits.
    let fullwidth = "card ４１１１ １１１１ １１１１ １１１１ ok";
    assert_exact(
        Class::PaymentCard,
        fullwidth,
        "４１１１ １１１１ １１１１ １１１１",
    );
    let zw = "4111\u{200B}1111\u{200B}1111\u{2060}1111\u{FEFF}";
    assert_covers(
        Class::PaymentCard,
        zw,
        "4111\u{200B}1111\u{200B}1111\u{2060}1111",
    );
    assert_exact(
        Class::PaymentCard,
        "pan 4111\u{A0}1111\u{A0}1111\u{A0}1111",
        "4111\u{A0}1111\u{A0}1111\u{A0}1111",
    );
    assert_exact(
        Class::PaymentCard,
        "4111\u{2011}1111\u{2011}1111\u{2011}1111",
        "4111\u{2011}1111\u{2011}1111\u{2011}1111",
    );
    assert_exact(Class::NationalId, "ssn ١٢٣-٤٥-٦٧٨٩", "١٢٣-٤٥-٦٧٨٩");
    assert_exact(Class::PaymentCard, "४१११११११११११११११", "४१११११११११११११११");
    assert_exact(Class::PaymentCard, "𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏", "𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏");
    assert_exact(
        Class::Email,
        "mail ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ now",
        "ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    );
    assert_exact(
        Class::Phone,
        "+1 (555)\u{202F}123\u{2013}4567",
        "+1 (555)\u{202F}123\u{2013}4567",
    );
    assert_exact(
        Class::Secret,
        "ｐａｓｓｗｏｒｄ＝ｈｕｎｔｅｒ２２",
        "ｈｕｎｔｅｒ２２",
    );
    assert_covers(
        Class::Iban,
        "GB82\u{200D} WEST 1234 5698 7654 32",
        "GB82\u{200D} WEST 1234 5698 7654 32",
    );
}

#[test]
fn every_unicode_decimal_digit_table_entry_is_a_digit_run() {
    let digit = Regex::new(r"^\d$").unwrap();
    let mut buf = [0u8; 4];
    for &zero in UNICODE_DIGIT_ZEROS {
        for k in 0..10 {
            let c = char::from_u32(zero + k).unwrap();
            assert!(
                digit.is_match(c.encode_utf8(&mut buf)),
                "U+{:04X}",
                zero + k
            );
            assert_eq!(unicode_digit(zero + k), Some(b'0' + k as u8));
        }
    }
    // Complete for the Basic Multilingual Plane (stable across Unicode versions there).
    for cp in 0x80..=0xFFFF {
        if let Some(c) = char::from_u32(cp) {
            assert_eq!(
                digit.is_match(c.encode_utf8(&mut buf)),
                unicode_digit(cp).is_some(),
                "U+{cp:04X}"
            );
        }
    }
}

#[test]
fn percent_encoded_data_is_found_at_the_encoded_range() {
    assert_exact(
        Class::Email,
        "to=alice%40example.com&x=1",
        "alice%40example.com",
    );
    assert_covers(Class::Secret, "https://u:p%40ss@host", "p%40ss");
    assert_exact(
        Class::PaymentCard,
        "q=4111%201111%201111%201111&go",
        "4111%201111%201111%201111",
    );
    assert_covers(Class::Secret, "q=password%3Dhunter22%26x", "hunter22");
    assert_covers(
        Class::Email,
        "a%2540b.com? no: alice%2540example.com",
        "alice%2540example.com",
    );
    // Invalid UTF-8 after decoding is replaced, not a panic; ranges stay on boundaries.
    assert_covers(
        Class::Email,
        "%FF%FEbob%40example.com%C3",
        "bob%40example.com",
    );
    assert_none(Class::Email, "50% off, 100%25 sure, %zz");
}

#[test]
fn health_words_inside_an_encoded_blob_are_not_health_data() {
    // A base64 image (random bytes), as a 3 MB PNG reached a tool: between two of its `+`
    // and `/`, any three letters now and then (helper-99 F4). Planted here so the test does
    // not rest on chance, in both alphabets and with a PEM-like line.
    let mut rng = crate::test_rng::Rng(0x5eed_b10b);
    let bytes: Vec<u8> = (0..300_000).map(|_| rng.next() as u8).collect();
    for alphabet in [STD, URL] {
        let mut blob = b64(&bytes, alphabet, true).into_bytes();
        let (a, b) = if alphabet == STD {
            (b'+', b'/')
        } else {
            (b'-', b'_')
        };
        for (k, word) in [&b"HiV"[..], b"hiv", b"Cancer", b"mrnX7a2b9c", b"insulin"]
            .iter()
            .enumerate()
        {
            let at = 1000 + k * 50_000;
            blob[at] = a;
            blob[at + 1..at + 1 + word.len()].copy_from_slice(word);
            blob[at + 1 + word.len()] = b;
        }
        let blob = String::from_utf8(blob).unwrap();
        for text in [blob.clone(), format!("data:image/png;base64,{blob}")] {
            let health: Vec<Finding> = findings(&all(), &text)
                .into_iter()
                .filter(|f| f.class == Class::Health)
                .collect();
            assert!(health.is_empty(), "{health:?}");
        }
        // One line of it, PEM-wide.
        let line = &blob[1000 - 30..1000 + 34];
        assert_none(Class::Health, line);
    }
    // The same words in text, in a long path, in an identifier, or beside a word or a
    // number in a long token (as a bucket key or a reference) are health data.
    let token = "AbC7dEf9GhJ2kLm4NpQ6rSt8UvW1xYz3AbC7dEf9GhJ2kLm4NpQ6rSt8UvW1xYz3";
    for text in [
        &format!("{token}/hiv/report") as &str,
        &format!("Ref-{token}-HIV-Cancer-Insulin"),
        &format!("bucket/{token}/hiv/2024"),
        &format!("{token}/hiv"),
        "the patient has HIV",
        "/srv/clinic/records/hiv/2024/q1/summaries/by-ward/north/level-3/exports/final",
        "patientRecordsHivPositive/Cancer",
    ] {
        let health = findings(&all(), text)
            .into_iter()
            .filter(|f| f.class == Class::Health)
            .count();
        assert!(health > 0, "{text}");
    }
    // A term every few bytes of one long run costs a bounded look each (it walked the whole
    // run per match: quadratic).
    let long = "+hiv".repeat(1 << 18);
    let started = std::time::Instant::now();
    let _ = findings(&all(), &long);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn base64_encoded_secrets_and_cards_report_the_whole_run() {
    let key = b64(AWS_KEY_ID.as_bytes(), STD, true);
    assert_exact(Class::Secret, &format!("blob {key} end"), &key);
    let cfg = b64(format!("password={STRIPE}").as_bytes(), URL, false);
    assert_exact(Class::Secret, &format!("cfg={cfg}"), &cfg);
    let card = b64(b"4111111111111111", STD, true);
    assert_eq!(card.len(), 24);
    assert_exact(Class::PaymentCard, &format!("\"{card}\""), &card);
    let short_card = b64(b"4222222222222", STD, true);
    assert_eq!(short_card.len(), MIN_BASE64_RUN);
    assert_exact(Class::PaymentCard, &short_card, &short_card);
    // Percent-encoded base64 (padding as %3D).
    let escaped = key.replace('=', "%3D");
    assert_covers(Class::Secret, &format!("k={escaped}"), &escaped);
    // Base64 of harmless text, emails (not a base64 class) and binary stay quiet.
    for quiet in [
        b64(b"just an ordinary sentence about nothing", STD, true),
        b64(b"alice@example.com is my address", STD, true),
        b64(
            &[
                0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03, 0xff, 0xfe, 0xfd, 0xfc, 0x10, 0x20,
                0x30,
            ],
            STD,
            true,
        ),
    ] {
        assert!(findings(&all(), &quiet).is_empty(), "{quiet}");
    }
}

#[test]
fn ranges_are_char_boundary_safe_around_multibyte_text() {
    let text = "💳4111 1111 1111 1111💳 écrit à alice@example.com — ok";
    assert_exact(Class::PaymentCard, text, "4111 1111 1111 1111");
    assert_exact(Class::Email, text, "alice@example.com");
    let folded = "😀４１１１１１１１１１１１１１１１😀 日本語 ＋１ ５５５ １２３ ４５６７";
    assert_exact(
        Class::PaymentCard,
        folded,
        "４１１１１１１１１１１１１１１１",
    );
    assert_exact(Class::Phone, folded, "＋１ ５５５ １２３ ４５６７");
    // Every prefix and suffix of a mixed string scans without panicking and within bounds.
    let mixed = format!("é{PEM}😀 ｐａｓｓｗｏｒｄ＝ｘ１２３４５６ ४१११%40 {AWS_KEY_ID}");
    let c = all();
    for (i, _) in mixed.char_indices() {
        findings(&c, &mixed[i..]);
        findings(&c, &mixed[..i]);
    }
}

#[test]
fn mask_replaces_merged_findings() {
    let c = all();
    let text = "card 4111 1111 1111 1111, mail alice@example.com, ok";
    let found = findings(&c, text);
    assert_eq!(
        mask(text, &found),
        "card [REDACTED:payment_card], mail [REDACTED:email], ok"
    );
    let mut reversed = found.clone();
    reversed.reverse();
    assert_eq!(mask(text, &reversed), mask(text, &found));
    // Overlapping and nested findings merge into one mask (class of the first, longest).
    let f = |class, start, end| Finding { class, start, end };
    let overlapping = [
        f(Class::Secret, 2, 6),
        f(Class::Email, 0, 4),
        f(Class::Phone, 1, 3),
        f(Class::Health, 8, 10),
    ];
    assert_eq!(
        mask("0123456789ab", &overlapping),
        "[REDACTED:email]67[REDACTED:health]ab"
    );
    // Out-of-range or mid-char findings are clamped and widened instead of panicking.
    assert_eq!(mask("é-x", &[f(Class::Secret, 1, 99)]), "[REDACTED:secret]");
    assert_eq!(
        mask("abc", &[f(Class::Secret, 2, 2), f(Class::Secret, 5, 9)]),
        "abc"
    );
    assert_eq!(mask("abc", &[]), "abc");
    // Masked output scans clean.
    let noisy = format!("{text} password=hunter22 {AWS_KEY_ID} SSN 123-45-6789 ICD-10 E11.9");
    let masked = mask(&noisy, &findings(&c, &noisy));
    assert!(findings(&c, &masked).is_empty(), "{masked}");
}

#[test]
fn iban_length_table_is_well_formed() {
    let entries: Vec<&str> = IBAN_LENGTHS.split_ascii_whitespace().collect();
    for w in entries.windows(2) {
        assert!(w[0][..2] < w[1][..2], "sorted and unique: {w:?}");
    }
    for e in &entries {
        let (cc, len) = e.split_at(2);
        assert!(
            cc.bytes().all(|c| c.is_ascii_uppercase()) && len.len() == 2,
            "{e}"
        );
        assert!((15..=34).contains(&len.parse::<usize>().unwrap()), "{e}");
    }
    assert_eq!(iban_length(b"DE"), Some(22));
    assert_eq!(iban_length(b"NO"), Some(15));
    assert_eq!(iban_length(b"RU"), Some(33));
    assert_eq!(iban_length(b"US"), None);
}

#[test]
fn pathological_inputs_stay_linear_and_sane() {
    // Shapes that would make a naive retry loop quadratic; each must finish quickly and keep the
    // output contract (checked by `findings`). `scan_timing`-style numbers are in the report.
    let c = all();
    let units = [
        "pwd=/",
        "-----BEGIN PRIVATE KEY-----",
        "1 ",
        "1-",
        "+1 ",
        "4111 ",
        "a@",
        "AB12 ",
        "MRN abcdefg ",
        "QUFB",
        "%41",
        "\u{200B}1",
        "１",
        "password=\"",
        "ssn 123-45-6789 ",
    ];
    for unit in units {
        let text = unit.repeat(16 * 1024 / unit.len());
        let start = std::time::Instant::now();
        findings(&c, &text);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{unit:?}"
        );
    }
    let long_local = format!("{}@x.png", "a".repeat(64 * 1024));
    assert!(findings(&c, &long_local).is_empty());
}

#[test]
fn mixed_text_reports_each_class_once() {
    let text = mixed_kib(true);
    let found = findings(&all(), &text);
    assert_eq!(
        shown(&text, &found),
        [
            (Class::Email, "alice@example.com".to_string()),
            (Class::PaymentCard, "4111 1111 1111 1111".to_string()),
            (Class::Phone, "+1 (555) 123-4567".to_string()),
        ]
    );
}

use crate::test_rng::Rng;

const SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Release v2.3.14 shipped on 2026-11-27T10:15:30Z after review.",
    "Order #20231127-0042 was shipped to the warehouse in Berlin.",
    "Build 1234567 passed in 12.5s on runner 7.",
    "Meet at 10:30 in room 4B, bring the slides.",
    "The ratio was 3/4 and the error rate 12.5% (down from 14%).",
    "Processed 1,234,567 records in 2.3 s; 0 failures.",
    "Coordinates 52.5200, 13.4050 are in the city centre.",
    "IPv4 10.0.0.1 and IPv6 2001:db8::1 both answer on port 8443.",
    "Price: $1,299.99 including VAT of 19%.",
    "Ticket JIRA-12345 blocks PROJ-678 until Friday.",
    "Version 1.2.3-rc.1+build.5 is the release candidate.",
    "SELECT * FROM users WHERE id = 42 ORDER BY created_at DESC;",
    "docker pull node:20-alpine && npm ci --prefer-offline",
    "See https://example.com/docs/getting-started?page=2#install for details.",
    "The key insight: caching halves the latency.",
    "Use the token count to budget the prompt; pass --max-tokens 4096.",
    "Call stack depth reached 1024 frames at 0x7ffeefbff5c8.",
    "Dimensions 1920x1080 at 60Hz, 10-bit colour.",
    "Timeout after 30000 ms, retrying in 5 s (attempt 3 of 5).",
    "Copyright 2020-2026 Example Corp. All rights reserved.",
    "git commit -m \"fix: handle empty input\" && git push origin main",
    "Enter your password to continue; the secret is patience.",
    "The bearer of this note is welcome; basic access only.",
    "npm install @types/node@20.11.5 --save-dev",
    "Room temperature was 21.5 C at 08:45:00 on 27/11/2026.",
    "Call the front desk on extension 4412 between 9 and 5.",
    "Invoice INV-2026-000123 totals EUR 1.234,56 net.",
];

#[test]
fn ordinary_text_and_identifiers_yield_nothing() {
    let c = all();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2000 {
        let uuid = format!(
            "{}-{}-4{}-a{}-{}",
            rng.hex(8),
            rng.hex(4),
            rng.hex(3),
            rng.hex(3),
            rng.hex(12)
        );
        let ts = format!(
            "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{}",
            rng.below(40),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1000),
            ["Z", "+01:00", "-05:00", "+05:30"][rng.below(4) as usize]
        );
        let semver = format!("v{}.{}.{}", rng.below(30), rng.below(100), rng.below(1000));
        let hash_len = [7, 12, 32, 40, 64][rng.below(5) as usize];
        let hash = rng.hex(hash_len);
        let epoch = format!("{}", 1_600_000_000 + rng.below(200_000_000));
        let sentence = SENTENCES[rng.below(SENTENCES.len() as u64) as usize];
        let text = format!("{sentence} id={uuid} at {ts} ({semver}, sha {hash}, epoch {epoch})");
        let found = findings(&c, &text);
        assert!(found.is_empty(), "{text}: {:?}", shown(&text, &found));
    }
    let everything = SENTENCES.join(" ");
    assert!(findings(&c, &everything).is_empty());
}

fn mixed_kib(with_findings: bool) -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 1024 {
        text.push_str(SENTENCES[i % SENTENCES.len()]);
        text.push(' ');
        if with_findings && i % 6 == 3 {
            text.push_str(
                [
                    "mail alice@example.com ",
                    "card 4111 1111 1111 1111 ",
                    "call +1 (555) 123-4567 ",
                    "password=hunter22 ",
                ][i / 6 % 4],
            );
        }
        i += 1;
    }
    let mut end = 1024;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// `cargo test --release -- --ignored --nocapture scan_timing`
#[test]
#[ignore]
fn scan_timing() {
    let c = all();
    let mut unicode = mixed_kib(true)
        .replacen("The", "Thé 😀", 8)
        .replacen("4111", "４１１１", 1);
    unicode.truncate(floor_boundary(&unicode, 1024));
    for (label, text) in [
        ("benign", mixed_kib(false)),
        ("with findings", mixed_kib(true)),
        ("non-ASCII with look-alikes", unicode),
    ] {
        let mut out = Vec::new();
        let rounds = 20_000;
        for _ in 0..1000 {
            out.clear();
            c.scan(std::hint::black_box(&text), &mut out);
        }
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            out.clear();
            c.scan(std::hint::black_box(&text), &mut out);
        }
        let per = t.elapsed() / rounds;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(c.any(std::hint::black_box(&text)));
        }
        let any = t.elapsed() / rounds;
        println!(
            "{label}: {} bytes, {} findings, scan {per:?}, any {any:?}",
            text.len(),
            out.len()
        );
    }
}

proptest::proptest! {
    /// The block-wise walks find what a walk byte by byte finds, on runs shorter and longer
    /// than a block.
    #[test]
    fn block_walks_match_byte_walks(
        runs in proptest::collection::vec(
            (proptest::sample::select(b"xX09+/-_=@. \n\x80".to_vec()), 1usize..80), 0..12),
        from in 0usize..1000,
    ) {
        let text: Vec<u8> = runs.iter().flat_map(|&(c, n)| std::iter::repeat_n(c, n)).collect();
        let from = from.min(text.len());
        let run_end = text[from..].iter().position(|&c| !is_b64(c)).map_or(text.len(), |n| from + n);
        proptest::prop_assert_eq!(b64_run_end(&text, from), run_end);
        let digit = text[from..].iter().position(u8::is_ascii_digit).map(|n| from + n);
        proptest::prop_assert_eq!(next_digit(&text, from), digit);
    }
}
