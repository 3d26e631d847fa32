//! The secrets corpus: credentials as people paste them (prose, env files, JSON, YAML, URLs,
//! shell commands, structured arguments) across many providers, and benign strings that look
//! alike (digests, commit ids, UUIDs, ULIDs, base64 data, paths, minified code, prose about
//! passwords and tokens). It measures recall and the false-positive rate of the secret
//! classifier, prints them, fails below target, and checks that every secret it finds is never
//! stored in clear by the policy's protection routines.
//!
//! Synthetic secrets come from a seeded generator and are assembled at run time (prefix +
//! random body), so this file holds no credential-shaped literal.
//!
//! `cargo test --test secrets_corpus -- --nocapture` prints the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mcp_audit_proxy::config::Config;
use mcp_audit_proxy::policy::Policy;
use mcp_audit_proxy::policy::classify::{Class, Classifiers};
use serde_json::{Value, json};

const RECALL_TARGET: f64 = 0.95;
const FALSE_POSITIVE_TARGET: f64 = 0.01;

/// A small deterministic generator (xorshift64).
struct Rng(u64);

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const PASSWORD: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#%*+?@^~";

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
    fn chars(&mut self, set: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(set[self.below(set.len())]))
            .collect()
    }
    /// Random characters from `set` with at least one digit, one lower- and one uppercase
    /// letter when the set has them (as real keys of that length all but surely do).
    fn mixed(&mut self, set: &[u8], n: usize) -> String {
        loop {
            let s = self.chars(set, n);
            let has = |f: fn(&u8) -> bool| !set.iter().any(f) || s.bytes().any(|c| f(&c));
            if has(u8::is_ascii_digit) && has(u8::is_ascii_lowercase) && has(u8::is_ascii_uppercase)
            {
                return s;
            }
        }
    }
    fn hex(&mut self, n: usize) -> String {
        self.chars(HEX, n)
    }
    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            char::from(b"89ab"[self.below(4)]),
            self.hex(3),
            self.hex(12)
        )
    }
    fn password(&mut self) -> String {
        let n = 12 + self.below(8);
        loop {
            let s = self.chars(PASSWORD, n);
            let b = s.as_bytes();
            if b.iter().any(u8::is_ascii_digit)
                && b.iter().any(u8::is_ascii_alphabetic)
                && !b.iter().all(u8::is_ascii_alphanumeric)
                && !s.contains('@')
            {
                return s;
            }
        }
    }
}

/// One credential format: how to make one, and the names people give it.
struct Provider {
    name: &'static str,
    /// Environment variable / config name.
    env: &'static str,
    /// What people call it in prose.
    prose: &'static str,
    /// Whether its shape alone identifies it (then it also appears without any name).
    shaped: bool,
    make: fn(&mut Rng) -> Vec<String>,
}

fn providers() -> Vec<Provider> {
    let p = |name, env, prose, shaped, make| Provider {
        name,
        env,
        prose,
        shaped,
        make,
    };
    vec![
        p(
            "aws",
            "AWS_SECRET_ACCESS_KEY",
            "AWS credentials",
            true,
            |r| {
                vec![
                    ["AKIA", &r.chars(UPPER_ALNUM, 16)].concat(),
                    r.mixed(B64, 40),
                ]
            },
        ),
        p(
            "aws-sts",
            "AWS_SESSION_CREDS",
            "temporary AWS keys",
            true,
            |r| {
                vec![
                    ["ASIA", &r.chars(UPPER_ALNUM, 16)].concat(),
                    r.mixed(B64, 40),
                ]
            },
        ),
        p(
            "alibaba",
            "ALIBABA_CLOUD_KEYS",
            "Alibaba Cloud keys",
            true,
            |r| vec![["LTAI", &r.mixed(ALNUM, 20)].concat(), r.mixed(ALNUM, 30)],
        ),
        p("github", "GITHUB_TOKEN", "GitHub token", true, |r| {
            let kind = r.pick(&["ghp_", "gho_", "ghs_", "ghu_"]);
            vec![[kind, &r.mixed(ALNUM, 36)].concat()]
        }),
        p("github-fine", "GH_TOKEN", "GitHub PAT", true, |r| {
            vec![
                [
                    "github",
                    "_pat_",
                    &r.mixed(ALNUM, 22),
                    "_",
                    &r.mixed(ALNUM, 59),
                ]
                .concat(),
            ]
        }),
        p("gitlab", "GITLAB_TOKEN", "GitLab token", true, |r| {
            vec![["gl", "pat-", &r.mixed(B64URL, 20)].concat()]
        }),
        p("slack", "SLACK_BOT_TOKEN", "Slack bot token", true, |r| {
            let kind = r.pick(&["xoxb-", "xoxp-"]);
            vec![
                [
                    kind,
                    &r.chars(DIGITS, 12),
                    "-",
                    &r.chars(DIGITS, 13),
                    "-",
                    &r.mixed(ALNUM, 24),
                ]
                .concat(),
            ]
        }),
        p(
            "slack-webhook",
            "SLACK_WEBHOOK_URL",
            "Slack webhook",
            true,
            |r| {
                vec![
                    [
                        "https://hooks.slack.com/services/T",
                        &r.chars(UPPER_ALNUM, 8),
                        "/B",
                        &r.chars(UPPER_ALNUM, 10),
                        "/",
                        &r.mixed(ALNUM, 24),
                    ]
                    .concat(),
                ]
            },
        ),
        p(
            "stripe",
            "STRIPE_SECRET_KEY",
            "Stripe secret key",
            true,
            |r| {
                let kind = r.pick(&["sk_live_", "rk_live_", "sk_test_"]);
                let n = 24 + r.below(75);
                vec![[kind, &r.mixed(ALNUM, n)].concat()]
            },
        ),
        p("twilio", "TWILIO_API_KEY", "Twilio API key", true, |r| {
            vec![["SK", &r.hex(32)].concat()]
        }),
        p(
            "twilio-auth",
            "TWILIO_CREDENTIALS",
            "Twilio credentials",
            true,
            |r| {
                // The account SID is an identifier; its auth token is the secret.
                vec![r.hex(32)]
            },
        ),
        p("sendgrid", "SENDGRID_API_KEY", "SendGrid key", true, |r| {
            vec![["SG.", &r.mixed(B64URL, 22), ".", &r.mixed(B64URL, 43)].concat()]
        }),
        p(
            "google-api",
            "GOOGLE_API_KEY",
            "Google API key",
            true,
            |r| vec![["AI", "za", &r.mixed(B64URL, 35)].concat()],
        ),
        p(
            "google-oauth",
            "GOOGLE_CLIENT_SECRET",
            "OAuth client secret",
            true,
            |r| vec![["GOCSPX", "-", &r.mixed(B64URL, 28)].concat()],
        ),
        p("pem", "TLS_PRIVATE_KEY", "private key", true, |r| {
            let kind = r.pick(&["RSA ", "EC ", "OPENSSH ", ""]);
            let lines: Vec<String> = (0..4).map(|_| r.mixed(B64, 64)).collect();
            vec![format!(
                "-----BEGIN {kind}PRIVATE KEY-----\n{}\n-----END {kind}PRIVATE KEY-----",
                lines.join("\n")
            )]
        }),
        p("jwt", "ID_TOKEN", "session JWT", true, |r| {
            vec![
                [
                    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
                    ".eyJ",
                    &r.mixed(B64URL, 60),
                    ".",
                    &r.mixed(B64URL, 43),
                ]
                .concat(),
            ]
        }),
        p("npm", "NPM_TOKEN", "npm token", true, |r| {
            vec![["np", "m_", &r.mixed(ALNUM, 36)].concat()]
        }),
        p("pypi", "PYPI_API_TOKEN", "PyPI token", true, |r| {
            vec![["pypi-", "AgEIcHlwaS5vcmc", &r.mixed(B64URL, 70)].concat()]
        }),
        p("openai", "OPENAI_API_KEY", "OpenAI key", true, |r| {
            let kind = r.pick(&["sk-proj-", "sk-svcacct-", "sk-"]);
            vec![[kind, &r.mixed(ALNUM, 48)].concat()]
        }),
        p(
            "anthropic",
            "ANTHROPIC_API_KEY",
            "Anthropic key",
            true,
            |r| vec![["sk-ant-", "api03-", &r.mixed(B64URL, 93), "AA"].concat()],
        ),
        p("huggingface", "HF_TOKEN", "Hugging Face token", true, |r| {
            vec![["h", "f_", &r.mixed(ALNUM, 34)].concat()]
        }),
        p(
            "digitalocean",
            "DIGITALOCEAN_TOKEN",
            "DO token",
            true,
            |r| vec![["dop", "_v1_", &r.hex(64)].concat()],
        ),
        p(
            "shopify",
            "SHOPIFY_ACCESS_TOKEN",
            "Shopify token",
            true,
            |r| vec![["shp", "at_", &r.hex(32)].concat()],
        ),
        p("mailgun", "MAILGUN_API_KEY", "Mailgun key", true, |r| {
            vec![["key", "-", &r.hex(32)].concat()]
        }),
        p(
            "telegram",
            "TELEGRAM_BOT_TOKEN",
            "Telegram bot token",
            true,
            |r| vec![[&r.chars(DIGITS, 10), ":AA", &r.mixed(B64URL, 33)].concat()],
        ),
        p("square", "SQUARE_ACCESS_TOKEN", "Square token", true, |r| {
            let kind = r.pick(&["sq0atp-", "sq0csp-"]);
            vec![[kind, &r.mixed(B64URL, 22)].concat()]
        }),
        p(
            "atlassian",
            "JIRA_API_TOKEN",
            "Atlassian API token",
            true,
            |r| vec![["ATATT3", "xFfGF0", &r.mixed(B64URL, 180)].concat()],
        ),
        p(
            "doppler",
            "DOPPLER_TOKEN",
            "Doppler service token",
            true,
            |r| vec![["dp.st.", "prd.", &r.mixed(ALNUM, 40)].concat()],
        ),
        p("vault", "VAULT_TOKEN", "Vault token", true, |r| {
            vec![["hv", "s.", &r.mixed(B64URL, 90)].concat()]
        }),
        p(
            "terraform",
            "TF_TOKEN_app_terraform_io",
            "Terraform Cloud token",
            true,
            |r| vec![[&r.mixed(ALNUM, 14), ".atlas", "v1.", &r.mixed(B64URL, 67)].concat()],
        ),
        p(
            "databricks",
            "DATABRICKS_TOKEN",
            "Databricks token",
            true,
            |r| vec![["dap", "i", &r.hex(32)].concat()],
        ),
        p("linear", "LINEAR_API_KEY", "Linear API key", true, |r| {
            vec![["lin", "_api_", &r.mixed(ALNUM, 40)].concat()]
        }),
        p(
            "notion",
            "NOTION_TOKEN",
            "Notion integration token",
            true,
            |r| {
                if r.below(2) == 0 {
                    vec![["secret", "_", &r.mixed(ALNUM, 43)].concat()]
                } else {
                    vec![["nt", "n_", &r.mixed(ALNUM, 46)].concat()]
                }
            },
        ),
        p(
            "azure-ad",
            "AZURE_CLIENT_SECRET",
            "Azure client secret",
            true,
            |r| {
                vec![
                    [
                        &r.mixed(ALNUM, 3),
                        &r.chars(DIGITS, 1),
                        "Q~",
                        &r.mixed(ALNUM, 34),
                    ]
                    .concat(),
                ]
            },
        ),
        p("heroku", "HEROKU_API_KEY", "Heroku API key", false, |r| {
            vec![r.uuid()]
        }),
        p("datadog", "DD_API_KEY", "Datadog API key", false, |r| {
            vec![r.hex(32)]
        }),
        p(
            "discord",
            "DISCORD_BOT_TOKEN",
            "Discord bot token",
            false,
            |r| {
                vec![
                    [
                        r.pick(&["M", "N", "O"]),
                        &r.mixed(B64URL, 25),
                        ".",
                        &r.mixed(B64URL, 6),
                        ".",
                        &r.mixed(B64URL, 38),
                    ]
                    .concat(),
                ]
            },
        ),
        p(
            "cloudflare",
            "CLOUDFLARE_API_TOKEN",
            "Cloudflare API token",
            false,
            |r| vec![r.mixed(B64URL, 40)],
        ),
        p(
            "generic-token",
            "SERVICE_AUTH_TOKEN",
            "auth token",
            false,
            |r| {
                let n = 24 + r.below(24);
                vec![r.mixed(ALNUM, n)]
            },
        ),
        p("generic-password", "DB_PASSWORD", "password", false, |r| {
            vec![r.password()]
        }),
    ]
}

/// Credential-bearing forms a secret is pasted in: connection strings and URLs carry a
/// password, the others any single value.
fn forms_for(provider: &Provider, values: &[String], r: &mut Rng) -> Vec<(&'static str, String)> {
    let v = &values[values.len() - 1];
    let env = provider.env;
    let prose = provider.prose;
    let json_key = env.to_ascii_lowercase();
    let camel = camel(&json_key);
    let mut forms = Vec::new();
    match provider.name {
        "aws" | "aws-sts" | "alibaba" => {
            let (id, secret) = (&values[0], &values[1]);
            forms.push((
                "prose",
                format!("here are the {prose}: {id} {secret} - rotate after the demo"),
            ));
            forms.push((
                "csv",
                format!("User name,Access key ID,Secret access key\ndeploy,{id},{secret}"),
            ));
            forms.push(("env", format!("KEY_ID={id}\nKEY={secret}")));
            forms.push(("json", format!(r#"{{"id": "{id}", "value": "{secret}"}}"#)));
            forms.push((
                "shell",
                format!("aws configure set aws_access_key_id {id} && aws configure set aws_secret_access_key {secret}"),
            ));
            return forms;
        }
        "twilio-auth" => {
            let sid = ["AC", &r.hex(32)].concat();
            forms.push(("prose", format!("Twilio account {sid} token {v}")));
            forms.push((
                "env",
                format!("TWILIO_ACCOUNT_SID={sid}\nTWILIO_AUTH_TOKEN={v}"),
            ));
            forms.push(("shell", format!("curl -X POST https://api.twilio.com/2010-04-01/Accounts/{sid}/Messages.json -u {sid}:{v}")));
            forms.push((
                "json",
                format!(r#"{{"account_sid": "{sid}", "auth_token": "{v}"}}"#),
            ));
            return forms;
        }
        "generic-password" => {
            let host = r.pick(&["db.internal", "10.0.3.7", "pg-prod.example.net"]);
            let user = r.pick(&["admin", "app", "postgres", "svc_report"]);
            forms.push(("prose", format!("the password is {v}")));
            forms.push(("prose", format!("Password for {user} on staging: {v}")));
            forms.push(("env", format!("{env}={v}")));
            forms.push(("env", format!("export DB_PASS='{v}'")));
            forms.push((
                "yaml",
                format!("database:\n  host: {host}\n  password: \"{v}\""),
            ));
            forms.push((
                "json",
                format!(r#"{{"user": "{user}", "password": "{v}"}}"#),
            ));
            forms.push(("shell", format!("mysql -h {host} -u {user} --password {v}")));
            forms.push((
                "shell",
                format!("psql --host={host} --username={user} --password='{v}'"),
            ));
            let url_pw: String = v.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            forms.push(("url", format!("postgres://{user}:{url_pw}@{host}:5432/app")));
            forms.push((
                "url",
                format!("mongodb+srv://{user}:{url_pw}@cluster0.ab1cd.mongodb.net/test"),
            ));
            forms.push((
                "url",
                format!("mysql://{user}:{url_pw}@{host}/shop?ssl=true"),
            ));
            forms.push((
                "connection-string",
                format!("Server={host};Database=app;User Id={user};Password={url_pw};"),
            ));
            forms.push((
                "xml",
                format!("<user>{user}</user><password>{v}</password>"),
            ));
            forms.push((
                "prose",
                format!("netrc: machine {host} login {user} password {url_pw}"),
            ));
            return forms;
        }
        "slack-webhook" => {
            forms.push(("prose", format!("post alerts to {v} please")));
            forms.push(("env", format!("{env}={v}")));
            forms.push((
                "shell",
                format!("curl -X POST -d '{{\"text\":\"hi\"}}' {v}"),
            ));
            forms.push(("json", format!(r#"{{"webhook": "{v}"}}"#)));
            return forms;
        }
        _ => {}
    }
    forms.push(("env", format!("{env}={v}")));
    forms.push(("env", format!("export {env}=\"{v}\"")));
    forms.push((
        "json",
        format!(r#"{{"name": "deploy", "{json_key}": "{v}", "retries": 3}}"#),
    ));
    forms.push((
        "json-escaped",
        format!(r#"{{\"config\": {{\"{camel}\": \"{v}\"}}}}"#),
    ));
    forms.push((
        "yaml",
        format!("service:\n  region: eu-west-1\n  {camel}: {v}\n"),
    ));
    forms.push(("prose", format!("my {prose} is {v}, keep it safe")));
    forms.push(("prose", format!("use {prose} {v} for the nightly job")));
    forms.push((
        "shell",
        format!("curl -H \"Authorization: Bearer {v}\" https://api.example.com/v2/me"),
    ));
    forms.push(("shell", format!("deploy-tool push --token {v} --region eu")));
    forms.push((
        "url",
        format!("https://api.example.com/v1/items?access_token={v}&limit=10"),
    ));
    forms.push(("header", format!("X-Api-Key: {v}")));
    if provider.shaped {
        forms.push(("bare", format!("here it is: {v}")));
        forms.push(("bare", v.clone()));
    }
    if provider.name == "azure-ad" {
        let conn = [
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=",
            &r.mixed(B64, 86),
            "==;EndpointSuffix=core.windows.net",
        ]
        .concat();
        forms.push(("connection-string", conn));
    }
    forms
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A labelled secret item: its text (or structured value), and the secrets in it.
struct Item {
    provider: &'static str,
    form: &'static str,
    text: Option<String>,
    value: Option<Value>,
    secrets: Vec<String>,
}

fn secret_items() -> Vec<Item> {
    let mut r = Rng(0x5EC2_E7C0_2B05_A11D);
    let mut items = Vec::new();
    for provider in providers() {
        // Two rounds of every form, each with fresh random secrets.
        for _ in 0..2 {
            let values = (provider.make)(&mut r);
            let secret_values = match provider.name {
                // The key id is a finding too, but the secret is what must not leak.
                "aws" | "aws-sts" | "alibaba" => vec![values[1].clone()],
                _ => vec![values[values.len() - 1].clone()],
            };
            let forms = forms_for(&provider, &values, &mut r);
            for (form, text) in forms {
                let mut secrets = secret_values.clone();
                if form == "connection-string" && provider.name == "azure-ad" {
                    let key = text
                        .split(';')
                        .find_map(|p| p.strip_prefix("AccountKey="))
                        .unwrap()
                        .to_string();
                    secrets = vec![key];
                }
                if provider.name == "generic-password"
                    && matches!(form, "url" | "connection-string")
                    || text.contains("netrc:")
                {
                    secrets = vec![
                        secret_values[0]
                            .chars()
                            .filter(|c| c.is_ascii_alphanumeric())
                            .collect(),
                    ];
                }
                items.push(Item {
                    provider: provider.name,
                    form,
                    text: Some(text),
                    value: None,
                    secrets,
                });
            }
            // Structured arguments: the key is the only context.
            let v = secret_values[0].clone();
            let key = match provider.name {
                "generic-password" => "password".to_string(),
                "aws" | "aws-sts" | "alibaba" => "secret_access_key".to_string(),
                _ => camel(&provider.env.to_ascii_lowercase()),
            };
            items.push(Item {
                provider: provider.name,
                form: "structured",
                text: None,
                value: Some(json!({"tool": "deploy", "env": {key: v.clone()}, "dry_run": false})),
                secrets: vec![v.clone()],
            });
            if provider.name == "slack-webhook" {
                continue;
            }
            items.push(Item {
                provider: provider.name,
                form: "structured-header",
                text: None,
                value: Some(json!({"url": "https://api.example.com", "headers": {"Authorization": format!("Bearer {v}")}})),
                secrets: vec![v],
            });
        }
    }
    // Hand-written lines (values assembled at run time).
    let hand = [
        ("prose", "the password is {P}", "{P}"),
        ("prose", "secret '{A}'", "{A}"),
        ("prose", "api key {H}", "{H}"),
        ("prose", "use token {A} when calling the staging API", "{A}"),
        ("prose", "Login: ops / {P}", "{P}"),
        ("env", "DB_PASS={P}", "{P}"),
        ("json", r#"{"auth": "{A}"}"#, "{A}"),
        (
            "json",
            r#"{"client_secret": "{A}", "client_id": "web-app"}"#,
            "{A}",
        ),
        ("yaml", "apiKey: {A}", "{A}"),
        (
            "shell",
            "curl -H \"X-Api-Key: {H}\" https://api.example.com",
            "{H}",
        ),
        (
            "url",
            "https://deploy:{A}@git.example.com/org/repo.git",
            "{A}",
        ),
        ("shell", "export FOO_TOKEN={A}", "{A}"),
        ("shell", "./run --password {P}", "{P}"),
        (
            "url",
            "wss://stream.example.com/feed?access_token={A}",
            "{A}",
        ),
        ("prose", "Here's the new passphrase: {P}", "{P}"),
        ("prose", "pw: {P}", "{P}"),
        ("prose", "creds: admin / {P}", "{P}"),
        ("env", "user=admin pass={P}", "{P}"),
        ("prose", "Here's the key for prod: {H}", "{H}"),
        ("markdown", "token: `{A}`", "{A}"),
        ("prose", "The Datadog key is {H}", "{H}"),
        ("shell", "sshpass -p '{P}' ssh deploy@10.0.0.5", "{P}"),
        ("url", "redis://:{A}@cache.internal:6379/0", "{A}"),
        ("prose", "smtp password: {P}", "{P}"),
        ("env", "PGPASSWORD={P} psql -h db -U app", "{P}"),
        (
            "prose",
            "set SECRET_KEY to \"django-insecure-{A}\"",
            "django-insecure-{A}",
        ),
        (
            "url",
            "otpauth://totp/ACME:alice?secret={U}&issuer=ACME",
            "{U}",
        ),
        (
            "ini",
            "[Interface]\nPrivateKey = {B}\nAddress = 10.8.0.2/24",
            "{B}",
        ),
        ("yaml", "data:\n  password: {B}", "{B}"),
        ("env", "SECRET_KEY_BASE={H}{H}", "{H}{H}"),
        (
            "url",
            "jdbc:mysql://db:3306/app?user=root&password={A}",
            "{A}",
        ),
        ("shell", "mycli --api-key={A} query", "{A}"),
        ("cookie", "Cookie: sessionid={H}; csrftoken={A}", "{H}"),
        ("prose", "my gmail app password is {G}", "{G}"),
        (
            "json",
            r#"{"password": "{P}", "password_confirmation": "{P}"}"#,
            "{P}",
        ),
        ("sql", "CREATE USER app WITH PASSWORD '{P}';", "{P}"),
        ("prose", "Your API key is {A} (shown once)", "{A}"),
        // Command-line flags, cookies, SAS signatures, DSNs, seed phrases (held-out review).
        (
            "shell",
            "curl -u admin:{P} https://jenkins.example.com/api/json",
            "{P}",
        ),
        ("shell", "mysql -u root -p{P} -h 127.0.0.1", "{P}"),
        (
            "shell",
            "docker login -u acme -p {P} registry.example.com",
            "{P}",
        ),
        ("shell", "redis-cli -h cache -a {P} ping", "{P}"),
        (
            "cookie",
            "Set-Cookie: JSESSIONID={H}; Path=/; HttpOnly",
            "{H}",
        ),
        (
            "url",
            "https://acct.blob.core.windows.net/c/f.bak?sv=2022-11-02&sp=r&sig={A}",
            "{A}",
        ),
        (
            "go",
            "db, _ := sql.Open(\"mysql\", \"app:{P}@tcp(db:3306)/shop\")",
            "{P}",
        ),
        ("url", "amqp://guest:{P}@rabbitmq:5672/", "{P}"),
        ("ini", "[client]\nuser=root\npassword={A}&{U}", "{A}&{U}"),
        ("header", "Authorization: SSWS 00{A}", "00{A}"),
        ("prose", "pw for the staging admin: {A}", "{A}"),
        ("properties", "spring.datasource.password={W}", "{W}"),
        (
            "netrc",
            "machine api.example.com\n  login me\n  password {W}",
            "{W}",
        ),
        (
            "go",
            "cfg := Config{User: \"svc\", Password: \"{W}\"}",
            "{W}",
        ),
        ("env", "MNEMONIC=\"{G} {G} {G}\"", "{G} {G} {G}"),
    ];
    for round in 0..4 {
        for (form, template, secret) in hand {
            let p = r.password();
            let a = r.mixed(ALNUM, 20 + round * 4);
            let h = r.hex(32);
            let u = r.chars(UPPER_ALNUM, 16);
            let b = [r.mixed(B64, 43).as_str(), "="].concat();
            let g: Vec<String> = (0..4).map(|_| r.chars(LOWER, 4)).collect();
            let g = g.join(" ");
            // `Word.word42`: dotted like code, but a password (no extra draws).
            let w = format!("Falcon.{}{}", g.replace(' ', ""), 20 + round);
            let fill = |s: &str| {
                s.replace("{P}", &p)
                    .replace("{A}", &a)
                    .replace("{H}", &h)
                    .replace("{U}", &u)
                    .replace("{B}", &b)
                    .replace("{G}", &g)
                    .replace("{W}", &w)
            };
            items.push(Item {
                provider: "hand-written",
                form,
                text: Some(fill(template)),
                value: None,
                secrets: vec![fill(secret)],
            });
        }
    }
    items
}

/// Benign strings that look like secrets: digests, ids, encoded data, code, and prose about
/// passwords, tokens and keys.
fn benign_items() -> Vec<String> {
    let mut r = Rng(0xB3_9196_0000_5AFE);
    let mut out = Vec::new();
    let prose = [
        "Please reset your password using the link we sent you.",
        "The password field is required.",
        "Your password must be at least 12 characters long and include a digit.",
        "Passwords must be 8-64 characters.",
        "The token count for this prompt is 4096.",
        "Use the token count to budget the prompt; pass --max-tokens 4096.",
        "Rotate the secret every 90 days and store it in the vault.",
        "The secret to good bread is patience.",
        "Your API key will appear here once generated.",
        "The api key is stored in Vault at secret/data/app.",
        "Tokens per second: 42.7 on the A100 runner.",
        "The access token expires after 3600 seconds.",
        "Enter a password to continue.",
        "Forgot password? Click here.",
        "Password strength: strong.",
        "Tokenizer vocabulary size is 50257 tokens.",
        "Refresh tokens are rotated on every use.",
        "Keys are sorted by the primary key before the merge.",
        "OAuth 2.0 token exchange is described in RFC 8693.",
        "Set the token expiry to 3600 seconds in settings.",
        "The bearer of this note is welcome.",
        "He passed the key to the next runner.",
        "Invalid password, 2 attempts remaining.",
        "We never ask for your password by e-mail.",
        "Each token costs 0.002 cents.",
        "See the secret manager documentation, version 2.3.14.",
        "A password manager generates and stores strong passwords.",
        "The API key rotation policy changed in 2026.",
        "Authentication failed: token expired at 2026-11-27T10:00:00Z.",
        "pass the salt, please",
    ];
    let paths = [
        "/home/dev/.ssh/id_ed25519.pub",
        "~/.aws/credentials",
        "src/auth/token_store.rs",
        "C:\\Users\\dev\\AppData\\Roaming\\npm\\node_modules",
        "/etc/secrets/db-password",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "config/credentials.yml.enc",
        "./keys/public_key.pem",
    ];
    for i in 0..2736 {
        let text = match i % 38 {
            0 => format!("sha256sum: {}  release-{}.tar.gz", r.hex(64), r.below(100)),
            1 => format!(
                r#"{{"checksum": "{}", "size": {}}}"#,
                r.hex(64),
                r.below(100_000)
            ),
            2 => format!(
                "commit {}\nAuthor: Dev <dev@example.com>\n\n    tokenizer: fix off-by-one",
                r.hex(40)
            ),
            3 => format!("tokenizer commit {} bumped the vocabulary", r.hex(40)),
            4 => format!(r#"{{"request_id": "{}", "status": "ok"}}"#, r.uuid()),
            5 => format!("Idempotency-Key: {}", r.uuid()),
            6 => format!("data:image/png;base64,iVBORw0KGgo{}", r.chars(B64, 160)),
            7 => format!(r#""integrity": "sha512-{}==""#, r.chars(B64, 86)),
            8 => format!("docker pull ghcr.io/acme/api@sha256:{}", r.hex(64)),
            9 => format!(
                "event id {} (ULID)",
                ["01", &r.chars(CROCKFORD, 24)].concat()
            ),
            10 => format!(
                "upgrade to v{}.{}.{}-rc.{} now",
                r.below(20),
                r.below(50),
                r.below(200),
                r.below(9)
            ),
            11 => format!("{} (md5 {})", r.pick(&prose), r.hex(32)),
            12 => format!("{} {}", r.pick(&prose), r.pick(&paths)),
            13 => format!(
                "function(e,t){{var n=t.token||e.apiKey;return n?{{Authorization:\"Bearer \"+n}}:{{}}}}/*{}*/",
                r.hex(8)
            ),
            14 => format!(
                ".btn-{}{{color:#{};background-color:#{}}}",
                r.chars(LOWER, 6),
                r.hex(6),
                r.hex(6)
            ),
            15 => format!(
                r#"{{"next_page_token": "{}", "max_tokens": {}, "cache_key": "{}"}}"#,
                r.chars(B64URL, 40),
                r.below(8192),
                r.hex(40)
            ),
            16 => format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} dev@laptop",
                r.chars(B64, 43)
            ),
            17 => format!("public key fingerprint SHA256:{}", r.chars(B64, 43)),
            18 => format!(
                "{} See PR #{} merged as {}.",
                r.pick(&prose),
                r.below(9999),
                r.hex(12)
            ),
            19 => format!(
                "apiKey: process.env.API_KEY_{}\npassword: ${{DB_PASSWORD}}\ntoken: {{{{ secrets.GH_TOKEN }}}}",
                r.chars(UPPER, 3)
            ),
            20 => format!(
                r#"{{"password_policy": "strong", "token_type": "Bearer", "secret_name": "prod/db-{}", "key_id": "{}"}}"#,
                r.chars(LOWER, 5),
                r.uuid()
            ),
            22 => format!(
                "arn:aws:secretsmanager:us-east-1:{}:secret:prod/db-{}",
                r.chars(DIGITS, 12),
                r.mixed(ALNUM, 6)
            ),
            23 => format!(
                "TOKENIZERS_PARALLELISM=false\nPASSWORD_MIN_LENGTH=12\nTOKEN_TTL=3600s\nAPI_KEY_HEADER=X-Api-Key\nSECRET_KEY_BASE_FILE=/run/secrets/key_{}\nAUTH_PROVIDER=github",
                r.hex(4)
            ),
            24 => format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-creds-{}\n  uid: {}\ntype: Opaque\n# secretName: tls-{}",
                r.hex(8),
                r.uuid(),
                r.hex(10)
            ),
            25 => format!(
                r#"{{"client_id": "{}", "clientId": "{}", "key": "{}", "nonce": "{}", "token_hash": "{}", "hash": "$2b$12${}"}}"#,
                r.uuid(),
                r.hex(32),
                r.hex(40),
                r.hex(32),
                r.hex(64),
                r.chars(B64, 53)
            ),
            26 => format!(
                "Merge pull request #{} from dev/token-refresh-{}\n\n{} fix(auth): password reset emails",
                r.below(5000),
                r.hex(7),
                r.hex(40)
            ),
            27 => format!(
                "GET /api/v1/tokens/{} 200 12ms\nPOST /v1/auth/password-reset?user={} 204",
                r.hex(32),
                r.uuid()
            ),
            28 => format!(
                "Session token refreshed at 2026-11-{:02}T10:{:02}:00Z, next refresh in 3600 s (trace {})",
                1 + r.below(28),
                r.below(60),
                r.uuid()
            ),
            29 => format!(
                r#"{{"id": "chatcmpl-{}", "usage": {{"prompt_tokens": {}, "completion_tokens": {}}}, "tokens": ["the", "cat"]}}"#,
                r.mixed(ALNUM, 29),
                r.below(4000),
                r.below(4000)
            ),
            30 => format!(
                "api_key = os.environ[\"OPENAI_API_KEY\"]\nclient = OpenAI(api_key=api_key)\npassword = get_password()  # {}",
                r.hex(8)
            ),
            31 => format!(
                "const token = await getToken();\nfetch(url, {{ headers: {{ Authorization: `Bearer ${{token}}` }} }}) // {}",
                r.hex(7)
            ),
            32 => format!(
                "SELECT id, token_hash FROM api_keys WHERE key_prefix = 'sk_{}' AND created_at > '2026-01-01'",
                r.hex(4)
            ),
            33 => format!(
                "curl -H \"X-Request-Id: {}\" -H \"Accept: application/json\" https://api.example.com/v1/items/{}",
                r.uuid(),
                r.hex(24)
            ),
            34 => format!(
                r#"{{"sort_key": "{}", "partition_key": "{}", "primary_key": {}}}"#,
                r.hex(64),
                r.uuid(),
                r.below(100_000)
            ),
            35 => {
                let mut options = vec![
                    format!("The primary key is {}", r.below(1_000_000)),
                    format!("cache key: {}", r.hex(40)),
                    format!("commit {} - update the token refresh logic", r.hex(40)),
                    format!("Token fingerprint: {}", r.hex(64)),
                    format!(
                        "password hash: $argon2id$v=19$m=65536,t=3,p=4${}${}",
                        r.chars(B64, 22),
                        r.chars(B64, 43)
                    ),
                    format!("api_key_id: {}", r.hex(32)),
                    format!("Token: {} (<|endoftext|>)", r.below(60000)),
                    "Use a password like correct-horse-battery-staple, not P@ssw0rd.".to_string(),
                    "passwordless login via magic link".to_string(),
                    "auth: required".to_string(),
                    format!("secret sauce v{}.{}.{}", r.below(9), r.below(9), r.below(9)),
                    "token=${{ secrets.NPM_TOKEN }}".to_string(),
                    "API key: see the 1Password item 'Prod Datadog'".to_string(),
                    format!("access token lifetime: {}", r.below(86400)),
                    format!("Tokens used: {} of {}", r.below(4000), 4096),
                    format!("sha256 digest of the API key: {}", r.hex(64)),
                    format!("key id {} created by alice", r.uuid()),
                    format!(
                        "the token endpoint is https://auth.example.com/oauth/token?tenant={}",
                        r.uuid()
                    ),
                    format!(
                        r#"{{"secretRef": {{"name": "db-{}"}}, "passwordFile": "/run/secrets/pw"}}"#,
                        r.hex(6)
                    ),
                    format!("password reset code sent ({} attempts left)", r.below(5)),
                ];
                let k = r.below(options.len());
                options.swap_remove(k)
            }
            36 => {
                let mut options = vec![
                    "def get_token(self, key: str) -> str:".to_string(),
                    "interface Config { apiKey: string; password?: string }".to_string(),
                    "const schema = z.object({ password: z.string().min(12) })".to_string(),
                    "Token string `json:\"token\"`".to_string(),
                    "password = var.db_password\ntoken    = data.vault_generic_secret.app.data[\"token\"]".to_string(),
                    "read -s PASSWORD && docker login --password-stdin".to_string(),
                    "POSTGRES_PASSWORD_FILE: /run/secrets/db_password".to_string(),
                    "token: ${{ secrets.GITHUB_TOKEN }}".to_string(),
                    format!("auth=ok user=alice latency={}ms token_refresh=success", r.below(900)),
                    format!("--token-color-primary: #{}; --token-space-{}: 4px;", r.hex(6), r.below(9)),
                    r#"{"password_reset_subject": "Reset your password", "tokenizer": "cl100k_base"}"#.to_string(),
                    r#"{"webhook_secret_set": true, "auth": {"type": "oauth2"}, "key": "user:42"}"#.to_string(),
                    "Set `OPENAI_API_KEY` to your key, then run the script.".to_string(),
                    format!("API keys are 32 hex characters, such as {}.", r.hex(32)),
                    format!("Authorization: Bearer <token> ({} requests left)", r.below(100)),
                    format!("the tokenizer maps {} to token id {}", r.chars(LOWER, 7), r.below(50000)),
                ];
                let k = r.below(options.len());
                options.swap_remove(k)
            }
            _ => format!(
                "s3://backups-{}/{}/{}.tar.zst etag \"{}\"",
                r.chars(LOWER, 4),
                r.hex(2),
                r.chars(ALNUM, 24),
                r.hex(32)
            ),
        };
        out.push(text);
    }
    // Look-alikes from the held-out review: YAML tags, placeholder bodies, flags and cookies
    // that are not credentials.
    for text in [
        "password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3961643364",
        "db_password: !secret mariadb_password",
        "SLACK_TOKEN=xoxb-your-token-here",
        "STRIPE_SECRET_KEY=sk_test_...",
        "secret_key = \"REPLACE_ME\"",
        "DATABASE_URL=postgres://user:password@localhost:5432/mydb",
        "curl -u 1000:1000 https://registry.example.com/v2/",
        "docker run -u 1000:1000 -p 8080:80 nginx",
        "mysql -P 3306 -p -h db.internal",
        "session_id=9f86d081884c7d659a2feaa0c55ad015 user_id=42 action=login",
        "https://example.com:443?next=a@b.com",
        "tests pass on: ubuntu-22.04",
        "password: config.db.password",
        "client.run(token)",
        "https://x.io/a?sig=9f86d081884c7d659a2feaa0c55ad015&v=1",
    ] {
        out.push(text.to_string());
    }
    out
}

/// Benign structured arguments: credential-free values under names near credential words.
fn benign_values(r: &mut Rng) -> Vec<Value> {
    (0..100)
        .map(|_| {
            json!({
                "request_id": r.uuid(),
                "tokens": r.below(5000),
                "token_count": r.below(5000),
                "page_token": r.chars(B64URL, 40),
                "cache_key": r.hex(40),
                "public_key": format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{}", r.chars(B64, 43)),
                "auth": {"type": "oauth2", "scopes": ["repo", "read:org"]},
                "auth_method": "password",
                "password_required": true,
                "secret_ref": "vault:kv/prod/db",
                "commit": r.hex(40),
                "integrity": format!("sha512-{}==", r.chars(B64, 86)),
            })
        })
        .collect()
}

fn policy() -> std::sync::Arc<Policy> {
    Config::parse(Path::new("/etc/mcp/proxy.toml"), "")
        .expect("the default configuration parses")
        .policy
}

/// Every window of `min(len, 8)` characters of `secret` that is still in `stored`.
fn leaks(stored: &str, secret: &str) -> bool {
    let b = secret.as_bytes();
    let w = b.len().min(8);
    b.windows(w).any(|x| {
        let x = std::str::from_utf8(x).unwrap_or("");
        !x.is_empty() && stored.contains(x)
    })
}

#[test]
fn secrets_are_found_and_look_alikes_are_not() {
    let policy = policy();
    let secret_only = Classifiers::new(&[Class::Secret]);
    let items = secret_items();
    let providers: BTreeSet<&str> = items.iter().map(|i| i.provider).collect();
    let forms: BTreeSet<&str> = items.iter().map(|i| i.form).collect();
    let secrets: usize = items.iter().map(|i| i.secrets.len()).sum();
    assert!(secrets >= 300, "the corpus has {secrets} secrets");
    assert!(
        providers.len() >= 30,
        "the corpus has {} providers",
        providers.len()
    );
    assert!(
        forms.len() >= 8,
        "the corpus has {} forms: {forms:?}",
        forms.len()
    );

    let mut missed: Vec<String> = Vec::new();
    let mut missed_by: BTreeMap<&str, usize> = BTreeMap::new();
    for item in &items {
        // What the audit trail would store: the text as an argument, or the structured value.
        let stored = match (&item.text, &item.value) {
            (Some(text), _) => {
                let args = json!({"text": text});
                let protected = policy
                    .protect(&args)
                    .map_or_else(|| args.to_string(), |(v, _)| v.to_string());
                let error_text = policy.protect_text(text);
                format!("{protected}\n{error_text}")
            }
            (None, Some(value)) => policy
                .protect(value)
                .map_or_else(|| value.to_string(), |(v, _)| v.to_string()),
            (None, None) => unreachable!("an item has a text or a value"),
        };
        let leaked: Vec<&String> = item.secrets.iter().filter(|s| leaks(&stored, s)).collect();
        if !leaked.is_empty() || !stored.contains("[REDACTED:secret]") {
            *missed_by.entry(item.provider).or_default() += 1;
            missed.push(format!(
                "{} / {}: {:?}",
                item.provider,
                item.form,
                item.text.clone().unwrap_or_else(|| item
                    .value
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_default())
            ));
        }
    }
    let recall = 1.0 - missed.len() as f64 / items.len() as f64;

    let benign = benign_items();
    let mut r = Rng(0xFA15_E000_0000_0001);
    let values = benign_values(&mut r);
    let mut false_positives = Vec::new();
    for text in &benign {
        let mut found = Vec::new();
        secret_only.scan(text, &mut found);
        if !found.is_empty() {
            let shown: Vec<&str> = found.iter().map(|f| &text[f.range()]).collect();
            false_positives.push(format!("{text:?} -> {shown:?}"));
        }
    }
    for v in &values {
        if policy.scan_result(v).contains(&Class::Secret) {
            false_positives.push(format!("structured {v}"));
        }
    }
    let benign_count = benign.len() + values.len();
    let fp_rate = false_positives.len() as f64 / benign_count as f64;

    println!(
        "secrets corpus: {} items holding {secrets} secrets, {} providers, {} forms; {benign_count} benign strings",
        items.len(),
        providers.len(),
        forms.len()
    );
    println!(
        "recall {:.2}% ({} of {} items missed; target >= {:.0}%), false positives {:.2}% ({} of {benign_count}; target <= {:.0}%)",
        recall * 100.0,
        missed.len(),
        items.len(),
        RECALL_TARGET * 100.0,
        fp_rate * 100.0,
        false_positives.len(),
        FALSE_POSITIVE_TARGET * 100.0
    );
    let hand: Vec<&Item> = items
        .iter()
        .filter(|i| i.provider == "hand-written")
        .collect();
    let hand_missed = missed_by.get("hand-written").copied().unwrap_or(0);
    println!(
        "  of which hand-written lines: {} of {} found ({:.1}%); generated: {} of {}",
        hand.len() - hand_missed,
        hand.len(),
        100.0 * (hand.len() - hand_missed) as f64 / hand.len() as f64,
        items.len() - hand.len() - (missed.len() - hand_missed),
        items.len() - hand.len()
    );
    if !missed_by.is_empty() {
        println!("missed by provider: {missed_by:?}");
    }
    for m in missed.iter().take(40) {
        println!("  missed {m}");
    }
    for f in false_positives.iter().take(40) {
        println!("  false positive {f}");
    }
    assert!(
        recall >= RECALL_TARGET,
        "recall {recall:.4} below {RECALL_TARGET}"
    );
    assert!(
        fp_rate <= FALSE_POSITIVE_TARGET,
        "false positives {fp_rate:.4} above {FALSE_POSITIVE_TARGET}"
    );
}

#[test]
fn a_found_secret_is_never_stored_in_clear() {
    // Whatever the form, once a secret is found, no part of it long enough to matter survives
    // in what the trail keeps: the masked argument, the masked error text, or the masked value.
    let policy = policy();
    let secret_only = Classifiers::new(&[Class::Secret]);
    let mut checked = 0;
    for item in secret_items() {
        let Some(text) = &item.text else { continue };
        let mut found = Vec::new();
        secret_only.scan(text, &mut found);
        let covered = |s: &str| {
            text.match_indices(s)
                .all(|(at, m)| found.iter().any(|f| f.start <= at && at + m.len() <= f.end))
        };
        if !item.secrets.iter().all(|s| covered(s)) {
            continue;
        }
        checked += 1;
        let stored = policy.protect_text(text);
        for s in &item.secrets {
            assert!(
                !leaks(&stored, s),
                "{} / {}: {stored:?} keeps part of {s:?}",
                item.provider,
                item.form
            );
        }
        let masked = mcp_audit_proxy::policy::classify::mask(text, &found);
        let mut again = Vec::new();
        secret_only.scan(&masked, &mut again);
        assert!(again.is_empty(), "masked text scans clean: {masked:?}");
    }
    assert!(checked >= 300, "{checked} items were checked");
}
