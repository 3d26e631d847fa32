//! Unit tests of secret detection (`policy/secrets/`).

use super::*;
use crate::policy::classify::Classifiers;

#[test]
fn capture_group_indices_match_names() {
    let table = [
        (RE_URL, URL_PASSWORD, "pw"),
        (RE_LABELLED, LBL_LABEL, "label"),
        (RE_LABELLED, LBL_QUOTE, "q"),
        (RE_LABELLED, LBL_VALUE, "v"),
        (RE_LABELLED, LBL_BEARER, "bearer"),
        (RE_LABELLED, LBL_BASIC, "basic"),
    ];
    for (pattern, index, name) in table {
        let re = Regex::new(pattern).unwrap();
        assert_eq!(re.capture_names().nth(index), Some(Some(name)), "{pattern}");
    }
}

/// Texts made of the pieces the word anchors, the patterns and their boundaries care
/// about: words glued to words or not, any case, separators, quotes, values, URLs, non-ASCII.
fn anchor_texts() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    const PIECES: &[&str] = &[
        "password",
        "PassWord",
        "pass",
        "passphrase",
        "pwd",
        "PWD",
        "pw",
        "Pw",
        "secret",
        "secret_key",
        "client_secret",
        "aws_secret_access_key",
        "AWS_SECRET_ACCESS_KEY",
        "api_key",
        "apikey",
        "API-KEY",
        "access_token",
        "accessKey",
        "private_key",
        "auth",
        "AuthToken",
        "refresh-token",
        "session_token",
        "token",
        "key",
        "monkey",
        "keyboard",
        "cred",
        "Bearer ",
        "bearer\t",
        "xbearer ",
        "basic ",
        "Basic ",
        "_basic ",
        "abasic",
        ":",
        "=",
        " = ",
        ": ",
        "\"",
        "'",
        "\\\"",
        " ",
        "\t",
        "\n",
        ",",
        ";",
        "(",
        ")",
        "abc123XYZ",
        "s3cr3t-V4lue",
        "dXNlcjpwYXNz",
        "x",
        "xx",
        "0",
        "12345678",
        "é",
        "ü",
        "https://",
        "http://",
        "redis+ssl://",
        "svn+ssh://",
        "1http://",
        "_ftp://",
        "://",
        "a.b-c",
        "user",
        "u:p@",
        "@",
        "host",
        "/",
        "?",
        "#",
        "abcdefghijklmnopq://",
    ];
    proptest::collection::vec(proptest::sample::select(PIECES), 0..24).prop_map(|v| v.concat())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The labelled pattern tried anchored at the word starts finds exactly the matches the
    /// unanchored pattern finds over the whole text (the labelled sweep resumes at each
    /// match's end, as the non-overlapping search does), and the name words are the matches of
    /// the alternation they replaced.
    #[test]
    fn anchored_searches_match_the_whole_text_searches(text in anchor_texts()) {
        static COMPILED: std::sync::LazyLock<(Secrets, [Regex; 2])> = std::sync::LazyLock::new(|| {
            let whole = [RE_LABELLED, &NAME_WORDS.join("|")].map(|p| Regex::new(p).unwrap());
            (Secrets::new(), whole)
        });
        let (s, [labelled, name_words_re]) = &*COMPILED;
        let lower = text.to_ascii_lowercase();
        let mut hits = Vec::new();
        s.words.find(lower.as_bytes(), &mut hits);
        let collect = |re: &Regex, hay: &str, starts: &mut dyn Iterator<Item = usize>| {
            let mut found = Vec::new();
            sweep_at(re, hay, starts, |c| {
                found.push(c.get(0)?);
                None
            });
            found
        };
        let whole = |re: &Regex, hay: &str| -> Vec<(usize, usize)> {
            re.find_iter(hay).map(|m| (m.start(), m.end())).collect()
        };
        proptest::prop_assert_eq!(
            collect(&s.labelled, &lower, &mut label_starts(lower.as_bytes(), &hits)),
            whole(labelled, &lower)
        );
        let names: Vec<(usize, usize)> =
            name_words(lower.as_bytes(), &hits).map(|r| (r.start, r.end)).collect();
        proptest::prop_assert_eq!(names, whole(name_words_re, &lower));
    }
}

/// The secret texts `Classifiers` finds in `text`.
fn secrets(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    Classifiers::new(&[Class::Secret]).scan(text, &mut out);
    out.iter().map(|f| &text[f.range()]).collect()
}

#[test]
fn names_introduce_values() {
    let table = [
        ("the password is hunter2Xq!9zLm ok", "hunter2Xq!9zLm"),
        (
            "api key 8f3a9c0d4e5b6a7f8091a2b3c4d5e6f7",
            "8f3a9c0d4e5b6a7f8091a2b3c4d5e6f7",
        ),
        ("use token Zx81kqP0aL9mW2vB7nC4 now", "Zx81kqP0aL9mW2vB7nC4"),
        ("secret 'a8Kd02LmQz7Wp1'", "a8Kd02LmQz7Wp1"),
        ("DB_PASS=Tr0ub4dor&3", "Tr0ub4dor&3"),
        ("export FOO_TOKEN=aB3dE5gH7jK9mN1p", "aB3dE5gH7jK9mN1p"),
        ("mysqldump --password s3cr3tPw! db", "s3cr3tPw!"),
        ("apiKey: 'q9Z8x7C6v5B4n3M2'", "q9Z8x7C6v5B4n3M2"),
        (
            r#"{"X-Api-Key": "d41d8cd98f00b204e9800998ecf8427e"}"#,
            "d41d8cd98f00b204e9800998ecf8427e",
        ),
        ("<password>Pa55w0rd-42</password>", "Pa55w0rd-42"),
        ("the password for staging is Gl4c1er!Bay", "Gl4c1er!Bay"),
        (
            "Authorization: token 9c1e2f3a4b5c6d7e8f9a0b1c",
            "9c1e2f3a4b5c6d7e8f9a0b1c",
        ),
    ];
    for (text, want) in table {
        assert_eq!(secrets(text), [want], "{text}");
    }
}

#[test]
fn names_that_say_something_else_stay_quiet() {
    for text in [
        "reset your password to continue",
        "the password field is required",
        "the token count was 4096",
        "tokenizer commit 3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7a8b9c0d1",
        r#"{"next_page_token": "CiAKGjBpNDd2Nmp2Zml2cXRsbmV3ZmRuZ3F3bBAB"}"#,
        r#"{"max_tokens": 4096, "cache_key": "a1b2c3d4e5f6a7b8c9d0"}"#,
        "apiKey: process.env.API_KEY",
        "password_policy: min 12 characters",
        "the api key is stored in Vault at secret/data/app",
        "OAuth 2.0 token exchange",
        "see the secret manager docs v2.3.14",
        "password: letmein",
        "pass --max-tokens 4096",
    ] {
        assert!(secrets(text).is_empty(), "{text}: {:?}", secrets(text));
    }
}

#[test]
fn key_ids_make_the_secret_next_to_them_a_finding() {
    let id = ["AKIA", "Z3X7QW2ER5TY8UIO"].concat();
    let secret = ["Xk9/pL2mQ+7vN4bR8tY1", "wE6uI3oA5sD0fG2hJ4kL"].concat();
    let text = format!("{id} {secret}");
    assert_eq!(secrets(&text), [id.as_str(), secret.as_str()]);
    let text = format!("secret {secret}\nid {id}");
    assert!(secrets(&text).contains(&secret.as_str()), "{text}");
    // The same 40 characters without a key id nearby are not a secret by shape.
    assert!(secrets(&format!("blob {secret} end")).is_empty());
    let sid = ["AC", "0123456789abcdef0123456789abcdef"].concat();
    let token = "fedcba9876543210fedcba9876543210";
    assert_eq!(secrets(&format!("sid {sid} token {token}")), [token]);
    let key_sid = ["SK", "0123456789abcdef0123456789abcdef"].concat();
    assert_eq!(secrets(&format!("key {key_sid}.")), [key_sid.as_str()]);
    assert!(secrets(&format!("x{key_sid} {sid}0")).is_empty());
}

#[test]
fn the_prefix_search_finds_what_the_whole_pattern_finds() {
    // One sample per alternative of RE_TOKENS, assembled at run time.
    let body = "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3Ab4Cd5Ef6Gh7Ij8Kl9Mn0Op1Qr2St3Uv4Wx5";
    let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let samples = [
        ["AKIA", "ABCDEFGHIJ234567"].concat(),
        ["LTAI", &body[..16]].concat(),
        ["-----BEGIN ", "PRIVATE KEY-----"].concat(),
        ["AGE-SECRET-KEY-1", &"QZ".repeat(29)].concat(),
        ["eyJ", &body[..12], ".eyJ", &body[..12], ".", &body[..8]].concat(),
        ["gh", "p_", &body[..36]].concat(),
        ["github", "_pat_", &body[..30]].concat(),
        ["gl", "pat-", &body[..20]].concat(),
        ["xo", "xb-", &body[..20]].concat(),
        ["xa", "pp-1-", &body[..20]].concat(),
        ["https://hooks.slack.com/", "services/", &body[..30]].concat(),
        [
            "https://discord.com/api/",
            "webhooks/123456789/",
            &body[..40],
        ]
        .concat(),
        ["sk", "_live_", &body[..24]].concat(),
        ["wh", "sec_", &body[..30]].concat(),
        ["SG.", &body[..22], ".", &body[..43]].concat(),
        ["key", "-", &hex[..32]].concat(),
        ["sq0", "atp-", &body[..22]].concat(),
        ["EAAA", &body[..64]].concat(),
        ["AI", "za", &body[..35]].concat(),
        ["GOCSPX", "-", &body[..28]].concat(),
        ["ya29", ".", &body[..30]].concat(),
        ["1//0", &body[..45]].concat(),
        ["sk", "-proj-", &body[..30]].concat(),
        ["sk", "-", &body[..48]].concat(),
        ["pypi", "-AgE", &body[..60]].concat(),
        ["np", "m_", &body[..36]].concat(),
        ["do", "p_v1_", hex].concat(),
        ["dckr", "_pat_", &body[..27]].concat(),
        ["glsa", "_", &body[..32], "_", &hex[..8]].concat(),
        ["ATATT3", &body[..60]].concat(),
        ["dp.st.", &body[..44]].concat(),
        ["hv", "s.", &body[..30]].concat(),
        ["dapi", &hex[..32]].concat(),
        ["secret", "_", &body[..43]].concat(),
        ["HRKU", "-", &body[..40]].concat(),
        ["AKCp", "8", &body[..68]].concat(),
        ["IncomingWebhook/", &hex[..32]].concat(),
        ["PuTTY-User-Key-", "File-3:"].concat(),
    ];
    let whole = Regex::new(RE_TOKENS).unwrap();
    let secrets = Secrets::new();
    for sample in &samples {
        let text = format!("x = {sample} ;");
        let want: Vec<_> = whole.find_iter(&text).map(|m| m.range()).collect();
        assert_eq!(want.len(), 1, "the sample matches RE_TOKENS: {sample}");
        let mut out = Vec::new();
        secrets.secret_tokens(&text, &mut out);
        let got: Vec<_> = out.iter().map(Finding::range).collect();
        assert_eq!(got, want, "{sample}");
    }
}

#[test]
fn infix_shapes_are_found_from_their_infix() {
    let digits = "1234567890";
    let tail = "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3Ab4Cd5Ef6Gh7Ij8Kl9Mn0Op1Qr2St3";
    let telegram = [digits, ":AA", &tail[..33]].concat();
    let terraform = [&tail[..14], ".atlas", "v1.", &tail[..64]].concat();
    let azure = ["abc", "8Q~", &tail[..34]].concat();
    for token in [&telegram, &terraform, &azure] {
        assert_eq!(secrets(&format!("token {token} end")), [token.as_str()]);
        assert_eq!(secrets(&format!("({token})")), [token.as_str()]);
    }
    assert!(secrets(&format!("x{telegram}")).is_empty());
    assert!(secrets("ratio 12345678:AA and Q~ alone").is_empty());
}

#[test]
fn random_fragments_keep_the_findings_contract() {
    // Names, separators, quotes, values and multibyte text glued at random: no panic, and
    // every finding is a non-empty range on char boundaries.
    let fragments = [
        "password",
        "pw",
        "DB_PASS",
        "apiKey",
        "X-Api-Key",
        "token",
        "api key",
        "--password",
        "<password>",
        "</password>",
        "secret",
        "auth",
        "Authorization",
        " is ",
        ": ",
        "=",
        "\\\"",
        "\"",
        "'",
        "`",
        " ",
        "\n",
        "é",
        "😀",
        "ｐａｓｓ",
        "8f3a9c0d4e5b6a7f",
        "Zx81kq!9",
        "AKIA",
        "ABCDEFGHIJ234567",
        "AC",
        "SK",
        "0123456789abcdef",
        ":AA",
        "Q~",
        ".atlasv1.",
        "https://",
        "u:p@",
        "for staging",
        "of the",
        "hash",
        "${X}",
        "sk-",
        "eyJ",
        ".",
        "(",
    ];
    let c = Classifiers::new(&[Class::Secret]);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..12 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(fragments[(state % fragments.len() as u64) as usize]);
        }
        let mut out = Vec::new();
        c.scan(&text, &mut out);
        for f in &out {
            assert!(f.start < f.end && f.end <= text.len(), "{f:?} in {text:?}");
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
    }
}

#[test]
fn fields_named_as_credentials() {
    let s = Secrets::new();
    assert!(s.field("auth", "x8Kq2mZp9LwT4vRb"));
    assert!(s.field("client_secret", "Qm9vLnNlY3JldDEyMzQ1"));
    assert!(s.field("password", "letmein"));
    assert!(s.field("Authorization", "Bearer 0a1b2c3d4e5f6a7b8c9d"));
    assert!(!s.field("password", "${DB_PASSWORD}"));
    assert!(!s.field("auth", "oauth2"));
    assert!(!s.field("token_type", "Bearer"));
    assert!(!s.field("public_key", "AAAAC3NzaC1lZDI1NTE5AAAAIJ3k9"));
    assert!(!s.field("request_id", "5f0c6f3e-8a2b-4c1d-9e7f-0a1b2c3d4e5f"));
}

#[test]
fn placeholders_and_yaml_tags_are_not_secrets() {
    let xs = "X".repeat(36);
    for text in [
        "password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3961643364",
        "db_password: !secret mariadb_password",
        r#"{"password": "!secret db_password"}"#,
        &["SLACK_TOKEN=xo", "xb-your-token-here"].concat(),
        &["STRIPE_SECRET_KEY=sk", "_test_..."].concat(),
        &["gh", "p_", &xs].concat(),
        r#"secret_key = "REPLACE_ME""#,
        "API_KEY=changeme-please",
        "DATABASE_URL=postgres://user:password@localhost:5432/mydb",
        "curl -u username:password https://api.example.com",
    ] {
        assert!(secrets(text).is_empty(), "{text}: {:?}", secrets(text));
    }
    // A password that starts with `!` but is not a tag name is still one.
    assert_eq!(secrets("DB_PASSWORD=!Summer2024x"), ["!Summer2024x"]);
}

#[test]
fn command_line_passwords() {
    let table = [
        (
            "curl -u admin:EbgNH.agzyLUcuv https://x.io",
            "EbgNH.agzyLUcuv",
        ),
        ("curl --user 'ci:Qz81kd&a9' https://x.io", "Qz81kd&a9"),
        (
            "mysql -u root -pQKVMwb.wC7J9x -h 127.0.0.1",
            "QKVMwb.wC7J9x",
        ),
        ("mysqldump -uroot -pKestrel?zebra82 shop", "Kestrel?zebra82"),
        (
            "sshpass -p 'Falcon&zebra46' ssh deploy@10.1.2.3",
            "Falcon&zebra46",
        ),
        (
            "docker login -u acme -p Zebra!rocket27 reg.io",
            "Zebra!rocket27",
        ),
        (
            "redis-cli -h cache -a 0PLue$GfWhRl0pC ping",
            "0PLue$GfWhRl0pC",
        ),
    ];
    for (text, want) in table {
        assert_eq!(secrets(text), [want], "{text}");
    }
    for text in [
        "curl -u 1000:1000 https://x.io",
        "docker run -u 1000:1000 -p 8080:80 nginx",
        "mysql -P 3306 -p -h db.internal",
        "ssh -p 2222 deploy@host",
        "redis-cli -h cache ping; echo -a done",
        "curl -u $USER:$TOKEN https://x.io",
    ] {
        assert!(secrets(text).is_empty(), "{text}: {:?}", secrets(text));
    }
}

#[test]
fn context_shapes() {
    let hex = "9f86d081884c7d659a2feaa0c55ad015";
    let table = [
        (format!("Cookie: csrftoken=abc; sessionid={hex}"), hex.to_string()),
        (format!("Set-Cookie: PHPSESSID={hex}; path=/"), hex.to_string()),
        (
            "https://a.blob.core.windows.net/c/f?sv=2022-11-02&sp=r&sig=z9VwsyiCB1VHAn8u7qvkbKY2CP%3D".to_string(),
            "z9VwsyiCB1VHAn8u7qvkbKY2CP%3D".to_string(),
        ),
        (
            "MNEMONIC=\"velvet canyon garden pulse marble velvet ladder garden pulse silver hazard ladder\"".to_string(),
            "velvet canyon garden pulse marble velvet ladder garden pulse silver hazard ladder".to_string(),
        ),
        (
            ["client.run('MOH5wahsFb63AgMS68d8EciX", ".v6GyWM.gkuZpmmBlTpNKh4Lyl8vrvHB0iI1Wxg7pKj9PR')"].concat(),
            ["MOH5wahsFb63AgMS68d8EciX", ".v6GyWM.gkuZpmmBlTpNKh4Lyl8vrvHB0iI1Wxg7pKj9PR"].concat(),
        ),
        (
            format!("new ethers.Wallet(\"{hex}{hex}\")"),
            format!("{hex}{hex}"),
        ),
        (
            "db := sql.Open(\"mysql\", \"root:Zebra@kestrel34@tcp(127.0.0.1:3306)/shop\")".to_string(),
            "Zebra@kestrel34".to_string(),
        ),
        (
            "PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nPrivate-Lines: 1\nAAAAgQDx9\nPrivate-MAC: 0a1b\nrest".to_string(),
            "PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nPrivate-Lines: 1\nAAAAgQDx9\nPrivate-MAC: 0a1b".to_string(),
        ),
        (
            ["https://api.telegram.org/bot", "9452551320:AANxEQcWZI2cSd4xDjmH8pJbzSPsktVY3KR/send"].concat(),
            ["9452551320:AANxEQcWZI2cSd4xDjmH8pJbzSPsktVY3KR"].concat(),
        ),
        (
            "Authorization: SSWS 00qgnhmSXGS6d-sFGKCEFXcLFHKUjjBCB_AMUmY7c4".to_string(),
            "00qgnhmSXGS6d-sFGKCEFXcLFHKUjjBCB_AMUmY7c4".to_string(),
        ),
        ("amqp://guest:Rocket#sunshine22@rabbitmq:5672/".to_string(), "Rocket#sunshine22".to_string()),
        ("https://jdoe:Rocket1510#@bitbucket.org".to_string(), "Rocket1510#".to_string()),
        ("pw for the staging admin: LlaKDP2MULI2HZTDEVPiCGlC".to_string(), "LlaKDP2MULI2HZTDEVPiCGlC".to_string()),
        ("[client]\npassword=l88oE&sOWA9yF1I".to_string(), "l88oE&sOWA9yF1I".to_string()),
        ("machine h\n  login me\n  password Falcon.phoenix22".to_string(), "Falcon.phoenix22".to_string()),
        ("spring.datasource.password=Falcon.dragon32".to_string(), "Falcon.dragon32".to_string()),
        (r#"cfg := Config{User: "svc", Password: "b5XGM.eYKFDfKHb"}"#.to_string(), "b5XGM.eYKFDfKHb".to_string()),
    ];
    for (text, want) in &table {
        assert_eq!(secrets(text), [want.as_str()], "{text}");
    }
    for text in [
        &format!("session_id={hex} user_id=42 action=login"),
        &format!("https://x.io/a?sig={hex}{hex}&v=1"),
        "client.run(token)",
        "the mnemonic is a memory aid",
        "https://example.com:443?next=a@b.com",
        "http://localhost:8080#frag@x",
        "password: config.db.password",
        "password: config.db1.password",
        "password = form.password2",
        "api_key = self.s3client.key",
        "password=abc123XY&user=bob",
        "tests pass on: ubuntu-22.04",
        "pw: see the wiki",
    ] {
        let found = secrets(text);
        assert!(
            found.is_empty() || text.starts_with("password=abc123XY"),
            "{text}: {found:?}"
        );
    }
    assert_eq!(secrets("password=abc123XY&user=bob"), ["abc123XY"]);
}
