//! The `midicopilot-engine` subcommands: one module each, `main.rs` only dispatches.

pub mod alsa;
pub mod bench; // model helper: `bench` and the hidden `logits`
pub mod decode;
pub mod encode;
pub mod jack;
pub mod live_args;
pub mod render; // added by the decoder-loop helper (cmd/render.rs) // the flags `jack` and `alsa` share

use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;

/// The last panic's message, for [`run_main`]'s one-line report.
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Run a command body: an error becomes one line on stderr, `midicopilot-engine: <error: causes>`,
/// and exit code 1; a panic is reported the same way (never a backtrace).
pub fn run_main(body: impl FnOnce() -> anyhow::Result<()> + std::panic::UnwindSafe) -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()));
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(format!("{msg}{}", place.unwrap_or_default()));
        }
    }));
    let outcome = std::panic::catch_unwind(body);
    let line = match outcome {
        Ok(Ok(())) => return ExitCode::SUCCESS,
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => {
            let msg = PANIC_MESSAGE.lock().ok().and_then(|mut m| m.take());
            format!("internal error: {}", msg.unwrap_or_else(|| "panic".into()))
        }
    };
    let line = line.replace('\n', " ");
    let _ = writeln!(std::io::stderr(), "midicopilot-engine: {line}");
    ExitCode::from(1)
}

/// Write `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Parse the command line; a usage error is one line on stderr and exit code 2 (`--help` and
/// `--version` print as usual).
pub fn parse_args<T: clap::Parser>() -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                }
            }
            _ => {
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or("bad arguments");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                let _ = writeln!(
                    std::io::stderr(),
                    "midicopilot-engine: {first} (see --help)"
                );
                ExitCode::from(2)
            }
        }
    })
}
