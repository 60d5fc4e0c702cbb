//! The `midicopilot-engine` subcommands: one module each, `main.rs` only dispatches.

pub mod alsa;
pub mod bench; // `bench` and the hidden `logits`
pub mod decode;
pub mod encode;
pub mod jack;
pub mod live_args; // the flags `jack` and `alsa` share
pub mod model_flags; // --weights, --threads, --device
pub mod render;
pub mod score;
pub mod session_flags; // the session flags render, jack and alsa share

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

/// Threads for the model's matrix products (decode and prefill alike): `threads`, else the
/// physical cores. Set before any thread pool exists: candle's kernels and rayon read it once.
pub fn set_threads(threads: Option<usize>) -> anyhow::Result<usize> {
    if threads == Some(0) {
        anyhow::bail!("--threads 0: at least one thread");
    }
    if let Some(n) = threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    Ok(candle_core::utils::get_num_threads())
}

/// The device a `--device` value names: `cpu`, `cuda` (GPU 0) or `cuda:N`. A CUDA device needs
/// an engine built with `--features cuda` (one line says so otherwise).
pub fn device(name: &str) -> anyhow::Result<candle_core::Device> {
    use anyhow::Context as _;
    let ordinal = match name {
        "cpu" => return Ok(candle_core::Device::Cpu),
        "cuda" => Some(0),
        _ => name
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok()),
    };
    let Some(ordinal) = ordinal else {
        anyhow::bail!("--device {name}: expected cpu, cuda or cuda:N");
    };
    if !cfg!(feature = "cuda") {
        anyhow::bail!(
            "--device {name}: this engine was built without CUDA (cargo build --release \
             --features cuda)"
        );
    }
    candle_core::Device::new_cuda(ordinal).with_context(|| format!("--device {name}"))
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
