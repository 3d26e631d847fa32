//! The demo: an rmcp client talks to the example server through the proxy, with the
//! repository's `proxy.toml` and its embedded store, in both protocol eras; then the audit
//! trail is printed.
//!
//! Run from the repository root: `cargo run --example demo`

use std::process::Command as StdCommand;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
    ElicitationAction, ErrorData, Implementation, ProtocolVersion,
};
use rmcp::service::RequestContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::json;
use tokio::process::Command;

/// A client that says yes when the server asks.
struct DemoClient(ClientConfig);

impl ClientHandler for DemoClient {
    fn get_info(&self) -> ClientConfig {
        self.0.clone()
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        println!("    (the server asked the user to confirm: answering yes)");
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"confirmed": true})))
    }
}

fn proxy() -> Command {
    let mut c = Command::new("cargo");
    c.args([
        "run",
        "--quiet",
        "--bin",
        "mcp-audit-proxy",
        "--",
        "stdio",
        "--config",
        "proxy.toml",
    ]);
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env("RUST_LOG", "warn");
    c
}

async fn session(modern: bool) -> Result<(), Box<dyn std::error::Error>> {
    let caps = ClientCapabilities::builder().enable_elicitation().build();
    let config = ClientConfig::new(caps, Implementation::new("mcp-audit-demo", "0.1.0"))
        .with_protocol_version(ProtocolVersion::V_2025_06_18);
    let transport = TokioChildProcess::new(proxy())?;
    let client = if modern {
        DemoClient(config)
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await?
    } else {
        DemoClient(config).serve(transport).await?
    };
    let info = client
        .peer_info()
        .map(|i| i.protocol_version.to_string())
        .unwrap_or_default();
    println!("\n== session with protocol {info}");
    // Listing tools lets the proxy see their annotations (read-only, destructive) for the risk level.
    let tools = client.list_tools(None).await?;
    println!("  {} tools listed", tools.tools.len());
    let calls = [
        ("echo", json!({"text": "hello through the proxy"})),
        ("add", json!({"a": 40, "b": 2})),
        ("personal_data", json!({})),
        ("fail", json!({})),
        ("slow", json!({"ms": 300, "steps": 3})),
        ("confirm", json!({"action": "delete the staging database"})),
        // The policy: a card number is tagged pci_dss, alerted and stored masked…
        ("echo", json!({"text": "pay with 4111 1111 1111 1111"})),
        // …and a shell command hidden in echo's text is blocked (the demo rule in proxy.toml).
        ("echo", json!({"text": "hello; rm -rf ~"})),
    ];
    for (tool, arguments) in calls {
        let params = CallToolRequestParams::new(tool)
            .with_arguments(arguments.as_object().cloned().unwrap_or_default());
        let result = match client.call_tool(params).await {
            Ok(result) => result,
            Err(e) => {
                println!("  {tool:<14} -> refused: {e}");
                continue;
            }
        };
        let text: Vec<String> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        let flag = if result.is_error == Some(true) {
            " (isError)"
        } else {
            ""
        };
        println!("  {tool:<14} -> {}{flag}", text.join(" "));
    }
    client.cancel().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("building the proxy and the example server…");
    let built = StdCommand::new("cargo")
        .args([
            "build",
            "--quiet",
            "--bin",
            "mcp-audit-proxy",
            "--example",
            "example-server",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !built.success() {
        return Err("cargo build failed".into());
    }
    session(false).await?;
    session(true).await?;

    println!("\n== the audit trail (mcp-audit-proxy events --config proxy.toml --limit 30)\n");
    let status = StdCommand::new("cargo")
        .args([
            "run",
            "--quiet",
            "--bin",
            "mcp-audit-proxy",
            "--",
            "events",
            "--config",
            "proxy.toml",
            "--limit",
            "30",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err("events failed".into());
    }
    println!("\nFull JSON: cargo run --quiet -- events --config proxy.toml --json --limit 2");
    Ok(())
}
