//! The example MCP server behind the demo config and the tests: an rmcp stdio server whose
//! tools exercise every path of the proxy, in both protocol eras (one binary serves both; the
//! first message decides).
//!
//! Tools: `echo`, `add`, `slow` (sends progress, honours cancellation), `fail` (`isError`),
//! `personal_data` (personal-looking data), `confirm` (needs input from the client: an
//! `elicitation/create` request in the 2025 era, an MRTR `input_required` round in 2026),
//! `big` (a result of N bytes), `crash` (exits the process mid-call) and `route` (an argument
//! marked `x-mcp-header`, SEP-2243).
use std::time::Duration;

use http_body_util::BodyExt;
use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler, ServiceExt,
    handler::server::{
        tool::{InputResponses, RequestState, ToolRouter},
        wrapper::Parameters,
    },
    model::{
        CallToolResponse, CallToolResult, ContentBlock, ElicitRequest, ElicitRequestParams,
        ElicitationAction, ElicitationSchema, Implementation, InputRequest, InputRequests,
        InputRequiredResult, ProgressNotificationParam, ProtocolVersion, RequestMetaObject,
        ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::stdio,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize, JsonSchema)]
struct EchoArgs {
    /// text to echo back
    text: String,
}
#[derive(Deserialize, JsonSchema)]
struct RouteArgs {
    /// where the call goes; mirrored into the `Mcp-Param-Region` header (2026-07-28, SEP-2243)
    #[schemars(extend("x-mcp-header" = "Region"))]
    region: String,
    /// text to echo back
    text: String,
}
#[derive(Deserialize, JsonSchema)]
struct AddArgs {
    a: f64,
    b: f64,
}
#[derive(Deserialize, JsonSchema)]
struct SlowArgs {
    /// total milliseconds to sleep
    ms: u64,
    /// number of progress steps (default 5)
    steps: Option<u32>,
}
#[derive(Deserialize, JsonSchema)]
struct BigArgs {
    /// size of the text to return, in bytes
    bytes: usize,
}
#[derive(Deserialize, JsonSchema)]
struct CrashArgs {
    /// milliseconds to wait before exiting
    after_ms: Option<u64>,
    /// the exit status
    status: Option<i32>,
}
#[derive(Deserialize, JsonSchema)]
struct ConfirmArgs {
    /// what the user is asked to confirm
    action: String,
}

#[derive(Clone)]
/// The example server: its tools are the routes of the proxy's tests.
pub struct Demo {
    tool_router: ToolRouter<Self>,
}

fn confirm_schema() -> ElicitationSchema {
    ElicitationSchema::builder()
        .required_bool("confirmed")
        .build()
        .expect("valid schema")
}

#[tool_router]
impl Demo {
    fn new() -> Self {
        let mut tool_router = Self::tool_router();
        // A server that changes a tool under its users' feet (a rug pull), for the pinning
        // tests: EXAMPLE_ECHO_DESCRIPTION replaces echo's description.
        if let (Ok(description), Some(echo)) = (
            std::env::var("EXAMPLE_ECHO_DESCRIPTION"),
            tool_router.map.get_mut("echo"),
        ) {
            echo.attr.description = Some(description.into());
        }
        Self { tool_router }
    }

    #[tool(
        description = "Echo the text argument",
        annotations(read_only_hint = true)
    )]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(
        description = "Echo the text for a region (its region argument travels in an HTTP header too)",
        annotations(read_only_hint = true)
    )]
    async fn route(&self, Parameters(RouteArgs { region, text }): Parameters<RouteArgs>) -> String {
        format!("{region}: {text}")
    }

    #[tool(
        description = "Add two numbers",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    /// Sleeps `ms` in `steps` steps, sending notifications/progress with the request's token.
    #[tool(
        description = "Sleep N ms, reporting progress",
        annotations(read_only_hint = true)
    )]
    async fn slow(
        &self,
        Parameters(SlowArgs { ms, steps }): Parameters<SlowArgs>,
        meta: RequestMetaObject, // request params._meta
        peer: Peer<RoleServer>,  // handle to the client
        ct: CancellationToken,   // cancelled on notifications/cancelled
    ) -> Result<CallToolResult, ErrorData> {
        let steps = steps.unwrap_or(5).max(1);
        let token = meta.get_progress_token(); // rmcp clients always send one
        for i in 1..=steps {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms / steps as u64)) => {}
                _ = ct.cancelled() => {
                    // On stderr, for the tests: the cancellation reached this process.
                    eprintln!("example-server: slow cancelled at step {i}/{steps}");
                    return Err(ErrorData::internal_error("cancelled", None));
                }
            }
            if let Some(token) = &token {
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), i as f64)
                            .with_total(steps as f64)
                            .with_message(format!("step {i}/{steps}")),
                    )
                    .await;
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "slept {ms}ms"
        ))]))
    }

    #[tool(description = "Always fails with isError: true")]
    async fn fail(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("something went wrong")])
    }

    #[tool(
        description = "Return fake personal data",
        annotations(read_only_hint = true)
    )]
    async fn personal_data(&self) -> Result<CallToolResult, ErrorData> {
        let data = serde_json::json!({
            "name": "Jane Q. Example",
            "email": "jane.example@example.com",
            "phone": "+1-555-0100"
        });
        Ok(CallToolResult::success(vec![ContentBlock::text(
            data.to_string(),
        )]))
    }

    /// With a progress token, one `notifications/progress` goes first: a gateway's answer
    /// stream then starts before the text (tests of large answers over SSE).
    #[tool(
        description = "Return a text of the given size",
        annotations(read_only_hint = true)
    )]
    async fn big(
        &self,
        Parameters(BigArgs { bytes }): Parameters<BigArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> String {
        if let Some(token) = meta.get_progress_token() {
            let _ = peer
                .notify_progress(ProgressNotificationParam::new(token, 0.0))
                .await;
        }
        "x".repeat(bytes)
    }

    #[tool(description = "Exit the server process in the middle of the call (for tests)")]
    async fn crash(
        &self,
        Parameters(CrashArgs { after_ms, status }): Parameters<CrashArgs>,
    ) -> String {
        tokio::time::sleep(Duration::from_millis(after_ms.unwrap_or(0))).await;
        std::process::exit(status.unwrap_or(3));
    }

    /// Needs user input. 2026-07-28 peers: MRTR (InputRequiredResult + retry with inputResponses).
    /// Older peers: server->client elicitation/create request on the peer.
    #[tool(
        description = "Ask the user to confirm an action",
        annotations(read_only_hint = false, destructive_hint = true)
    )]
    async fn confirm(
        &self,
        Parameters(ConfirmArgs { action }): Parameters<ConfirmArgs>,
        ctx: RequestContext<RoleServer>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
    ) -> Result<CallToolResponse, ErrorData> {
        // Per-request version: _meta["io.modelcontextprotocol/protocolVersion"] if present,
        // else the version negotiated by `initialize`.
        let version = ctx.protocol_version();
        let modern = version.is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let message = format!("Really {action}?");

        let accepted = if modern {
            match (state.as_deref(), responses) {
                // Round 1: ask the client for input, hand back opaque state.
                (None, _) => {
                    let mut reqs = InputRequests::new();
                    reqs.insert(
                        "confirm".into(),
                        InputRequest::Elicitation(ElicitRequest::new(
                            ElicitRequestParams::FormElicitationParams {
                                meta: None,
                                message,
                                requested_schema: confirm_schema(),
                            },
                        )),
                    );
                    return Ok(
                        InputRequiredResult::new(Some(reqs), Some("confirm-r1".into())).into(),
                    );
                }
                // Round 2: the client retried with inputResponses + echoed requestState.
                (Some("confirm-r1"), Some(responses)) => {
                    let r = responses.get("confirm").ok_or_else(|| {
                        ErrorData::invalid_params("missing inputResponses.confirm", None)
                    })?;
                    r["action"] == "accept" && r["content"]["confirmed"] == true
                }
                _ => return Err(ErrorData::invalid_params("bad requestState", None)),
            }
        } else {
            // Legacy era: a real server->client request. Errors on >= 2026-07-28.
            let result = ctx
                .peer
                .create_elicitation(ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message,
                    requested_schema: confirm_schema(),
                })
                .await
                .map_err(|e| ErrorData::internal_error(format!("elicitation failed: {e}"), None))?;
            result.action == ElicitationAction::Accept
                && result
                    .content
                    .as_ref()
                    .is_some_and(|c| c["confirmed"] == true)
        };
        let text = if accepted {
            format!("confirmed: {action}")
        } else {
            format!("declined: {action}")
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Demo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-audit-example-server", "0.1.0"))
            .with_instructions("example server of mcp-audit-proxy")
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, addr] = args.as_slice()
        && flag == "--http"
    {
        return serve_http(addr).await;
    }
    // Works for both eras: the server picks the lifecycle from the first message
    // (initialize => 2025 session; server/discover or a request with inline _meta => 2026).
    let service = Demo::new().serve(stdio()).await?;
    service.waiting().await?;
    Ok(())
}

/// `--http ADDR`: the same tools over rmcp's Streamable HTTP server at `http://ADDR/mcp`
/// (a remote upstream for the gateway's tests); prints `listening on http://HOST:PORT/mcp`
/// once bound (`ADDR` may use port 0).
async fn serve_http(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let service = StreamableHttpService::new(
        || Ok(Demo::new()),
        std::sync::Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            let handler =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    async move {
                        if req.uri().path() != "/mcp" {
                            let mut r = hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"not found"))
                                    .map_err(|never| match never {})
                                    .boxed(),
                            );
                            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                        Ok(service.handle(req).await)
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, handler)
                .await;
        });
    }
}
