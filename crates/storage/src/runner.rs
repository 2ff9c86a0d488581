//! The one place where the satellite runs host commands (`losetup`, `lvcreate`, `zfs`, ...).
//!
//! Everything that changes or queries the host's storage goes through [`HostCommands`], so every
//! command line is logged before it runs and tests can replace the host with a recording fake
//! and compare the exact command lines against golden lists. [`SystemCommands`] is the real
//! implementation; it is the only user of `std::process::Command` in the storage code.
//!
//! It also starts the long-running daemons the satellite supervises ([`HostCommands::start_daemon`]:
//! `ferrite-mirrord`), in a session of their own so they outlive the satellite, and follows
//! event streams line by line ([`HostCommands::follow`]: `drbdsetup events2`).
//!
//! It does not interpret output; the providers do.

use std::fmt;
use std::io::Read;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a host command may run before it is killed. Storage tools normally answer within
/// seconds; one that hangs (a stuck LVM lock, an unresponsive device) must not hang the
/// satellite's reconciler forever.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest wait between two checks whether a running command has finished. The first
/// check comes after [`POLL_FIRST`] and the wait doubles up to this: most storage commands end
/// within a millisecond or two, and a fixed 5 ms added 2.5 ms to each on average.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// The first wait before a running command is checked for completion.
const POLL_FIRST: Duration = Duration::from_micros(100);

/// A program and its arguments, exactly as they are executed (no shell is involved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: String,
    pub args: Vec<String>,
    /// The command only looks at the host (`lvs`, `losetup --list`): it is logged at debug
    /// level, since convergence runs such commands for every volume on every pass.
    pub read_only: bool,
}

impl CommandLine {
    /// A command that may change the host; logged at info level.
    pub fn new(program: impl Into<String>) -> Self {
        CommandLine {
            program: program.into(),
            args: Vec::new(),
            read_only: false,
        }
    }

    /// A command that only reads the host's state.
    pub fn query(program: impl Into<String>) -> Self {
        CommandLine {
            read_only: true,
            ..CommandLine::new(program)
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// Shell-quoted, so a logged line can be pasted into a shell.
impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+%@".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What a successful command printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn stdout(stdout: impl Into<String>) -> Self {
        CommandOutput {
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }
}

/// How a command ended when it did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(code) => write!(f, "exit status {code}"),
            ExitReason::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

impl From<ExitStatus> for ExitReason {
    fn from(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitReason::Code(code),
            (None, Some(signal)) => ExitReason::Signal(signal),
            (None, None) => ExitReason::Code(-1),
        }
    }
}

/// Why a host command did not succeed. Every variant names the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{program}: command not found (running `{command}`)")]
    NotFound { program: String, command: String },
    #[error("could not start `{command}`: {message}")]
    Spawn { command: String, message: String },
    #[error("`{command}` failed with {exit}: {}", stderr.trim())]
    Failed {
        command: String,
        exit: ExitReason,
        stdout: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {} s and was killed", timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
}

impl CommandError {
    /// The standard error of a command that ran and failed, else empty.
    pub fn stderr(&self) -> &str {
        match self {
            CommandError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }

    /// Whether the program is not installed.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CommandError::NotFound { .. })
    }
}

/// Runs host commands. Implementations log every command line before running it.
pub trait HostCommands: Send + Sync {
    /// Runs `command` to completion. A non-zero exit is [`CommandError::Failed`].
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError>;

    /// Starts a long-running daemon (`ferrite-mirrord`) in a session of its own, so it outlives
    /// the caller, with its output appended to `log`; returns its pid. A thread reaps it and
    /// logs how it ended. Hosts that cannot start processes refuse.
    fn start_daemon(
        &self,
        command: &CommandLine,
        log: &std::path::Path,
    ) -> Result<u32, CommandError> {
        let _ = log;
        Err(CommandError::Spawn {
            command: command.to_string(),
            message: "this host does not start daemons".to_string(),
        })
    }

    /// The file loop device `device` (`/dev/loopN`) holds, as the kernel names it in
    /// `/sys/block/loopN/loop/backing_file` (a deleted file reads `<path> (deleted)`); `None`
    /// when the device holds no file. One small read, not a command, so it is not logged: what
    /// a pass over a few volumes uses to confirm a device it remembers, where `losetup` would
    /// scan every loop device of the host.
    fn loop_backing_file(&self, device: &std::path::Path) -> Option<String> {
        let name = device.file_name()?.to_str()?;
        let text = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
        let file = text.trim_end_matches('\n');
        (!file.is_empty()).then(|| file.to_string())
    }

    /// A loop device free now, to name to `losetup DEVICE FILE`: `LOOP_CTL_GET_FREE` on
    /// `/dev/loop-control`, what `losetup --find` asks too (the kernel makes a device when none
    /// is free). Two processes attaching at once are handed the same device and one loses it;
    /// `losetup --find` then sleeps 200 ms before it tries again (util-linux), which made one
    /// attach in eight take 200 ms with four satellites on one host. A caller that names the
    /// device fails at once and asks again. `None` (the default, and a fake host's): use
    /// `losetup --find`.
    fn free_loop_device(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// The size and free space (for unprivileged users, as `df` shows them) of the file system
    /// holding `dir`: what a FILE or FILE_THIN pool reports as its capacity. One `statvfs`, not
    /// a command, so it is not logged.
    fn file_system_capacity(&self, dir: &std::path::Path) -> std::io::Result<crate::PoolCapacity> {
        crate::file::statvfs(dir)
    }

    /// Runs `command` with no time limit and hands each line of its standard output to
    /// `on_line` as it comes, until the command ends (`Ok` on exit status 0) or `on_line`
    /// returns false (the command is killed; `Ok`). For event streams such as
    /// `drbdsetup events2`. Hosts that cannot start processes refuse.
    fn follow(
        &self,
        command: &CommandLine,
        on_line: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), CommandError> {
        let _ = on_line;
        Err(CommandError::Spawn {
            command: command.to_string(),
            message: "this host does not follow event streams".to_string(),
        })
    }
}

/// Runs commands on this host, with stdin closed, output captured and [`COMMAND_TIMEOUT`].
#[derive(Debug, Clone)]
pub struct SystemCommands {
    timeout: Duration,
}

impl Default for SystemCommands {
    fn default() -> Self {
        SystemCommands {
            timeout: COMMAND_TIMEOUT,
        }
    }
}

impl SystemCommands {
    pub fn new() -> Self {
        Self::default()
    }

    /// A runner that kills commands after `timeout` instead of [`COMMAND_TIMEOUT`].
    pub fn with_timeout(timeout: Duration) -> Self {
        SystemCommands { timeout }
    }
}

impl HostCommands for SystemCommands {
    fn free_loop_device(&self) -> Option<std::path::PathBuf> {
        free_loop_device()
    }

    #[allow(clippy::disallowed_types)] // this is the runner
    fn run(&self, command: &CommandLine) -> Result<CommandOutput, CommandError> {
        let line = command.to_string();
        if command.read_only {
            tracing::debug!(command = %line, "running host command");
        } else {
            tracing::info!(command = %line, "running host command");
        }
        let started = Instant::now();
        let spawned = std::process::Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Keeps tools' messages parseable regardless of the satellite's locale.
            .env("LC_ALL", "C")
            // LVM warns about every inherited descriptor; those warnings are noise in stderr.
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(command = %line, "program not found");
                return Err(CommandError::NotFound {
                    program: command.program.clone(),
                    command: line,
                });
            }
            Err(e) => {
                return Err(CommandError::Spawn {
                    command: line,
                    message: e.to_string(),
                });
            }
        };
        // Drain both pipes on their own threads so a chatty command cannot fill a pipe and
        // block while we wait for it to exit.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let mut poll = POLL_FIRST;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    tracing::error!(command = %line, timeout_s = self.timeout.as_secs(), "host command timed out");
                    return Err(CommandError::TimedOut {
                        command: line,
                        timeout: self.timeout,
                    });
                }
                Ok(None) => {
                    std::thread::sleep(poll);
                    poll = (poll * 2).min(POLL_INTERVAL);
                }
                Err(e) => {
                    return Err(CommandError::Spawn {
                        command: line,
                        message: format!("waiting for the process failed: {e}"),
                    });
                }
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if status.success() {
            tracing::debug!(command = %line, elapsed_ms, "host command succeeded");
            Ok(CommandOutput { stdout, stderr })
        } else {
            let exit = ExitReason::from(status);
            tracing::warn!(command = %line, %exit, stderr = %stderr.trim(), elapsed_ms, "host command failed");
            Err(CommandError::Failed {
                command: line,
                exit,
                stdout,
                stderr,
            })
        }
    }

    fn start_daemon(
        &self,
        command: &CommandLine,
        log: &std::path::Path,
    ) -> Result<u32, CommandError> {
        SystemCommands::spawn_daemon(command, log)
    }

    #[allow(clippy::disallowed_types)] // this is the runner
    fn follow(
        &self,
        command: &CommandLine,
        on_line: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), CommandError> {
        use std::io::BufRead;
        let line = command.to_string();
        tracing::debug!(command = %line, "following host command");
        let spawned = std::process::Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C")
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CommandError::NotFound {
                    program: command.program.clone(),
                    command: line,
                });
            }
            Err(e) => {
                return Err(CommandError::Spawn {
                    command: line,
                    message: e.to_string(),
                });
            }
        };
        let stderr = drain(child.stderr.take());
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
        for text in stdout.lines() {
            let Ok(text) = text else { break };
            if !on_line(&text) {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(());
            }
        }
        let status = child.wait().map_err(|e| CommandError::Spawn {
            command: line.clone(),
            message: format!("waiting for the process failed: {e}"),
        })?;
        let stderr = stderr.join().unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(CommandError::Failed {
                command: line,
                exit: ExitReason::from(status),
                stdout: String::new(),
                stderr,
            })
        }
    }
}

impl SystemCommands {
    #[allow(clippy::disallowed_types)] // this is the runner
    fn spawn_daemon(command: &CommandLine, log: &std::path::Path) -> Result<u32, CommandError> {
        use std::os::unix::process::CommandExt;
        let line = command.to_string();
        let spawn_error = |message: String| CommandError::Spawn {
            command: line.clone(),
            message,
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| spawn_error(format!("cannot open its log {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| spawn_error(format!("cannot open its log {}: {e}", log.display())))?;
        tracing::info!(command = %line, log = %log.display(), "starting daemon");
        let mut process = std::process::Command::new(&command.program);
        process
            .args(&command.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("LC_ALL", "C");
        // SAFETY: setsid is async-signal-safe and touches nothing of the parent.
        unsafe {
            process.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = match process.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CommandError::NotFound {
                    program: command.program.clone(),
                    command: line,
                });
            }
            Err(e) => return Err(spawn_error(e.to_string())),
        };
        let pid = child.id();
        let _ = std::thread::Builder::new()
            .name("daemon-reaper".to_string())
            .spawn(move || match child.wait() {
                Ok(status) if status.success() => {
                    tracing::info!(pid, command = %line, "daemon ended")
                }
                Ok(status) => {
                    let exit = ExitReason::from(status);
                    tracing::warn!(pid, command = %line, %exit, "daemon ended");
                }
                Err(e) => tracing::warn!(pid, error = %e, "cannot wait for the daemon"),
            });
        Ok(pid)
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// `LOOP_CTL_GET_FREE` (linux/loop.h): the index of a free loop device, made if none is.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// [`HostCommands::free_loop_device`] on a real host.
fn free_loop_device() -> Option<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    let control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .ok()?;
    // SAFETY: an ioctl without an argument on a descriptor this function owns.
    let index = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    (index >= 0).then(|| std::path::PathBuf::from(format!("/dev/loop{index}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_shell_quoted() {
        let line = CommandLine::new("losetup")
            .args(["--find", "--show"])
            .arg("/srv/my pool/it's.img");
        assert_eq!(
            line.to_string(),
            r"losetup --find --show '/srv/my pool/it'\''s.img'"
        );
        assert_eq!(CommandLine::new("x").arg("").to_string(), "x ''");
    }

    #[test]
    fn real_runner_reports_status_stdout_and_stderr() {
        let runner = SystemCommands::new();
        let out = runner
            .run(&CommandLine::new("sh").args(["-c", "echo out; echo err >&2"]))
            .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");

        let err = runner
            .run(&CommandLine::new("sh").args(["-c", "echo broken >&2; exit 3"]))
            .unwrap_err();
        match &err {
            CommandError::Failed {
                command,
                exit,
                stderr,
                ..
            } => {
                assert_eq!(command, "sh -c 'echo broken >&2; exit 3'");
                assert_eq!(*exit, ExitReason::Code(3));
                assert_eq!(stderr, "broken\n");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        assert!(err.to_string().contains("exit status 3: broken"), "{err}");
    }

    #[test]
    fn a_followed_command_gives_its_lines_as_they_come_and_stops_when_told() {
        let runner = SystemCommands::new();
        let mut lines = Vec::new();
        runner
            .follow(
                &CommandLine::new("sh").args(["-c", "echo one; echo two; echo three"]),
                &mut |line| {
                    lines.push(line.to_string());
                    true
                },
            )
            .unwrap();
        assert_eq!(lines, ["one", "two", "three"]);

        // An endless stream ends when the reader has seen enough.
        let mut seen = 0;
        let started = Instant::now();
        runner
            .follow(
                &CommandLine::new("sh").args(["-c", "while true; do echo tick; sleep 0.01; done"]),
                &mut |_| {
                    seen += 1;
                    seen < 3
                },
            )
            .unwrap();
        assert_eq!(seen, 3);
        assert!(started.elapsed() < Duration::from_secs(5));

        let error = runner
            .follow(
                &CommandLine::new("sh").args(["-c", "echo half; echo broken >&2; exit 3"]),
                &mut |_| true,
            )
            .unwrap_err();
        assert!(error.to_string().contains("broken"), "{error}");
        assert!(
            runner
                .follow(&CommandLine::new("no-such-program-here"), &mut |_| true)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn missing_programs_are_not_found() {
        let err = SystemCommands::new()
            .run(&CommandLine::new("ferrite-no-such-tool").arg("--version"))
            .unwrap_err();
        assert!(err.is_not_found());
        assert!(
            err.to_string()
                .starts_with("ferrite-no-such-tool: command not found"),
            "{err}"
        );
    }

    #[test]
    fn hung_commands_are_killed_after_the_timeout() {
        let runner = SystemCommands::with_timeout(Duration::from_millis(200));
        let started = Instant::now();
        let err = runner
            .run(&CommandLine::new("sleep").arg("30"))
            .unwrap_err();
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
