//! Who may use the gateway and what they may read: credentials and their roles, principals
//! kept apart, keys revoked by a reload, and the documents beside the MCP endpoints
//! (`/metrics`, `/healthz`, the RFC 9728 metadata). Each test pins a fault found by a hostile
//! pass.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::gateway::*;
use serde_json::Value;
use tokio_rustls::rustls;

/// `/metrics` and `/healthz` skipped the `Host` and `Origin` checks of the MCP endpoints: a
/// page served under a rebinding name (`Host: attacker.example`, resolving to 127.0.0.1)
/// could read the gateway's metrics. Now 403, as for `/mcp/…`; the gateway's own names pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_refuse_a_foreign_host_or_origin() {
    let gw = Gateway::start("");
    let addr = address(&gw);
    let get = |path: &str, extra: &str| -> String {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\n{extra}Connection: close\r\n\r\n").as_bytes())
            .unwrap();
        read_answer(&mut s, Duration::from_secs(10))
    };
    for path in ["/metrics", "/healthz"] {
        let foreign = get(path, "Host: attacker.example\r\n");
        assert!(foreign.starts_with("HTTP/1.1 403"), "{path}: {foreign}");
        let cross = get(
            path,
            &format!("Host: {addr}\r\nOrigin: http://attacker.example\r\n"),
        );
        assert!(cross.starts_with("HTTP/1.1 403"), "{path}: {cross}");
        let key = format!("Authorization: Bearer {ALICE_KEY}\r\n");
        let own = get(path, &format!("Host: {addr}\r\n{key}"));
        assert!(own.starts_with("HTTP/1.1 200"), "{path}: {own}");
    }
    // `/metrics` names every upstream and counts its calls: it takes the MCP endpoints'
    // credential (a hostile pass read it with none), unless made public.
    let own = format!("Host: {addr}\r\n");
    let bare = get("/metrics", &own);
    assert!(
        bare.starts_with("HTTP/1.1 401") && bare.contains("metrics_public"),
        "{bare}"
    );
    assert!(!bare.contains("mcp_gateway_"), "{bare}");
    let wrong = get(
        "/metrics",
        &format!("{own}Authorization: Bearer not-a-key\r\n"),
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let open = Gateway::start_with("metrics_public = true", "");
    let addr = address(&open);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let public = read_answer(&mut s, Duration::from_secs(10));
    assert!(
        public.starts_with("HTTP/1.1 200") && public.contains("mcp_gateway_"),
        "{public}"
    );
}

/// The RFC 9728 metadata is public, and a 404 for the names no upstream has listed the
/// configured ones to anyone (found by a hostile pass): every name an upstream could have
/// gets its document, and `/mcp/<name>` answers 401 alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_names_cannot_be_listed_without_a_credential() {
    let gw = Gateway::start("");
    let metadata = |name: &str| {
        let url = format!("{}/.well-known/oauth-protected-resource/mcp/{name}", gw.url);
        async move {
            let r = http().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (known, known_doc) = metadata("example").await;
    let (unknown, unknown_doc) = metadata("no-such-upstream").await;
    assert_eq!((known, unknown), (200, 200), "{known_doc} {unknown_doc}");
    let doc: Value = serde_json::from_str(&unknown_doc).unwrap();
    assert_eq!(doc["resource"], format!("{}/mcp/no-such-upstream", gw.url));
    assert_eq!(
        known_doc.replace("example", "no-such-upstream"),
        unknown_doc,
        "the two documents differ by the name only"
    );
    // What no upstream can be called is still a 404.
    let (status, _) = metadata("..").await;
    assert_eq!(status, 404);
    for name in ["example", "no-such-upstream"] {
        let (status, _, _) = post(&format!("{}/mcp/{name}", gw.url), None, None, "{}", &[]).await;
        assert_eq!(status, 401, "{name}");
    }
}

/// A JWT whose `sub` is an API key's user name is another principal: it cannot use that
/// user's session (or, sessionless, share its server). Before the fix the session was bound
/// to the name alone, so an identity provider's subject "alice" reached the API key user
/// alice's server state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_subject_named_like_an_api_key_user_cannot_use_that_users_session() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let keys = tempfile::tempdir().unwrap();
    let secret = "a-shared-secret-of-at-least-thirty-two-bytes";
    let secret_file = keys.path().join("jwt.secret");
    std::fs::write(&secret_file, secret).unwrap();
    let gw = Gateway::start(&format!(
        "[gateway.jwt]\nissuer = \"https://idp\"\naudience = \"https://gw\"\nalgorithms = [\"HS256\"]\nsecret_file = {:?}\n",
        secret_file.display().to_string()
    ));
    let url = gw.endpoint();
    let now = jsonwebtoken::get_current_timestamp();
    let token = encode(
        &Header::default(),
        &serde_json::json!({"sub": "alice", "iss": "https://idp", "aud": "https://gw", "exp": now + 300}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    // The token is good: it opens a session of its own.
    let mine = raw_session(&url, &token).await;
    let (status, _, body) = post(&url, Some(&token), Some(&mine), list, &[]).await;
    assert_eq!(status, 200, "{body}");
    // Each principal's session is "not found" to the other, whatever the names.
    let alice = raw_session(&url, ALICE_KEY).await;
    let (status, _, body) = post(&url, Some(&token), Some(&alice), list, &[]).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&mine), list, &[]).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&alice), list, &[]).await;
    assert_eq!(status, 200, "{body}");
    // The trail still names both by their user name, with the method that tells them apart.
    let methods: Vec<(String, String)> = gw
        .events()
        .iter()
        .filter(|e| e["result"] == "refused" && e["metadata"]["http"]["status_code"] == 404)
        .map(|e| {
            (
                e["user_id"].as_str().unwrap_or("").to_string(),
                e["metadata"]["auth_method"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert!(
        methods.contains(&("alice".into(), "jwt".into()))
            && methods.contains(&("alice".into(), "api_key".into())),
        "{methods:?}"
    );
}

/// Found by a hostile pass (F9): revoking a leaked API key needed a restart of the gateway,
/// which ends every session. Now a reload (SIGHUP or the file changing) puts the file's
/// credentials in force: the removed key is refused on its next request, even on the session
/// it opened, the other keys keep working, and the reload event says what changed by the
/// key's hash, never the user's name; a key added is recorded as possibly weakening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_the_config_is_refused_after_a_reload_without_a_restart() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let (status, headers, _) = post(&url, Some(BOB_KEY), None, INIT, &[]).await;
    assert_eq!(status, 200);
    let bobs = headers["mcp-session-id"].to_str().unwrap().to_string();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    assert_eq!(
        post(&url, Some(BOB_KEY), Some(&bobs), list, &[]).await.0,
        200
    );

    // Bob's key out, Carol's in; nothing else changes.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let bob_block = format!(
        "[[gateway.api_key]]\nuser_id = \"bob\"\nsha256 = \"{}\"\n",
        sha(BOB_KEY)
    );
    assert!(text.contains(&bob_block), "{text}");
    const CAROL_KEY: &str = "carol-key-00112233445566778899";
    let carol_block = format!(
        "[[gateway.api_key]]\nuser_id = \"carol\"\nsha256 = \"{}\"\n",
        sha(CAROL_KEY)
    );
    std::fs::write(&gw.config, text.replace(&bob_block, &carol_block)).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, _) = post(&url, Some(BOB_KEY), None, INIT, &[]).await;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob's removed key still accepted: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Refused on the session it opened too; Alice and the new key get in.
    assert_eq!(
        post(&url, Some(BOB_KEY), Some(&bobs), list, &[]).await.0,
        401
    );
    assert_eq!(post(&url, Some(ALICE_KEY), None, INIT, &[]).await.0, 200);
    assert_eq!(post(&url, Some(CAROL_KEY), None, INIT, &[]).await.0, 200);

    let events = gw.events();
    let reload = events
        .iter()
        .find(|e| e["action"] == "policy/reload")
        .unwrap_or_else(|| panic!("no reload event: {events:#?}"));
    assert_eq!(reload["event_type"], "permission_change", "{reload:#}");
    assert_eq!(reload["result"], "success");
    assert_eq!(reload["risk_level"], "high", "a key was added: {reload:#}");
    let changes: Vec<&str> = reload["metadata"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let short = |key: &str| sha(key)[..12].to_string();
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("gateway.api_key removed: 1") && c.contains(&short(BOB_KEY))),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("gateway.api_key added: 1") && c.contains(&short(CAROL_KEY))),
        "{changes:?}"
    );
    // Credentials reload, so the [gateway] table is not reported as "not applied".
    assert!(
        !changes.iter().any(|c| c.contains("not applied")),
        "{changes:?}"
    );
    assert!(!reload.to_string().contains("bob"), "{reload:#}");
    gw.stop();
}

/// The roles a credential carries (`[[gateway.api_key]] roles`, a JWT's `roles_claim`, a
/// client certificate's `roles`) are the caller's roles for `deny_roles` and `allow_roles`.
/// Found by a hostile pass: only `[risk.roles]` counted, so a key with role `intern` called a
/// tool denied to interns, and an `ops` key was refused a tool allowed to `ops`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_roles_decide_deny_roles_and_allow_roles() {
    // Alice's key carries role "ops" (tests/common/gateway.rs); Bob's none; her second key
    // none either.
    let gw = Gateway::start(&format!(
        "[[gateway.api_key]]\nuser_id = \"alice\"\nsha256 = \"{}\"\n\
         [[risk.tool]]\nmatch = \"add\"\ndeny_roles = [\"ops\"]\n\
         [[risk.tool]]\nmatch = \"echo\"\nallow_roles = [\"ops\"]\n",
        sha("alice-second-key-without-roles")
    ));
    let url = gw.endpoint();
    let add = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#;
    let echo = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    let outcome = |body: &str| -> Value { messages(body).pop().unwrap() };
    for (key, add_allowed) in [(ALICE_KEY, false), (BOB_KEY, true)] {
        let session = raw_session(&url, key).await;
        let (status, _, body) = post(&url, Some(key), Some(&session), add, &[]).await;
        assert_eq!(status, 200, "{body}");
        let answer = outcome(&body);
        assert_eq!(
            answer["result"]["content"][0]["text"] == "3",
            add_allowed,
            "{body}"
        );
        let (_, _, body) = post(&url, Some(key), Some(&session), echo, &[]).await;
        let answer = outcome(&body);
        assert_eq!(
            answer["result"]["content"][0]["text"] == "hi",
            !add_allowed,
            "{body}"
        );
        // The listing hides what the caller may never call.
        let (_, _, body) = post(&url, Some(key), Some(&session), list, &[]).await;
        let names: Vec<String> = outcome(&body)["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names.contains(&"add".to_string()), add_allowed, "{names:?}");
        assert_eq!(
            names.contains(&"echo".to_string()),
            !add_allowed,
            "{names:?}"
        );
        // The same in the 2026 era, without a session.
        let (_, _, body) = post_2026(
            &url,
            key,
            &call_2026("6", "add", r#"{"a":1,"b":2}"#),
            Some("add"),
            &[],
        )
        .await;
        assert_eq!(
            outcome(&body)["result"]["content"][0]["text"] == "3",
            add_allowed,
            "{body}"
        );
    }
    // A listing asked with another key of the same user (same session) is hidden by that
    // key's roles, not by those of the key that opened the session.
    let session = raw_session(&url, ALICE_KEY).await;
    let (_, _, body) = post(
        &url,
        Some("alice-second-key-without-roles"),
        Some(&session),
        list,
        &[],
    )
    .await;
    let names = outcome(&body)["result"]["tools"].to_string();
    assert!(
        names.contains("\"add\"") && !names.contains("\"echo\""),
        "{names}"
    );
    // The trail says why, by the role.
    let blocked: Vec<String> = gw
        .events()
        .iter()
        .filter(|e| e["event_type"] == "tool_access" && e["metadata"]["decision"] == "block")
        .flat_map(|e| {
            e["metadata"]["risk_reasons"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    assert!(
        blocked
            .iter()
            .any(|r| r.contains("role \"ops\" is denied tools \"add\""))
            && blocked
                .iter()
                .any(|r| r.contains("user \"bob\" is not in the allow list of tools \"echo\"")),
        "{blocked:?}"
    );
}

/// mTLS: a certificate from the configured CA is a credential of its own; without one the
/// request needs another; one from another CA is refused in the handshake and recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_configured_ca_is_an_identity() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), server.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        server.signing_key.serialize_pem(),
    )
    .unwrap();
    // A CA, and a client certificate it issued.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_params = || {
        let mut p = rcgen::CertificateParams::new(vec!["build-agent".to_string()]).unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p
    };
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = client_params().signed_by(&client_key, &issuer).unwrap();
    let fingerprint: String = Sha256::digest(client.der())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let gw = Gateway::start(&format!(
        "[gateway.tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\nclient_ca = \"{d}/ca.pem\"\n\n[[gateway.client_cert]]\nuser_id = \"build-agent\"\nsha256 = \"{fingerprint}\"\n",
        d = dir.path().display()
    ));
    let port = gw.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    // No Authorization header: the certificate is the credential.
    let request = format!(
        "POST /mcp/example HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INIT}",
        INIT.len()
    );
    let server = server.cert.der();
    let response = tls_exchange(port, server, Some((&client, &client_key)), &request)
        .await
        .unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Without a certificate, the same request needs another credential.
    let response = tls_exchange(port, server, None, &request)
        .await
        .unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    // A certificate of another CA fails the handshake (helper-81 #7: an invalid access
    // attempt, PCI DSS 10.2.1.4, that was only logged): it is in the trail.
    let stranger_key = rcgen::KeyPair::generate().unwrap();
    let stranger = client_params().self_signed(&stranger_key).unwrap();
    let refused = tls_exchange(port, server, Some((&stranger, &stranger_key)), &request).await;
    assert!(
        refused.as_deref().is_none_or(str::is_empty),
        "a certificate of another CA was accepted: {refused:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = gw.events();
        if events.iter().any(|e| e["action"] == "tls_handshake") || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        events
            .iter()
            .any(|e| e["metadata"]["http"]["status_code"] == 401),
        "{events:#?}"
    );
    let tls = events
        .iter()
        .find(|e| e["action"] == "tls_handshake")
        .unwrap_or_else(|| panic!("no refusal of the foreign certificate: {events:#?}"));
    assert_eq!(tls["result"], "refused", "{tls:#}");
    assert_eq!(tls["user_id"], "unauthenticated", "{tls:#}");
    assert_eq!(
        tls["metadata"]["http"]["client_address"], "127.0.0.1",
        "{tls:#}"
    );
    assert!(
        tls["metadata"]["http"].get("status_code").is_none(),
        "{tls:#}"
    );
    let reason = tls["metadata"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("client certificate") && reason.contains("client_ca"),
        "{reason}"
    );
}

/// Sends `request` over TLS to the gateway on `port` (whose certificate is `server`), with
/// the client certificate `cert` if any; its answer as read until the connection closed
/// (empty if none), or `None` if the handshake or the write failed (TLS 1.3: a client learns
/// of a refused certificate at its first read).
async fn tls_exchange(
    port: u16,
    server: &rustls::pki_types::CertificateDer<'static>,
    cert: Option<(&rcgen::Certificate, &rcgen::KeyPair)>,
    request: &str,
) -> Option<String> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let tls = match cert {
        Some((cert, key)) => {
            let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
            builder
                .with_client_auth_cert(vec![cert.der().clone()], key)
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .ok()?;
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    // What was read counts even if the close was not clean (no TLS close_notify).
    let _ = stream.read_to_string(&mut response).await;
    Some(response)
}
