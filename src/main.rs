//! The binary's edge: parse the command line, load the config, start logging, run a mode,
//! map the outcome to an exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mcp_audit_proxy::cli::{
    AnalyzeCommand, Cli, Command, PolicyCommand, StoreCommand, ToolsCommand,
};
use mcp_audit_proxy::commands;
use mcp_audit_proxy::config::Config;
use mcp_audit_proxy::proxy::warden;
use mcp_audit_proxy::telemetry::{self, Logging, Output};

/// jemalloc, not glibc's malloc: the proxy's threads free what others allocated (events made
/// on the runtime thread are written and dropped by the audit writer), and glibc then takes
/// the owning arena's lock against the thread allocating from it. With jemalloc the wrapper
/// keeps 44–48% of direct throughput instead of 39–45% at 16 calls in flight, and adds
/// ~190 µs to the median instead of ~300 µs (BENCHMARKS.md, "jemalloc"). Large vectors are
/// grown by copying rather than `mremap`, so the analytics hold millions of rows in chunks
/// (`analytics::anomalies::Held`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Before anything opens a file: a closed fd 2 would be given to the next file opened.
    if !telemetry::keep_standard_fds_open() {
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    if matches!(cli.command, Command::Warden) {
        // No config, no logging thread: it only waits for the proxy to end.
        let code = warden::serve(std::io::stdin().lock());
        return ExitCode::from(code as u8);
    }
    // The proxy modes start a warden, which ends their servers if this process is killed.
    if matches!(cli.command, Command::Stdio(_) | Command::Gateway(_)) {
        warden::enable(std::env::current_exe());
    }
    let stdio = matches!(cli.command, Command::Stdio(_));
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let described = describe(&e);
            // Bounded: a last message must not keep the process alive when stderr is not read.
            let text = format!("mcp-audit-proxy: error: {described}\n");
            let text = String::from_utf8_lossy(&telemetry::printable(text.as_bytes())).into_owned();
            telemetry::print_to_stderr(text);
            if stdio && mcp_audit_proxy::proxy::fdio::client_unread() {
                answer_first_request(&described);
            }
            ExitCode::from(2)
        }
    }
}

/// How long a stdio wrapper that could not start waits for its client's first request.
const FIRST_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A stdio wrapper that could not start (a bad config, a server that cannot be started, a
/// store it cannot open) said so on stderr only, and MCP clients showed a bare "server
/// disconnected" (helper-90, low). Its client's first request, when one comes within
/// [`FIRST_REQUEST_WAIT`], is answered with the error: JSON-RPC -32603 "Internal error"
/// (JSON-RPC 2.0 section 5.1), the request's id as sent, the error's first line as the
/// message and the whole text as `data`. Nothing else is written: stdout carries only MCP.
fn answer_first_request(error: &str) {
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        method: Option<serde::de::IgnoredAny>,
    }
    let (tx, rx) = std::sync::mpsc::channel();
    // Detached: a client that never writes must not keep the process alive.
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let until = std::time::Instant::now() + FIRST_REQUEST_WAIT;
        // stdin may have been left non-blocking by the session that did not start.
        while std::time::Instant::now() < until {
            match std::io::stdin().lock().read_line(&mut line) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(line);
    });
    let Ok(line) = rx.recv_timeout(FIRST_REQUEST_WAIT) else {
        return;
    };
    let Ok(request) = serde_json::from_str::<Request<'_>>(&line) else {
        return;
    };
    let (Some(id), Some(_)) = (request.id, request.method) else {
        return;
    };
    if id.get() == "null" {
        return;
    }
    let first = error.lines().next().unwrap_or(error);
    let answer = serde_json::json!({
        "code": -32603,
        "message": format!("mcp-audit-proxy could not start: {first}"),
        "data": error,
    });
    let text = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{answer}}}\n",
        id.get()
    );
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Loads the config, starts logging (stdout carries nothing but MCP in stdio mode: logs go to
/// stderr, or to `log.file` there), runs the mode, and writes the queued log lines.
fn run(cli: Cli) -> anyhow::Result<i32> {
    // These run without a config: a key is made before any config names it, and an export or
    // a store is verified on a machine that has only the files and the public key.
    if let Some(result) = commands::trail::without_config(&cli.command)
        .or_else(|| commands::retention::without_config(&cli.command))
    {
        let logging = Logging::start(Output::Stderr)?;
        let result = result();
        logging.finish();
        return result;
    }
    let config = if reads_only(&cli.command) {
        Config::load_reading(cli.command.config())?
    } else {
        Config::load(cli.command.config())?
    };
    let output = match (&cli.command, &config.log.file) {
        (Command::Stdio(_), Some(path)) => {
            Output::File(telemetry::open_file(path, &config.source)?)
        }
        _ => Output::Stderr,
    };
    let to_file = matches!(output, Output::File(_));
    let reading = reads_only(&cli.command);
    let logging = Logging::start(output)?;
    let result = match dispatch(cli.command, &config) {
        // The reader of a command that only reads left (`analyze tools | head -1`): not a
        // failure, its output is read no more (as `head` and ripgrep take it). A command that
        // writes (import, erase, retention --apply) may have stopped half-way: its error
        // stands. The proxy modes keep their own handling of a client that leaves.
        Err(e) if reading && closed_output(&e) => Ok(0),
        result => result,
    };
    if let Err(e) = &result
        && to_file
    {
        tracing::error!(error = %describe(e), "stopped by an error");
    }
    logging.finish();
    result
}

/// Whether `e` comes from writing to an output whose reader has gone (EPIPE).
fn closed_output(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether `command` only reads the store: it runs with the public signing key when the
/// private one cannot be read ([`Config::load_reading`]). Those that write or sign (the proxy
/// modes, `import`, `erase`, `retention --apply`, a signed `export`, `tools accept`) need it.
fn reads_only(command: &Command) -> bool {
    match command {
        Command::Events(_)
        | Command::Reindex(_)
        | Command::Policy(_)
        | Command::Verify(_)
        | Command::Store(_)
        | Command::Alerts(_)
        | Command::Anomalies(_)
        | Command::Analyze(_)
        | Command::Compliance(_)
        | Command::Report(_) => true,
        Command::Export(args) => args.user.is_some(),
        Command::Retention(args) => !args.apply,
        _ => false,
    }
}

/// Standard output for a command: every control character in what the store holds escaped
/// (user and tool names are chosen by clients), so no escape sequence reaches the operator's
/// terminal ([`telemetry::printable`]; JSON stays valid JSON meaning the same); `exact` for
/// CSV, written as it is. Exports and report files (`--out`) never come here.
fn screen(exact: bool) -> Box<dyn std::io::Write> {
    let out = std::io::stdout().lock();
    if exact {
        Box::new(out)
    } else {
        Box::new(telemetry::Printable(out))
    }
}

fn dispatch(command: Command, config: &Config) -> anyhow::Result<i32> {
    match command {
        Command::Stdio(args) => Ok(commands::run_stdio(&args, config)?),
        // Taken before the config is read (`main`); here only for completeness.
        Command::Warden => Ok(warden::serve(std::io::stdin().lock())),
        Command::Gateway(_) => Ok(commands::run_gateway(config)?),
        Command::Events(args) => {
            let mut out = screen(args.csv);
            commands::events(&args, config, &mut out).context("events")?;
            Ok(0)
        }
        Command::Reindex(_) => {
            Ok(commands::reindex(config, &mut screen(false)).context("reindex")?)
        }
        Command::Policy(PolicyCommand::Test(args)) => {
            commands::policy_test(
                &args,
                config,
                &mut std::io::stdin().lock(),
                &mut screen(false),
            )
            .context("policy test")?;
            Ok(0)
        }
        Command::Verify(args) => Ok(commands::trail::verify(
            &args,
            Some(config),
            &mut screen(false),
        )?),
        Command::Export(args) => match &args.user {
            Some(user) => Ok(commands::privacy::export_user(
                &args,
                user,
                config,
                &mut std::io::stdout().lock(),
            )?),
            None => Ok(commands::trail::export(
                &args,
                config,
                &mut std::io::stdout().lock(),
            )?),
        },
        Command::Erase(args) => Ok(commands::privacy::erase(&args, config, &mut screen(false))?),
        Command::Retention(args) => {
            Ok(commands::retention::run(&args, config, &mut screen(false))?)
        }
        Command::Keygen(args) => Ok(commands::trail::keygen(
            &args,
            &mut std::io::stdout().lock(),
        )?),
        Command::Store(StoreCommand::Status(args)) => {
            commands::store_status(&args, config, &mut screen(false)).context("store status")?;
            Ok(0)
        }
        Command::Import(args) => Ok(commands::analytics::import(
            &args,
            config,
            &mut std::io::stdin().lock(),
            &mut screen(false),
        )?),
        Command::Alerts(args) => {
            commands::alerts(&args, config, &mut screen(false)).context("alerts")?;
            Ok(0)
        }
        Command::Anomalies(args) => {
            commands::analytics::anomalies(&args, config, &mut screen(false))?;
            Ok(0)
        }
        Command::Analyze(AnalyzeCommand::User(args)) => {
            commands::analytics::analyze_user(&args, config, &mut screen(false))?;
            Ok(0)
        }
        Command::Analyze(AnalyzeCommand::Tools(args)) => {
            commands::analytics::analyze_tools(&args, config, &mut screen(false))?;
            Ok(0)
        }
        Command::Compliance(args) => Ok(commands::compliance::run(
            &args,
            config,
            &mut screen(false),
        )?),
        // On standard output, as every command's output, through `printable` (helper-94 F2:
        // the JSON report alone wrote U+202E raw); a report file (`--out`) is written as it is.
        Command::Report(args) => Ok(commands::report::run(&args, config, &mut screen(false))?),
        Command::Tools(ToolsCommand::Accept(args)) => {
            commands::tools_accept(
                config,
                args.upstream.as_deref(),
                &args.name,
                args.hash.as_deref(),
                &mut screen(false),
            )
            .context("tools accept")?;
            Ok(0)
        }
    }
}

/// The error and its causes, each cause once (most of ours already quote their source).
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
