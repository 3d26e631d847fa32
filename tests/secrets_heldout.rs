//! Held-out secret corpus: written without reading the detector or its own corpus, to measure
//! the secret classifier as the proxy uses it (`Policy::protect_text` / `Policy::scan_text` of
//! the default policy).
//!
//! Labelling rules:
//! - A positive is a real-looking credential in the context people paste it in (env files,
//!   CI logs, configs, URLs, source, chat). It is found only if `protect_text` leaves no run of
//!   8 characters of the secret (the whole secret when shorter) in its output.
//! - A benign line is anything else that looks high-entropy or talks about secrets: hashes,
//!   digests, ids, public keys, base64 data, prose, and **placeholders** (`YOUR_API_KEY`,
//!   `<token>`, `xxxx`, `${VAR}`, `changeme`, vendor documentation example keys such as AWS's
//!   `...EXAMPLE`): a placeholder is NOT a secret. It is a false positive if `protect_text`
//!   changes it or `scan_text` reports `Class::Secret`.
//! - Benign lines carry no e-mail, phone, card, IBAN or national id, so any change is the
//!   secret classifier's (the class found is printed anyway).
//!
//! Secret bodies are generated at run time from a seeded generator: the source holds only
//! prefixes and shapes, never a full credential.
//!
//! The floors asserted are loose (a regression guard); the printed figures are the point.

use std::collections::BTreeMap;
use std::path::Path;

use mcp_audit_proxy::config::Config;
use mcp_audit_proxy::policy::Policy;
use mcp_audit_proxy::policy::classify::Class;

const UP: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LO: &str = "abcdefghijklmnopqrstuvwxyz";
const DIG: &str = "0123456789";
const HEX: &str = "0123456789abcdef";

fn an() -> String {
    format!("{UP}{LO}{DIG}")
}
fn b64() -> String {
    format!("{UP}{LO}{DIG}+/")
}
fn b64u() -> String {
    format!("{UP}{LO}{DIG}-_")
}
fn uan() -> String {
    format!("{UP}{DIG}")
}
fn lan() -> String {
    format!("{LO}{DIG}")
}

/// splitmix64: deterministic, seeded.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn of(&mut self, alphabet: &str, n: usize) -> String {
        let a: Vec<char> = alphabet.chars().collect();
        (0..n).map(|_| a[self.below(a.len())]).collect()
    }
    fn an(&mut self, n: usize) -> String {
        self.of(&an(), n)
    }
    fn hex(&mut self, n: usize) -> String {
        self.of(HEX, n)
    }
    fn b64(&mut self, n: usize) -> String {
        self.of(&b64(), n)
    }
    fn b64u(&mut self, n: usize) -> String {
        self.of(&b64u(), n)
    }
    fn uan(&mut self, n: usize) -> String {
        self.of(&uan(), n)
    }
    fn lan(&mut self, n: usize) -> String {
        self.of(&lan(), n)
    }
    fn dig(&mut self, n: usize) -> String {
        let first = self.of("123456789", 1);
        format!("{first}{}", self.of(DIG, n - 1))
    }
    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.pick(&["8", "9", "a", "b"]),
            self.hex(3),
            self.hex(12)
        )
    }
    /// Padded standard base64 of `n` random bytes.
    fn b64_bytes(&mut self, n: usize) -> String {
        let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
        b64_encode(&bytes)
    }
    /// A password a human picks: word, digits, symbols, mixed case.
    fn password(&mut self) -> String {
        let words = [
            "Summer", "Winter", "dragon", "Falcon", "monkey", "Sunshine", "Tiger", "Orion",
            "bluebird", "Rocket", "Phoenix", "coffee", "Kestrel", "maple", "Zebra",
        ];
        let syms = ["!", "@", "#", "$", "%", "&", "*", "?", "_", "."];
        match self.below(4) {
            0 => format!("{}{}{}", self.pick(&words), self.dig(4), self.pick(&syms)),
            1 => format!(
                "{}{}{}{}",
                self.pick(&words),
                self.pick(&syms),
                self.pick(&words).to_lowercase(),
                self.dig(2)
            ),
            2 => {
                // generator-style
                let mut p = self.an(14);
                p.insert_str(5, self.pick(&syms));
                p
            }
            _ => format!("{}{}{}", self.an(6), self.pick(&syms), self.an(6)),
        }
    }
    fn jwt(&mut self) -> String {
        let header = b64url_encode(
            format!(
                r#"{{"alg":"{}","typ":"JWT"}}"#,
                self.pick(&["HS256", "RS256", "ES256"])
            )
            .as_bytes(),
        );
        let payload = b64url_encode(
            format!(
                r#"{{"sub":"{}","iat":{},"exp":{},"scope":"{}"}}"#,
                self.dig(7),
                1_700_000_000 + self.below(50_000_000),
                1_760_000_000 + self.below(50_000_000),
                self.pick(&["read write", "admin", "api", "openid profile"])
            )
            .as_bytes(),
        );
        format!("{header}.{payload}.{}", self.b64u(43))
    }
}

fn b64_encode(bytes: &[u8]) -> String {
    let a: Vec<char> = b64().chars().collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(a[(n >> 18) as usize & 63]);
        out.push(a[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            a[(n >> 6) as usize & 63]
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            a[n as usize & 63]
        } else {
            '='
        });
    }
    out
}

fn b64url_encode(bytes: &[u8]) -> String {
    b64_encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// PEM-ish body lines of 64 characters.
fn pem_body(g: &mut Gen, lines: usize) -> String {
    (0..lines).map(|_| g.b64(64)).collect::<Vec<_>>().join("\n")
}

struct Pos {
    cat: &'static str,
    text: String,
    secret: String,
}

struct Ben {
    cat: &'static str,
    text: String,
}

fn positives(seed: u64) -> Vec<Pos> {
    let mut g = Gen(seed);
    let mut v: Vec<Pos> = Vec::new();
    macro_rules! p {
        ($cat:expr, $secret:expr, $fmt:expr) => {{
            let secret: String = $secret;
            let text = $fmt.replace("{S}", &secret);
            v.push(Pos {
                cat: $cat,
                text,
                secret,
            });
        }};
    }
    for _ in 0..2 {
        // GitHub
        let s = format!("ghp_{}", g.an(36));
        p!(
            "github_classic_pat",
            s,
            "git clone https://{S}@github.com/acme/infra.git"
        );
        let s = format!("ghp_{}", g.an(36));
        p!("github_classic_pat", s, "export GITHUB_TOKEN={S}");
        let s = format!("ghp_{}", g.an(36));
        p!(
            "github_classic_pat",
            s,
            "hey can you try with my token {S} it has repo scope"
        );
        let s = format!("github_pat_{}_{}", g.an(22), g.an(59));
        p!("github_fine_grained", s, "      GH_TOKEN: {S}");
        let s = format!("github_pat_{}_{}", g.an(22), g.an(59));
        p!(
            "github_fine_grained",
            s,
            "origin\thttps://x-access-token:{S}@github.com/acme/api (fetch)"
        );
        let s = format!("{}_{}", g.pick(&["gho", "ghu", "ghs", "ghr"]), g.an(36));
        p!(
            "github_oauth_app",
            s,
            "{\"access_token\":\"{S}\",\"token_type\":\"bearer\",\"scope\":\"repo\"}"
        );
        let s = format!("{}_{}", g.pick(&["gho", "ghu", "ghs", "ghr"]), g.an(36));
        p!("github_oauth_app", s, "Authorization: token {S}");

        // GitLab
        let s = format!("glpat-{}", g.b64u(20));
        p!(
            "gitlab_pat",
            s,
            "git remote set-url origin https://oauth2:{S}@gitlab.com/group/proj.git"
        );
        let s = format!("glpat-{}", g.b64u(20));
        p!(
            "gitlab_pat",
            s,
            "curl --header \"PRIVATE-TOKEN: {S}\" https://gitlab.example.com/api/v4/projects"
        );
        let s = format!("glpat-{}", g.b64u(20));
        p!("gitlab_pat", s, "CI_JOB_TOKEN_OVERRIDE={S}");

        // AWS
        let s = format!("AKIA{}", g.uan(16));
        p!(
            "aws_access_key_id",
            s,
            "[default]\naws_access_key_id = {S}\nregion = us-east-1"
        );
        let s = format!("AKIA{}", g.uan(16));
        p!(
            "aws_access_key_id",
            s,
            "AWS_ACCESS_KEY_ID={S} aws s3 ls s3://acme-backups"
        );
        let s = g.b64(40).replace('+', "/");
        p!(
            "aws_secret_key",
            s,
            "[prod]\naws_access_key_id = AKIA{ID}\naws_secret_access_key = {S}"
                .replace("{ID}", &g.uan(16))
        );
        let s = g.b64(40);
        p!("aws_secret_key", s, "export AWS_SECRET_ACCESS_KEY=\"{S}\"");
        let s = g.b64(40);
        p!(
            "aws_secret_key",
            s,
            "provider \"aws\" {\n  region     = \"eu-west-1\"\n  secret_key = \"{S}\"\n}"
        );
        let s = format!("ASIA{}", g.uan(16));
        p!(
            "aws_session",
            s,
            "{\"AccessKeyId\": \"{S}\", \"Expiration\": \"2025-06-01T12:00:00Z\"}"
        );
        let s = format!("IQoJb3JpZ2luX2Vj{}", g.b64(300));
        p!("aws_session", s, "aws_session_token = {S}");

        // Slack
        let s = format!("xoxb-{}-{}-{}", g.dig(12), g.dig(13), g.an(24));
        p!("slack_token", s, "SLACK_BOT_TOKEN=\"{S}\"");
        let s = format!(
            "xoxp-{}-{}-{}-{}",
            g.dig(12),
            g.dig(12),
            g.dig(13),
            g.hex(32)
        );
        p!("slack_token", s, "here's the key: {S} (don't share)");
        let s = format!(
            "https://hooks.slack.com/services/T{}/B{}/{}",
            g.uan(8),
            g.uan(10),
            g.an(24)
        );
        p!(
            "slack_webhook",
            s.clone(),
            "curl -X POST -H 'Content-type: application/json' --data '{\"text\":\"deploy done\"}' {S}"
        );
        let s = format!(
            "https://hooks.slack.com/services/T{}/B{}/{}",
            g.uan(10),
            g.uan(11),
            g.an(24)
        );
        p!("slack_webhook", s, "alertmanager:\n  slack_api_url: '{S}'");

        // Discord / Telegram
        let s = format!(
            "https://discord.com/api/webhooks/{}/{}",
            g.dig(18),
            g.b64u(68)
        );
        p!("discord_webhook", s, "WEBHOOK_URL = \"{S}\"");
        // Discord bot tokens: base64 of the bot's snowflake id (starts M/N/O), a timestamp, an HMAC.
        let s = format!(
            "{}{}.{}.{}",
            g.pick(&["M", "N", "O"]),
            g.b64u(23),
            g.b64u(6),
            g.b64u(38)
        );
        p!("discord_bot_token", s, "client.run('{S}')");
        let s = format!("{}:AA{}", g.dig(10), g.b64u(33));
        p!("telegram_bot", s, "bot = telebot.TeleBot(\"{S}\")");
        let s = format!("{}:AA{}", g.dig(10), g.b64u(33));
        p!(
            "telegram_bot",
            s,
            "https://api.telegram.org/bot{S}/sendMessage?chat_id=-100123"
        );

        // Stripe
        let s = format!("sk_live_{}", g.an(99));
        p!("stripe", s, "stripe.api_key = \"{S}\"");
        let s = format!("sk_live_{}", g.an(24));
        p!(
            "stripe",
            s,
            "curl https://api.stripe.com/v1/charges -u {S}:"
        );
        let s = format!("rk_live_{}", g.an(24));
        p!("stripe", s, "STRIPE_RESTRICTED_KEY={S}");
        let s = format!("whsec_{}", g.an(32));
        p!("stripe", s, "STRIPE_WEBHOOK_SECRET={S}");

        // OpenAI / Anthropic / HF
        let s = format!("sk-proj-{}T3BlbkFJ{}", g.b64u(74), g.b64u(74));
        p!("openai", s, "client = OpenAI(api_key=\"{S}\")");
        let s = format!("sk-{}T3BlbkFJ{}", g.an(20), g.an(20));
        p!(
            "openai",
            s,
            "openai.error.AuthenticationError: Incorrect API key provided: {S}."
        );
        let s = format!("sk-ant-api03-{}AA", g.b64u(93));
        p!("anthropic", s, "ANTHROPIC_API_KEY={S}");
        let s = format!("sk-ant-api03-{}AA", g.b64u(93));
        p!(
            "anthropic",
            s,
            "{\"mcpServers\":{\"x\":{\"env\":{\"ANTHROPIC_API_KEY\":\"{S}\"}}}}"
        );
        let s = format!("hf_{}", g.of(&format!("{UP}{LO}"), 34));
        p!("huggingface", s, "!huggingface-cli login --token {S}");
        let s = format!("hf_{}", g.of(&format!("{UP}{LO}"), 34));
        p!("huggingface", s, "login(token=\"{S}\")");

        // Google
        let s = format!("AIza{}", g.b64u(35));
        p!(
            "google_api_key",
            s,
            "const firebaseConfig = { apiKey: \"{S}\", authDomain: \"acme.firebaseapp.com\" };"
        );
        let s = format!("AIza{}", g.b64u(35));
        p!(
            "google_api_key",
            s,
            "https://maps.googleapis.com/maps/api/geocode/json?address=Paris&key={S}"
        );
        let s = format!("GOCSPX-{}", g.b64u(28));
        p!(
            "oauth_client_secret",
            s,
            "{\"web\":{\"client_id\":\"1234-abc.apps.googleusercontent.com\",\"client_secret\":\"{S}\"}}"
        );
        let s = g.b64u(40);
        p!("oauth_client_secret", s, "OAUTH_CLIENT_SECRET={S}");
        let s = format!("ya29.{}", g.b64u(150));
        p!("google_oauth_token", s, "Authorization: Bearer {S}");

        // Private keys
        let body = pem_body(&mut g, 6);
        p!(
            "private_key_pem",
            body.clone(),
            "-----BEGIN RSA PRIVATE KEY-----\n{S}\n-----END RSA PRIVATE KEY-----"
        );
        let body = pem_body(&mut g, 5);
        p!(
            "private_key_pem",
            body.clone(),
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{S}\n-----END OPENSSH PRIVATE KEY-----"
        );
        let body = pem_body(&mut g, 3);
        p!(
            "private_key_pem",
            body.clone(),
            "-----BEGIN EC PRIVATE KEY-----\n{S}\n-----END EC PRIVATE KEY-----"
        );
        let body = pem_body(&mut g, 4);
        p!(
            "private_key_pem",
            body.clone(),
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{S}\n=Ab12\n-----END PGP PRIVATE KEY BLOCK-----"
        );
        let body = g.b64(64);
        let body2 = g.b64(40);
        let s = format!("{body}\\n{body2}");
        p!(
            "private_key_json",
            s,
            "{\"type\": \"service_account\", \"private_key_id\": \"abc\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{S}\\n-----END PRIVATE KEY-----\\n\"}"
        );
        // kubeconfig `client-key-data` is base64 of a whole PEM private key.
        let pem = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            pem_body(&mut g, 4)
        );
        let s = b64_encode(pem.as_bytes());
        p!(
            "private_key_b64_k8s",
            s,
            "users:\n- name: admin\n  user:\n    client-key-data: {S}"
        );

        // JWT
        let s = g.jwt();
        p!("jwt", s, "Authorization: Bearer {S}");
        let s = g.jwt();
        p!("jwt", s, "Cookie: session={S}; theme=dark");
        let s = g.jwt();
        p!(
            "jwt",
            s,
            "{\"access_token\": \"{S}\", \"expires_in\": 3600}"
        );
        let s = g.jwt();
        p!("jwt", s, "localStorage.setItem('token', '{S}')");

        // npm / PyPI / registries
        let s = format!("npm_{}", g.an(36));
        p!("npm_token", s, "//registry.npmjs.org/:_authToken={S}");
        let s = format!("npm_{}", g.an(36));
        p!("npm_token", s, "NPM_TOKEN={S} npm publish");
        let s = format!("pypi-AgEIcHlwaS5vcmc{}", g.b64u(150));
        p!(
            "pypi_token",
            s,
            "[pypi]\nusername = __token__\npassword = {S}"
        );
        let s = format!("pypi-AgEIcHlwaS5vcmc{}", g.b64u(150));
        p!("pypi_token", s, "twine upload -u __token__ -p {S} dist/*");
        let s = g.b64_bytes(24);
        p!(
            "docker_auth",
            s,
            "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"{S}\"}}}"
        );
        let s = format!("dckr_pat_{}", g.b64u(27));
        p!(
            "docker_auth",
            s,
            "echo {S} | docker login -u acmebot --password-stdin"
        );

        // Connection strings
        let pw = g.password();
        p!(
            "db_url",
            pw,
            "DATABASE_URL=postgres://app_user:{S}@db.internal:5432/app"
        );
        let pw = g.password();
        p!(
            "db_url",
            pw,
            "mongodb+srv://admin:{S}@cluster0.ab1cd.mongodb.net/test?retryWrites=true"
        );
        let pw = g.an(20);
        p!(
            "db_url",
            pw,
            "REDIS_URL=redis://default:{S}@redis-12345.c1.us-east-1.ec2.cloud.redislabs.com:12345"
        );
        let pw = g.password();
        p!("db_url", pw, "amqp://guest:{S}@rabbitmq:5672/%2F");
        let pw = g.password();
        p!(
            "db_url",
            pw,
            "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server failed\n[SQL: mysql+pymysql://root:{S}@10.0.0.12/shop]"
        );
        let pw = g.an(16);
        p!(
            "db_url",
            pw,
            "jdbc:postgresql://db:5432/app?user=app&password={S}"
        );
        let pw = g.b64(44);
        p!(
            "azure_conn_string",
            format!("{pw}=="),
            "DefaultEndpointsProtocol=https;AccountName=acmestore;AccountKey={S};EndpointSuffix=core.windows.net"
        );
        let s = format!("{}~{}", g.an(3), g.b64u(34));
        p!("azure_client_secret", s, "AZURE_CLIENT_SECRET={S}");
        let s = g.b64(43);
        p!(
            "azure_conn_string",
            format!("{s}="),
            "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={S}"
        );

        // Passwords in configs
        let pw = g.password();
        p!("password_env", pw, "DB_PASSWORD={S}");
        let pw = g.password();
        p!(
            "password_env",
            pw,
            "    environment:\n      POSTGRES_USER: app\n      POSTGRES_PASSWORD: {S}"
        );
        let pw = g.password();
        p!("password_env", pw, "MYSQL_ROOT_PASSWORD=\"{S}\"");
        let pw = g.password();
        p!("password_config", pw, "spring.datasource.password={S}");
        let pw = g.password();
        p!(
            "password_config",
            pw,
            "{\"username\": \"svc-backup\", \"password\": \"{S}\"}"
        );
        let pw = g.password();
        p!("password_config", pw, "ansible_become_password: {S}");
        let pw = g.password();
        p!("password_config", pw, "[client]\nuser=root\npassword={S}");
        let pw = g.password();
        p!(
            "password_cli",
            pw,
            "PGPASSWORD='{S}' psql -h db -U postgres"
        );
        let pw = g.password();
        p!("password_cli", pw, "mysql -u root -p{S} -h 127.0.0.1");
        let pw = g.password();
        p!("password_cli", pw, "sshpass -p '{S}' ssh deploy@10.1.2.3");
        let pw = g.password();
        p!(
            "netrc",
            pw,
            "machine api.heroku.com\n  login me\n  password {S}"
        );
        let pw = g.password();
        p!(
            "pypirc",
            pw,
            "[testpypi]\nrepository = https://test.pypi.org/legacy/\nusername = acme\npassword = {S}"
        );

        // HTTP auth
        let pw = g.password();
        p!(
            "curl_basic",
            pw,
            "curl -u admin:{S} https://jenkins.acme.io/api/json"
        );
        let up = format!("deploy:{}", g.password());
        let enc = b64_encode(up.as_bytes());
        p!("basic_auth_header", enc, "Authorization: Basic {S}");
        let s = g.an(32);
        p!(
            "api_key_header",
            s,
            "curl -H \"X-API-Key: {S}\" https://api.acme.io/v2/items"
        );
        let s = g.hex(40);
        p!(
            "bearer_opaque",
            s,
            "curl -H 'Authorization: Bearer {S}' https://api.vendor.com/me"
        );
        let s = g.b64u(43);
        p!(
            "bearer_opaque",
            s,
            "requests.get(url, headers={\"Authorization\": f\"Bearer {S}\"})"
        );

        // Generic keys in source / env
        let s = g.hex(32);
        p!("generic_api_key", s, "API_KEY={S}");
        let s = g.an(40);
        p!("generic_api_key", s, "const apiKey = '{S}';");
        let s = g.an(32);
        p!("generic_api_key", s, "token := \"{S}\"");
        let s = g.b64(44);
        p!("generic_api_key", s, "SECRET_KEY = '{S}'");
        let s = g.an(50);
        p!("generic_api_key", s, "config.secret_key_base = \"{S}\"");
        let s = g.hex(64);
        p!("generic_api_key", s, "JWT_SECRET={S}");
        let s = g.an(32);
        p!(
            "generic_api_key",
            s,
            "Out[3]: {'api_key': '{S}', 'region': 'us'}"
        );
        let s = g.an(32);
        p!("generic_api_key", s, "client_secret: {S}");

        // Vendors
        let s = format!("SK{}", g.hex(32));
        p!("twilio", s, "client = Client('{S}', 'secret')");
        let s = g.hex(32);
        p!("twilio", s, "TWILIO_AUTH_TOKEN={S}");
        let s = format!("SG.{}.{}", g.b64u(22), g.b64u(43));
        p!("sendgrid", s, "SENDGRID_API_KEY='{S}'");
        let s = format!("key-{}", g.hex(32));
        p!(
            "mailgun",
            s,
            "curl -s --user 'api:{S}' https://api.mailgun.net/v3/mg.acme.io/messages"
        );
        let s = g.hex(32);
        p!("datadog", s, "DD_API_KEY={S}");
        let s = format!("NRAK-{}", g.uan(27));
        p!("newrelic", s, "newrelic_api_key = \"{S}\"");
        let s = format!("ATATT3xFfGF0{}", g.b64u(170));
        p!("atlassian", s, "JIRA_API_TOKEN={S}");
        let s = format!("lin_api_{}", g.an(40));
        p!("linear", s, "LINEAR_API_KEY={S}");
        let s = format!("ntn_{}", g.an(46));
        p!("notion", s, "NOTION_TOKEN={S}");
        let s = format!("secret_{}", g.an(43));
        p!("notion", s, "const notion = new Client({ auth: \"{S}\" })");
        let s = format!("shpat_{}", g.hex(32));
        p!("shopify", s, "X-Shopify-Access-Token: {S}");
        let s = format!("dop_v1_{}", g.hex(64));
        p!("digitalocean", s, "doctl auth init -t {S}");
        let s = format!("hvs.{}", g.b64u(90));
        p!("vault", s, "VAULT_TOKEN={S} vault kv get secret/app");
        let s = format!("{}.atlasv1.{}", g.an(14), g.an(67));
        p!(
            "terraform_cloud",
            s,
            "credentials \"app.terraform.io\" {\n  token = \"{S}\"\n}"
        );
        let s = format!(
            "AGE-SECRET-KEY-1{}",
            g.of("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)
        );
        p!("age_key", s, "# created: 2024-01-01\n{S}");
        let s = g.uuid();
        p!("heroku_uuid_key", s, "HEROKU_API_KEY={S}");
        let s = format!("glsa_{}_{}", g.an(32), g.hex(8));
        p!("grafana", s, "GF_TOKEN={S}");
        let s = format!("pul-{}", g.hex(40));
        p!("pulumi", s, "PULUMI_ACCESS_TOKEN={S}");
        let s = format!("sq0atp-{}", g.b64u(22));
        p!("square", s, "SQUARE_ACCESS_TOKEN={S}");
        let s = format!("AC{}", g.hex(32));
        let tok = g.hex(32);
        p!(
            "twilio",
            tok.clone(),
            format!("curl -X GET 'https://api.twilio.com/2010-04-01/Accounts' -u {s}:{{S}}")
                .as_str()
        );

        // Kubernetes secret (base64 of a password)
        let pw = g.password();
        let enc = b64_encode(pw.as_bytes());
        p!(
            "k8s_secret_b64",
            enc,
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\ndata:\n  password: {S}"
        );
        let s = g.jwt();
        p!("k8s_token", s, "    token: {S}");

        // Webhook / URL embedded tokens
        let s = g.an(32);
        p!(
            "url_token",
            s,
            "https://api.acme.io/v1/export?access_token={S}&format=csv"
        );
        let s = g.hex(40);
        p!("url_token", s, "GET /hooks/ingest?api_key={S} HTTP/1.1");
        // Teams / Office 365 incoming webhook: the 32-hex segment after IncomingWebhook is the secret.
        let s = g.hex(32);
        let (t1, t2, t3) = (g.uuid(), g.uuid(), g.uuid());
        p!(
            "url_token",
            s,
            format!(
                "https://acme.webhook.office.com/webhookb2/{t1}@{t2}/IncomingWebhook/{{S}}/{t3}"
            )
            .as_str()
        );

        // Harder forms: other shells, languages, encodings and tools.
        let pw = g.password();
        p!(
            "password_cli",
            pw,
            "kubectl create secret generic db --from-literal=username=app --from-literal=password='{S}'"
        );
        let pw = g.password();
        p!(
            "password_cli",
            pw,
            "helm upgrade --install pg bitnami/postgresql --set auth.postgresPassword={S}"
        );
        let pw = g.password();
        p!(
            "password_cli",
            pw,
            "docker login -u acme -p {S} registry.acme.io"
        );
        let pw = g.password();
        p!(
            "password_cli",
            pw,
            "mongosh \"mongodb://db:27017\" --username admin --password {S}"
        );
        let pw = g.password();
        p!("password_cli", pw, "redis-cli -h cache -a {S} ping");
        let pw = g.password();
        p!(
            "password_cli",
            pw,
            "./manage.py createsuperuser --noinput  # DJANGO_SUPERUSER_PASSWORD={S}"
        );
        let s = g.an(32);
        p!("shell_windows", s, "$env:OPENAI_API_KEY = \"{S}\"");
        let s = g.an(32);
        p!("shell_windows", s, "set API_TOKEN={S}");
        let pw = g.password();
        p!("password_config", pw, "db_password = \"{S}\"");
        let pw = g.password();
        p!(
            "password_config",
            pw,
            "<dataSource>\n  <username>sa</username>\n  <password>{S}</password>\n</dataSource>"
        );
        let pw = g.password();
        p!(
            "password_config",
            pw,
            "db := sql.Open(\"mysql\", \"root:{S}@tcp(127.0.0.1:3306)/shop\")"
        );
        let pw = g.password();
        p!(
            "password_config",
            pw,
            "cfg := Config{User: \"svc\", Password: \"{S}\"}"
        );
        let pw = g.password();
        p!("password_config", pw, "PASSWORD=\"{S}\"");
        let pw = g.password();
        p!(
            "password_config",
            pw,
            "smtp:\n  host: smtp.mailgun.org\n  user: postmaster\n  pass: {S}"
        );
        let pw = g.password();
        p!(
            "password_config",
            pw,
            "{'user': 'etl', 'passwd': '{S}', 'host': 'warehouse'}"
        );
        let pw = g.password();
        let enc = pw
            .replace('!', "%21")
            .replace('@', "%40")
            .replace('#', "%23")
            .replace('$', "%24")
            .replace('&', "%26")
            .replace('?', "%3F");
        p!(
            "form_body",
            enc,
            "POST /login HTTP/1.1\nContent-Type: application/x-www-form-urlencoded\n\nusername=jdoe&password={S}&remember=1"
        );
        let s = g.an(40);
        p!(
            "form_body",
            s,
            "grant_type=client_credentials&client_id=svc-ingest&client_secret={S}"
        );
        let s = g.hex(40);
        p!("auth_scheme_other", s, "Authorization: Token {S}");
        let s = g.b64u(40);
        p!(
            "auth_scheme_other",
            s,
            "\"headers\": [{\"name\": \"Authorization\", \"value\": \"Bearer {S}\"}]"
        );
        let s = g.an(32);
        p!(
            "auth_scheme_other",
            s,
            "{'Authorization': 'Bearer {S}', 'Content-Type': 'application/json'}"
        );
        let s = g.lan(32);
        p!("session_cookie", s, "Cookie: csrftoken=abc; sessionid={S}");
        let s = g.b64u(60);
        p!(
            "session_cookie",
            s,
            "Set-Cookie: __Secure-next-auth.session-token={S}; Path=/; HttpOnly; Secure"
        );
        let pw = g.password();
        p!("git_credentials", pw, "https://jdoe:{S}@bitbucket.org");
        let s = format!("ghp_{}", g.an(36));
        p!(
            "git_credentials",
            s,
            "[credential]\n\thelper = store\n# ~/.git-credentials: https://jdoe:{S}@github.com"
        );
        let s = g.b64u(43);
        p!(
            "azure_sas",
            format!("{s}%3D"),
            "https://acme.blob.core.windows.net/backups/db.bak?sv=2022-11-02&ss=b&srt=o&sp=r&se=2025-01-01T00:00:00Z&sig={S}"
        );
        let body = pem_body(&mut g, 5);
        p!(
            "private_key_pem",
            body,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{S}\n-----END ENCRYPTED PRIVATE KEY-----"
        );
        let body = pem_body(&mut g, 4);
        p!(
            "private_key_pem",
            body,
            "PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nComment: deploy\nPrivate-Lines: 4\n{S}\nPrivate-MAC: 0a1b"
        );
        let body = pem_body(&mut g, 3);
        p!(
            "private_key_pem",
            body,
            "\"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\n\n{S}\n-----END RSA PRIVATE KEY-----\""
        );
        let s = g.an(32);
        p!(
            "chat_multiline",
            s,
            "ok here it is\n{S}\nplease delete after use"
        );
        let s = g.b64u(40);
        p!("chat_multiline", s, "the prod api key is `{S}`");
        let s = g.an(24);
        p!("chat_multiline", s, "pw for the staging admin: {S}");
        let s = format!("ghp_{}", g.an(36));
        p!(
            "github_classic_pat",
            s,
            "{\"message\":\"Bad credentials\",\"token\":\"{S}\"}"
        );
        let s = format!("AKIA{}", g.uan(16));
        let k = g.b64(40);
        p!(
            "aws_secret_key",
            k,
            format!("AKIA-style id {s} and its secret\n{{S}}").as_str()
        );
        let s = g.an(40);
        p!("yaml_secret", s, "secrets:\n  apiKey: {S}\n  region: eu");
        let s = g.an(40);
        p!("yaml_secret", s, "stringData:\n  token: \"{S}\"");
        let s = g.hex(64);
        p!("yaml_secret", s, "encryption_key: {S}");
        let s = g.b64_bytes(32);
        p!("yaml_secret", s, "  signing_secret: {S}");
        let pw = g.password();
        p!(
            "escaped_json",
            pw,
            "\"{\\\"db\\\":{\\\"password\\\":\\\"{S}\\\"}}\""
        );
        let s = g.an(36);
        p!("escaped_json", s, "{\"env\": \"API_KEY={S}\\nDEBUG=1\"}");

        // More vendors (prefix + body shapes as issued).
        let s = format!("xapp-1-A{}-{}-{}", g.uan(10), g.dig(13), g.hex(64));
        p!("slack_token", s, "SLACK_APP_TOKEN={S}");
        let s = format!("sk.eyJ1Ijoi{}.{}", g.b64u(60), g.b64u(22));
        p!("mapbox", s, "MAPBOX_SECRET_TOKEN={S}");
        let s = format!("PMAK-{}-{}", g.hex(24), g.hex(34));
        p!("postman", s, "postman_api_key: {S}");
        let s = format!("dapi{}", g.hex(32));
        p!(
            "databricks",
            s,
            "databricks configure --token  # token: {S}"
        );
        let s = format!("sntrys_{}", g.b64u(120));
        p!("sentry_auth", s, "SENTRY_AUTH_TOKEN={S}");
        let s = format!("figd_{}", g.b64u(40));
        p!("figma", s, "X-Figma-Token: {S}");
        let s = format!("ATBB{}", g.an(32));
        p!(
            "bitbucket",
            s,
            "git clone https://jdoe:{S}@bitbucket.org/acme/app.git"
        );
        let s = format!("glrt-{}", g.b64u(20));
        p!(
            "gitlab_pat",
            s,
            "gitlab-runner register --url https://gitlab.com --token {S}"
        );
        let s = format!("pscale_pw_{}", g.b64u(43));
        p!("planetscale", s, "DATABASE_PASSWORD={S}");
        let s = format!("sbp_{}", g.hex(40));
        p!("supabase", s, "supabase login --token {S}");
        let s = format!("nfp_{}", g.an(36));
        p!("netlify", s, "NETLIFY_AUTH_TOKEN={S}");
        let s = format!("{}-us{}", g.hex(32), 1 + g.below(20));
        p!("mailchimp", s, "MAILCHIMP_API_KEY={S}");
        let s = format!("pat{}.{}", g.an(14), g.hex(64));
        p!("airtable", s, "base = Airtable('appXYZ', api_key='{S}')");
        let s = format!("AKCp8{}", g.an(68));
        p!(
            "artifactory",
            s,
            "curl -H \"X-JFrog-Art-Api: {S}\" https://acme.jfrog.io/artifactory/api/repositories"
        );
        let s = format!("00{}", g.b64u(40));
        p!("okta", s, "Authorization: SSWS {S}");
        let s = format!("dp.st.prd.{}", g.an(43));
        p!("doppler", s, "DOPPLER_TOKEN={S}");
        let s = g.b64u(40);
        p!("cloudflare", s, "CLOUDFLARE_API_TOKEN={S}");
        let s = format!("AAAA{}:APA91b{}", g.b64u(7), g.b64u(134));
        p!("firebase_fcm", s, "headers = {'Authorization': 'key={S}'}");
        // Crypto wallets
        let s = format!("0x{}", g.hex(64));
        p!("wallet_key", s, "PRIVATE_KEY={S}");
        let s = g.hex(64);
        p!(
            "wallet_key",
            s,
            "const wallet = new ethers.Wallet(\"{S}\");"
        );
        let words = [
            "abandon", "ladder", "orbit", "velvet", "canyon", "frost", "pulse", "empty", "silver",
            "marble", "tunnel", "bridge", "copper", "garden", "hazard", "ivory",
        ];
        let m: Vec<&str> = (0..12).map(|_| g.pick(&words)).collect();
        let s = m.join(" ");
        p!("wallet_mnemonic", s, "MNEMONIC=\"{S}\"");
    }
    v
}

fn benign(seed: u64) -> Vec<Ben> {
    let mut g = Gen(seed);
    let mut v: Vec<Ben> = Vec::new();
    macro_rules! b {
        ($cat:expr, $text:expr) => {{
            let text: String = $text;
            v.push(Ben { cat: $cat, text });
        }};
    }
    for i in 0..5 {
        // Fixed lines (no random part) are pushed once.
        macro_rules! b1 {
            ($cat:expr, $text:expr) => {{
                if i == 0 {
                    b!($cat, $text);
                }
            }};
        }
        // Hashes / digests
        b!(
            "git_sha",
            format!(
                "commit {}\nAuthor: Dev <dev>\nDate:   Mon Jan 8 10:00:00 2024\n\n    fix flaky test",
                g.hex(40)
            )
        );
        b!(
            "git_sha",
            format!(
                "{} Merge pull request #{} from acme/feature-x",
                g.hex(7),
                g.dig(4)
            )
        );
        b!("git_sha", format!("HEAD is now at {} bump deps", g.hex(7)));
        b!(
            "git_sha",
            format!("   {}..{}  main -> main", g.hex(7), g.hex(7))
        );
        b!(
            "git_sha",
            format!("uses: actions/checkout@{} # v4.1.1", g.hex(40))
        );
        b!(
            "git_sha",
            format!("https://github.com/acme/api/commit/{}", g.hex(40))
        );
        b!(
            "sha256",
            format!("{}  node-v20.11.0-linux-x64.tar.xz", g.hex(64))
        );
        b!("sha256", format!("checksum = \"{}\"", g.hex(64)));
        b!(
            "sha256",
            format!("pip install requests==2.31.0 --hash=sha256:{}", g.hex(64))
        );
        b!("sha256", format!("    sha256 \"{}\"", g.hex(64)));
        b!("sha256", format!("SHA256 (release.zip) = {}", g.hex(64)));
        b!("md5_sha1", format!("md5sum: {}  image.iso", g.hex(32)));
        b!("md5_sha1", format!("ETag: \"{}\"", g.hex(32)));
        b!("md5_sha1", format!("\"_shasum\": \"{}\"", g.hex(40)));
        b!(
            "docker_digest",
            format!("image: ghcr.io/acme/api@sha256:{}", g.hex(64))
        );
        b!(
            "docker_digest",
            format!(
                "Digest: sha256:{}\nStatus: Downloaded newer image for nginx:latest",
                g.hex(64)
            )
        );
        b!("docker_digest", format!("{}: Pull complete", g.hex(12)));
        b!(
            "docker_digest",
            format!("CONTAINER ID   IMAGE\n{}   redis:7", g.hex(12))
        );
        b!(
            "npm_integrity",
            format!("\"integrity\": \"sha512-{}==\"", g.b64(86))
        );
        b!(
            "npm_integrity",
            format!(
                "  resolved \"https://registry.yarnpkg.com/lodash/-/lodash-4.17.21.tgz#{}\"\n  integrity sha1-{}=",
                g.hex(40),
                g.b64(27)
            )
        );
        b!(
            "npm_integrity",
            format!(
                "<script src=\"https://cdn.jsdelivr.net/npm/bootstrap.min.js\" integrity=\"sha384-{}\" crossorigin=\"anonymous\"></script>",
                g.b64(64)
            )
        );
        b!(
            "go_sum",
            format!("golang.org/x/net v0.20.0 h1:{}=", g.b64(43))
        );
        b!(
            "go_sum",
            format!(
                "github.com/stretchr/testify v1.8.4/go.mod h1:{}=",
                g.b64(43)
            )
        );
        b!(
            "nix_store",
            format!(
                "/nix/store/{}-openssl-3.0.12/lib",
                g.of("0123456789abcdfghijklmnpqrsvwxyz", 32)
            )
        );

        // IDs
        b!(
            "uuid",
            format!(
                "{{\"id\": \"{}\", \"status\": \"active\", \"created_at\": \"2024-03-01T10:00:00Z\"}}",
                g.uuid()
            )
        );
        b!("uuid", format!("x-request-id: {}", g.uuid()));
        b!("uuid", format!("GET /api/v1/orders/{} 200 12ms", g.uuid()));
        b!("uuid", format!("subscription_id = \"{}\"", g.uuid()));
        b!(
            "ulid",
            format!(
                "{{\"event_id\":\"01{}\",\"kind\":\"call\"}}",
                g.of("0123456789ABCDEFGHJKMNPQRSTVWXYZ", 24)
            )
        );
        b!(
            "ulid",
            format!(
                "trace: 01{} span ok",
                g.of("0123456789ABCDEFGHJKMNPQRSTVWXYZ", 24)
            )
        );
        b!(
            "trace_id",
            format!("traceparent: 00-{}-{}-01", g.hex(32), g.hex(16))
        );
        b!(
            "trace_id",
            format!("X-Amzn-Trace-Id: Root=1-{}-{}", g.hex(8), g.hex(24))
        );
        b!("trace_id", format!("cf-ray: {}-FRA", g.hex(16)));
        b!(
            "random_url_id",
            format!("https://www.youtube.com/watch?v={}", g.b64u(11))
        );
        b!(
            "random_url_id",
            format!("https://docs.google.com/document/d/{}/edit", g.b64u(44))
        );
        b!(
            "random_url_id",
            format!(
                "https://acme-assets.s3.amazonaws.com/uploads/{}/{}.png",
                g.hex(24),
                g.lan(16)
            )
        );
        b!("random_url_id", format!("https://imgur.com/a/{}", g.an(7)));
        b!(
            "random_url_id",
            format!("https://app.acme.io/invite/{}", g.lan(10))
        );
        b!(
            "random_url_id",
            format!("https://gist.github.com/octocat/{}", g.hex(32))
        );
        b!(
            "k8s_names",
            format!("pod/web-{}-{} 1/1 Running 0 3d", g.lan(10), g.lan(5))
        );
        b!(
            "k8s_names",
            format!("replicaset.apps/api-{}   3   3   3   12d", g.lan(10))
        );
        b!(
            "k8s_names",
            format!("uid: {}\nresourceVersion: \"{}\"", g.uuid(), g.dig(8))
        );
        b!(
            "aws_ids",
            format!("arn:aws:iam::{}:role/ci-deploy", g.dig(12))
        );
        b!("aws_ids", format!("i-{} running t3.micro", g.hex(17)));
        b!(
            "aws_ids",
            format!("sg-{} vpc-{} subnet-{}", g.hex(17), g.hex(17), g.hex(17))
        );
        b!("aws_ids", format!("RequestId: {}", g.uuid()));
        b!(
            "slack_ids",
            format!(
                "{{\"channel\":\"C{}\",\"ts\":\"{}.{}\",\"user\":\"U{}\"}}",
                g.uan(10),
                g.dig(10),
                g.dig(6),
                g.uan(10)
            )
        );
        b!(
            "misc_ids",
            format!(
                "Build #{} finished: artifact build-{}.tar.gz",
                g.dig(5),
                g.hex(12)
            )
        );
        b!(
            "misc_ids",
            format!("main.{}.js  142 KiB  [emitted] [immutable]", g.hex(20))
        );
        b!(
            "misc_ids",
            format!(
                "<link rel=\"stylesheet\" href=\"/static/css/app.{}.css\">",
                g.hex(8)
            )
        );
        b!("misc_ids", format!("bitcoin tx {}", g.hex(64)));
        b!(
            "misc_ids",
            format!("ipfs://b{}", g.of("abcdefghijklmnopqrstuvwxyz234567", 58))
        );
        b!(
            "misc_ids",
            format!("stripe charge id ch_{} amount 2000", g.an(24))
        );
        b!(
            "misc_ids",
            format!("{{\"object\":\"customer\",\"id\":\"cus_{}\"}}", g.an(14))
        );
        b!(
            "misc_ids",
            format!("pi_{}_secret_{}", g.an(24), g.an(25)).replace("_secret_", "_ref_")
        );

        // Public keys, certs, public-by-design keys
        b!(
            "public_key",
            format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} dev@laptop",
                g.b64(43)
            )
        );
        b!(
            "public_key",
            format!(
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ{} ci@runner",
                g.b64(300)
            )
        );
        b!(
            "public_key",
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
                pem_body(&mut g, 4)
            )
        );
        b!(
            "public_key",
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----",
                pem_body(&mut g, 8)
            )
        );
        b!(
            "public_key",
            format!(
                "github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBB{}=",
                g.b64(107)
            )
        );
        b!(
            "public_key",
            format!(
                "{{\"keys\":[{{\"kty\":\"RSA\",\"kid\":\"{}\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"{}\",\"e\":\"AQAB\"}}]}}",
                g.b64u(43),
                g.b64u(342)
            )
        );
        b!(
            "public_key",
            format!(
                "gpg: key {}: public key \"Release Signing\" imported",
                g.of("0123456789ABCDEF", 16)
            )
        );
        b!(
            "public_key",
            format!(
                "Primary key fingerprint: {} {} {} {} {}",
                g.of("0123456789ABCDEF", 4),
                g.of("0123456789ABCDEF", 4),
                g.of("0123456789ABCDEF", 4),
                g.of("0123456789ABCDEF", 4),
                g.of("0123456789ABCDEF", 4)
            )
        );
        b!(
            "public_key",
            format!("age1{}", g.of("qpzry9x8gf2tvdw0s3jn54khce6mua7l", 58))
        );
        b!(
            "public_by_design",
            format!("const stripe = Stripe('pk_live_{}');", g.an(24))
        );
        b!(
            "public_by_design",
            format!("NEXT_PUBLIC_STRIPE_PUBLISHABLE_KEY=pk_test_{}", g.an(24))
        );
        b!(
            "public_by_design",
            format!(
                "client_id=\"{}-{}.apps.googleusercontent.com\"",
                g.dig(12),
                g.lan(32)
            )
        );

        // Base64 data
        b!(
            "base64_data",
            format!(
                "<img src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA{}\">",
                g.b64(200)
            )
        );
        b!(
            "base64_data",
            format!(
                "background: url(data:image/svg+xml;base64,PHN2ZyB4bWxucz0i{});",
                g.b64(120)
            )
        );
        b!(
            "base64_data",
            format!(
                "\"image/png\": \"iVBORw0KGgoAAAANSUhEUgAAAoAAAAHgCAYAAAA{}\"",
                g.b64(400)
            )
        );
        b!(
            "base64_data",
            format!(
                "kind: ConfigMap\nbinaryData:\n  logo.png: {}",
                b64_encode(format!("PNG{}", g.an(60)).as_bytes())
            )
        );
        b!(
            "base64_data",
            format!("Content-Transfer-Encoding: base64\n\n{}", g.b64(76))
        );
        b!(
            "base64_data",
            b64_encode(
                format!(
                    "Hello, this is just an ordinary message number {}.",
                    g.dig(3)
                )
                .as_bytes()
            )
        );

        // JWT-looking but public
        b!(
            "jwt_public",
            format!(
                "{{\"alg\":\"RS256\",\"kid\":\"{}\",\"typ\":\"JWT\"}}",
                g.hex(40)
            )
        );
        b!(
            "jwt_public",
            format!(
                "JWT header decoded: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 means alg HS256 typ JWT (request {})",
                g.hex(8)
            )
        );

        // Code / minified
        b!(
            "code",
            format!(
                "function {}(e,t){{return e&&t?e.{}(t):void 0}}var {}=n(\"{}\");",
                g.of(LO, 2),
                g.of(LO, 3),
                g.of(LO, 1),
                g.dig(4)
            )
        );
        b!(
            "code",
            format!(
                "!function(e){{var t={{}};function n(r){{if(t[r])return t[r].exports}}}}({{{}:function(e,t,n){{\"use strict\"}}}})",
                g.dig(4)
            )
        );
        b!(
            "code",
            format!(
                "let token_type = TokenKind::Ident; // {}",
                g.pick(&["lexer", "parser", "scanner"])
            )
        );
        b1!("code", "def check_password(user, password):\n    return bcrypt.checkpw(password.encode(), user.password_hash)".into());
        b!(
            "code",
            format!(
                "if (!apiKey) throw new Error('API key is required (attempt {})');",
                g.dig(2)
            )
        );
        b!(
            "code",
            format!(
                "const password = process.env.DB_PASSWORD; // line {}",
                g.dig(3)
            )
        );
        b!(
            "code",
            format!(
                "password = os.environ[\"PGPASSWORD\"]  # {}",
                g.pick(&["ok", "todo", "prod"])
            )
        );
        b!(
            "code",
            format!("token: ${{{{ secrets.GITHUB_TOKEN }}}}  # job {}", g.dig(3))
        );
        b!(
            "code",
            format!(
                "aws_secret_access_key = var.aws_secret_key # module {}",
                g.lan(5)
            )
        );
        b!(
            "code",
            format!(
                "let secretKey = try keychain.get(\"secretKey\") // v{}",
                g.dig(1)
            )
        );
        b!(
            "code",
            format!("color: #{}; background: #{};", g.hex(6), g.hex(6))
        );
        b!(
            "code",
            format!(
                "#[serde(rename = \"access_token\")]\npub access_token: String, // {}",
                g.dig(2)
            )
        );
        b!(
            "code",
            format!("x-amz-date: 2024{}T120000Z", g.of("0123", 4))
        );

        // Prose
        b!(
            "prose",
            format!(
                "Please rotate your API keys every {} days and never commit them to git.",
                g.dig(2)
            )
        );
        b1!(
            "prose",
            "The password must be at least 12 characters and contain a digit.".into()
        );
        b!(
            "prose",
            format!(
                "I reset my password but the token still expires after {} minutes, any idea?",
                g.dig(2)
            )
        );
        b1!(
            "prose",
            "Error: invalid_grant - the refresh token has been revoked or expired.".into()
        );
        b!(
            "prose",
            format!("401 Unauthorized: bad credentials (request {})", g.hex(8))
        );
        b1!(
            "prose",
            "Set the secret key in your environment, not in settings.py.".into()
        );
        b!(
            "prose",
            format!(
                "My private key is in ~/.ssh/id_ed25519 and ssh-agent lists it ({} keys)",
                g.dig(1)
            )
        );
        b1!(
            "prose",
            "fatal: Authentication failed for 'https://github.com/acme/api.git/'".into()
        );
        b!(
            "prose",
            format!(
                "Token usage: prompt_tokens={} completion_tokens={} total_tokens={}",
                g.dig(3),
                g.dig(3),
                g.dig(4)
            )
        );
        b1!(
            "prose",
            "Passwords are hashed with argon2id; we never log the access token.".into()
        );

        // Placeholders (not secrets)
        b1!("placeholder", "OPENAI_API_KEY=YOUR_API_KEY".into());
        b1!("placeholder", "export GITHUB_TOKEN=<token>".into());
        b1!(
            "placeholder",
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE".into()
        );
        b1!(
            "placeholder",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()
        );
        b1!(
            "placeholder",
            "DATABASE_URL=postgres://user:password@localhost:5432/mydb".into()
        );
        b1!(
            "placeholder",
            "api_key: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".into()
        );
        b1!("placeholder", "\"password\": \"********\"".into());
        b1!("placeholder", "SLACK_TOKEN=xoxb-your-token-here".into());
        b1!("placeholder", "DB_PASSWORD=${DB_PASSWORD}".into());
        b1!("placeholder", "POSTGRES_PASSWORD: changeme".into());
        b1!(
            "placeholder",
            "Authorization: Bearer <YOUR_ACCESS_TOKEN>".into()
        );
        b1!(
            "placeholder",
            "password: \"{{ vault_db_password }}\"".into()
        );
        b1!("placeholder", "STRIPE_SECRET_KEY=sk_test_...".into());
        b1!("placeholder", "secret_key = \"REPLACE_ME\"".into());
        b1!(
            "placeholder",
            "curl -u username:password https://api.example.com".into()
        );
        b1!("placeholder", "password=\"\"".into());
        b1!("placeholder", "token: null".into());
        b1!("placeholder", "API_KEY=your-api-key-goes-here".into());
        b1!(
            "placeholder",
            "ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX".into()
        );
        b1!("placeholder", "password: [REDACTED]".into());

        // Misc numeric / log lines
        b!(
            "log_line",
            format!(
                "2024-05-{:02}T13:{:02}:07.{}Z INFO request completed status=200 duration_ms={}",
                1 + g.below(28),
                g.below(60),
                g.dig(3),
                g.dig(3)
            )
        );
        b!(
            "log_line",
            format!("[{}] GET /healthz 200 - 0.{}ms", g.hex(8), g.dig(3))
        );
        b!(
            "log_line",
            format!("Downloaded serde v1.0.{} ({} KB)", g.dig(3), g.dig(3))
        );
        b!(
            "log_line",
            format!(
                "test result: ok. {} passed; 0 failed; 0 ignored; finished in 3.{}s",
                g.dig(3),
                g.dig(2)
            )
        );
        b!(
            "log_line",
            format!(
                "session_id={} user_id={} action=login result=success",
                g.hex(16),
                g.dig(6)
            )
        );
        b!(
            "log_line",
            format!("csrftoken={}", g.pick(&["", "deleted", "null"]))
        );

        // Harder benign: secret-ish names with non-secret values, random values in non-secret slots.
        b!(
            "keyword_nonsecret",
            format!("password_min_length = {}", 8 + g.below(8))
        );
        b!(
            "keyword_nonsecret",
            format!(
                "SECRET_KEY_FILE=/run/secrets/{}",
                g.pick(&["django_key", "app_key", "jwt"])
            )
        );
        b!("keyword_nonsecret", format!("token_count: {}", g.dig(5)));
        b!(
            "keyword_nonsecret",
            format!("max_tokens={} temperature=0.{}", g.dig(4), g.dig(1))
        );
        b!(
            "keyword_nonsecret",
            format!(
                "\"password_changed_at\": \"2024-0{}-1{}T08:00:00Z\"",
                1 + g.below(9),
                g.below(10)
            )
        );
        b!("keyword_nonsecret", format!("api_key_id: {}", g.uuid()));
        b!(
            "keyword_nonsecret",
            format!("\"token_type\": \"Bearer\", \"expires_in\": {}", g.dig(4))
        );
        b!(
            "keyword_nonsecret",
            format!("Idempotency-Key: {}", g.uuid())
        );
        b!(
            "keyword_nonsecret",
            format!("cache-key: v1-deps-{}", g.hex(64))
        );
        b!(
            "keyword_nonsecret",
            format!("key: ${{{{ runner.os }}}}-cargo-{}", g.hex(64))
        );
        b!(
            "keyword_nonsecret",
            format!("X-Hub-Signature-256: sha256={}", g.hex(64))
        );
        b!(
            "keyword_nonsecret",
            format!("\"next_cursor\": \"{}\"", g.b64u(40))
        );
        b!(
            "keyword_nonsecret",
            format!("\"publicKey\": \"{}\"", g.b64(44))
        );
        b!(
            "keyword_nonsecret",
            format!("GITHUB_CLIENT_ID=Iv1.{}", g.hex(16))
        );
        b!(
            "keyword_nonsecret",
            format!("redis key user:{}:session_count", g.dig(6))
        );
        b!(
            "keyword_nonsecret",
            format!(
                "password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  {}",
                g.hex(64)
            )
        );
        b!(
            "keyword_nonsecret",
            format!(
                "Access key last used: 2024-0{}-0{} (age {} days)",
                1 + g.below(9),
                1 + g.below(9),
                g.dig(2)
            )
        );
        b!(
            "keyword_nonsecret",
            format!("--password-file /etc/restic/pw-{}.txt", g.lan(4))
        );
        b!(
            "keyword_nonsecret",
            format!(
                "tokenizer = AutoTokenizer.from_pretrained(\"bert-base-uncased\")  # {}",
                g.dig(2)
            )
        );
        b!(
            "keyword_nonsecret",
            format!(
                "\"password\": {{\"type\": \"string\", \"minLength\": {}, \"format\": \"password\"}}",
                8 + g.below(8)
            )
        );
        b!(
            "random_nonsecret",
            format!("\"etag\": \"W/\\\"{}\\\"\"", g.hex(40))
        );
        b!("random_nonsecret", format!("\"hash\": \"{}\"", g.hex(64)));
        b!(
            "random_nonsecret",
            format!("\"object_key\": \"{}/{}\"", g.lan(20), g.b64u(32))
        );
        b!("random_nonsecret", format!("Nonce: {}", g.b64(24)));
        b!("random_nonsecret", format!("id: \"{}\"", g.an(20)));
        b!(
            "random_nonsecret",
            format!(
                "version: \"{}.{}.{}-rc.{}+{}\"",
                g.below(9),
                g.below(20),
                g.below(20),
                g.below(9),
                g.hex(7)
            )
        );
        b!(
            "random_nonsecret",
            format!("\"request_id\": \"req_{}\"", g.an(24))
        );
        b!(
            "random_nonsecret",
            format!("uploaded file {}.pdf ({} bytes)", g.an(22), g.dig(6))
        );
        b!(
            "random_nonsecret",
            format!("\"msg_id\": \"{}\"", g.b64u(22))
        );
        b!(
            "random_nonsecret",
            format!("Location: https://acme.io/share/{}", g.b64u(22))
        );

        b!(
            "crypto_public",
            format!("Transfer to 0x{} confirmed", g.hex(40))
        );
        b!(
            "crypto_public",
            format!("https://etherscan.io/tx/0x{}", g.hex(64))
        );
        b!(
            "crypto_public",
            format!(
                "\"blockHash\": \"0x{}\", \"blockNumber\": \"0x{}\"",
                g.hex(64),
                g.hex(7)
            )
        );
        b!(
            "crypto_public",
            format!("bc1q{}", g.of("qpzry9x8gf2tvdw0s3jn54khce6mua7l", 38))
        );
        b!(
            "public_key",
            format!("256 SHA256:{} deploy@ci (ED25519)", g.b64(43))
        );
        b!(
            "public_key",
            format!("Thumbprint: {}", g.of("0123456789ABCDEF", 40))
        );
        b!(
            "misc_ids",
            format!(
                "\"installation_id\": {}, \"app_id\": {}",
                g.dig(8),
                g.dig(6)
            )
        );
        b!(
            "misc_ids",
            format!(
                "Successfully built {}\nSuccessfully tagged api:latest",
                g.hex(12)
            )
        );
        b!(
            "misc_ids",
            format!(
                "Run ID {} - https://github.com/acme/api/actions/runs/{}",
                g.dig(10),
                g.dig(10)
            )
        );
        b!("misc_ids", format!("/api/v2/files/{}?download=1", g.an(26)));
    }
    v
}

const POS_SEED: u64 = 0x005E_C2E7_0001;
const BEN_SEED: u64 = 0xBE_1167_0002;

/// Recall and false-positive rate of the same templates under other seeds: how much the figures
/// owe to the particular bodies drawn (passwords above all).
fn sweep(policy: &Policy) {
    println!("\n-- other seeds (same templates) --");
    for k in 1..=5u64 {
        let pos = positives(POS_SEED + 1000 * k);
        let found = pos
            .iter()
            .filter(|p| !leaks(&policy.protect_text(&p.text), &p.secret))
            .count();
        let ben = benign(BEN_SEED + 1000 * k);
        let fps = ben
            .iter()
            .filter(|b| {
                policy.protect_text(&b.text) != b.text
                    || policy.scan_text(&b.text).contains(&Class::Secret)
            })
            .count();
        println!(
            "  seed +{k}: recall {found}/{} = {:.1}%, false positives {fps}/{} = {:.2}%",
            pos.len(),
            100.0 * found as f64 / pos.len() as f64,
            ben.len(),
            100.0 * fps as f64 / ben.len() as f64
        );
    }
}

fn policy() -> std::sync::Arc<Policy> {
    Config::parse(Path::new("/etc/mcp/proxy.toml"), "")
        .unwrap()
        .policy
}

/// Whether `out` still holds 8 consecutive characters of `secret` (or all of it, if shorter).
fn leaks(out: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 8 {
        return out.contains(secret);
    }
    chars
        .windows(8)
        .any(|w| out.contains(&w.iter().collect::<String>()))
}

fn short(s: &str) -> String {
    let one_line = s.replace('\n', "\\n");
    if one_line.chars().count() > 140 {
        format!("{}…", one_line.chars().take(140).collect::<String>())
    } else {
        one_line
    }
}

#[test]
fn held_out_secret_corpus() {
    let policy = policy();
    let pos = positives(POS_SEED);
    let ben = benign(BEN_SEED);

    let mut per_cat: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    for p in &pos {
        assert!(p.text.contains(&p.secret), "{}: secret not in text", p.cat);
        let out = policy.protect_text(&p.text);
        let found = !leaks(&out, &p.secret);
        let e = per_cat.entry(p.cat).or_default();
        e.1 += 1;
        if found {
            e.0 += 1;
        } else {
            let classes = policy.scan_text(&p.text);
            misses.push(format!(
                "[{}] {:?}\n      in:  {}\n      out: {}",
                p.cat,
                classes,
                short(&p.text),
                short(&out)
            ));
        }
    }

    let mut ben_cat: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut fps = Vec::new();
    for b in &ben {
        let out = policy.protect_text(&b.text);
        let classes = policy.scan_text(&b.text);
        let fp = out != b.text || classes.contains(&Class::Secret);
        let e = ben_cat.entry(b.cat).or_default();
        e.1 += 1;
        if fp {
            e.0 += 1;
            fps.push(format!(
                "[{}] {:?}\n      in:  {}\n      out: {}",
                b.cat,
                classes,
                short(&b.text),
                short(&out)
            ));
        }
    }

    let found: usize = per_cat.values().map(|c| c.0).sum();
    let recall = found as f64 / pos.len() as f64;
    let fp_rate = fps.len() as f64 / ben.len() as f64;

    println!("\n=== held-out secret corpus ===");
    println!(
        "positives: {} across {} categories; benign: {} across {} categories",
        pos.len(),
        per_cat.len(),
        ben.len(),
        ben_cat.len()
    );
    println!("RECALL: {}/{} = {:.1}%", found, pos.len(), 100.0 * recall);
    println!(
        "FALSE POSITIVES: {}/{} = {:.2}%",
        fps.len(),
        ben.len(),
        100.0 * fp_rate
    );
    println!("\n-- recall per category --");
    for (cat, (f, n)) in &per_cat {
        println!(
            "  {cat:<22} {f:>3}/{n:<3} {:>6.1}%",
            100.0 * *f as f64 / *n as f64
        );
    }
    println!("\n-- false positives per benign category --");
    for (cat, (f, n)) in &ben_cat {
        println!("  {cat:<22} {f:>3}/{n:<3}");
    }
    println!("\n-- misses ({}, first 40) --", misses.len());
    for m in misses.iter().take(40) {
        println!("  {m}");
    }
    println!("\n-- false positives ({}, first 40) --", fps.len());
    for f in fps.iter().take(40) {
        println!("  {f}");
    }

    sweep(&policy);

    assert!(pos.len() >= 200, "{} positives", pos.len());
    assert!(ben.len() >= 400, "{} benign", ben.len());
    assert!(
        recall >= 0.80,
        "recall {:.1}% under the 80% floor",
        100.0 * recall
    );
    assert!(
        fp_rate <= 0.03,
        "false positives {:.2}% over the 3% floor",
        100.0 * fp_rate
    );
}
