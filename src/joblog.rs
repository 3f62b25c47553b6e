//! The job log: what the user reads in GitLab. Collapsible sections, colours, warnings and
//! errors in the runner's style, and redaction of every secret the job carries.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::clock;

const RESET: &str = "\x1b[0;m";
const BOLD_GREEN: &str = "\x1b[32;1m";
const BOLD_CYAN: &str = "\x1b[36;1m";
const YELLOW: &str = "\x1b[0;33m";
const BOLD_RED: &str = "\x1b[31;1m";
const CLEAR_LINE: &str = "\x1b[0K";
/// What a secret is replaced with, as the runner does.
pub const MASK: &str = "[MASKED]";

/// Replaces secrets in a byte stream, including secrets split across writes.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

impl Redactor {
    /// A redactor for these values; values shorter than 4 bytes are ignored, as masking them
    /// would garble ordinary output (GitLab requires 8 characters for masked variables).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .filter(|s| s.len() >= 4)
            .map(String::into_bytes)
            .collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets,
            pending: Vec::new(),
        }
    }

    /// Adds a secret learnt while the job runs (a registry token, say).
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 4 && !self.secrets.iter().any(|s| s == secret.as_bytes()) {
            self.secrets.push(secret.as_bytes().to_vec());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Takes the next chunk and returns what can be shown now; the tail that could be the
    /// start of a secret is held back until the next chunk or [`Redactor::finish`].
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let masked = self.mask(&self.pending);
        let hold = self.partial_suffix_len(&masked);
        let (now, later) = masked.split_at(masked.len() - hold);
        self.pending = later.to_vec();
        now.to_vec()
    }

    /// Returns whatever was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Masks a complete text.
    pub fn redact(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.mask(text.as_bytes())).into_owned()
    }

    fn mask(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        let mut i = 0;
        'outer: while i < input.len() {
            for s in &self.secrets {
                if input[i..].starts_with(s) {
                    out.extend_from_slice(MASK.as_bytes());
                    i += s.len();
                    continue 'outer;
                }
            }
            out.push(input[i]);
            i += 1;
        }
        out
    }

    fn partial_suffix_len(&self, data: &[u8]) -> usize {
        self.secrets
            .iter()
            .flat_map(|s| (1..s.len().min(data.len() + 1)).map(move |n| (s, n)))
            .filter(|(s, n)| data.ends_with(&s[..*n]))
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0)
    }
}

/// How the log is written: for GitLab's job log, or for a person at a terminal or reading
/// a pipe or file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Section markers GitLab folds, ANSI colours.
    GitLab,
    /// Colours, headings instead of section markers.
    Terminal,
    /// Text only: headings as plain lines, no escape codes.
    Plain,
}

impl Format {
    /// For an operator command: colours on a terminal unless `NO_COLOR` is set (any
    /// non-empty value, as no-color.org says), plain text otherwise.
    pub fn for_operator() -> Format {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        match io::stdout().is_terminal() && !no_color {
            true => Format::Terminal,
            false => Format::Plain,
        }
    }

    /// `text` in `style`, unless plain.
    fn paint(self, style: &str, text: &str) -> String {
        match self {
            Format::Plain => text.to_string(),
            Format::GitLab | Format::Terminal => format!("{style}{text}{RESET}"),
        }
    }
}

/// The job log of one driver invocation.
#[derive(Clone)]
pub struct JobLog {
    inner: Arc<Mutex<Inner>>,
    format: Format,
    /// Put before every line (not section markers): which of several concurrent things a
    /// line is about.
    prefix: Arc<str>,
}

struct Inner {
    out: Box<dyn Write + Send>,
    redactor: Redactor,
}

impl JobLog {
    /// A job log on stdout that masks `secrets`.
    pub fn stdout(secrets: impl IntoIterator<Item = String>) -> Self {
        Self::new(Box::new(io::stdout()), secrets)
    }

    /// An operator command's output on stdout that masks `secrets`, in `format`.
    pub fn operator(format: Format, secrets: impl IntoIterator<Item = String>) -> Self {
        JobLog {
            format,
            ..Self::stdout(secrets)
        }
    }

    /// A job log on any writer that masks `secrets`.
    pub fn new(out: Box<dyn Write + Send>, secrets: impl IntoIterator<Item = String>) -> Self {
        JobLog {
            inner: Arc::new(Mutex::new(Inner {
                out,
                redactor: Redactor::new(secrets),
            })),
            prefix: Arc::from(""),
            format: Format::GitLab,
        }
    }

    /// The same log with every line prefixed by `prefix` (e.g. `[web] `).
    pub fn prefixed(&self, prefix: &str) -> JobLog {
        JobLog {
            inner: self.inner.clone(),
            prefix: Arc::from(format!("{}{prefix}", self.prefix)),
            format: self.format,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only a half-written line behind.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn line(&self, text: &str) {
        self.write_line(&format!("{}{text}", self.prefix));
    }

    fn write_line(&self, text: &str) {
        let mut inner = self.lock();
        let masked = inner.redactor.redact(text);
        // The job log is best effort: a closed stdout must not turn into a job failure.
        let _ = writeln!(inner.out, "{masked}");
        let _ = inner.out.flush();
    }

    /// Masks `secret` in everything written from now on.
    pub fn add_secret(&self, secret: &str) {
        self.lock().redactor.add(secret);
    }

    /// A plain line.
    pub fn info(&self, text: &str) {
        self.line(text);
    }

    /// A bold green line, for the command or action about to happen.
    pub fn step(&self, text: &str) {
        self.styled(BOLD_GREEN, text);
    }

    /// `WARNING: …` in yellow.
    pub fn warn(&self, text: &str) {
        self.styled(YELLOW, &format!("WARNING: {text}"));
    }

    /// `ERROR: …` in bold red.
    pub fn error(&self, text: &str) {
        self.styled(BOLD_RED, &format!("ERROR: {text}"));
    }

    /// A line in `style`, the prefix included.
    fn styled(&self, style: &str, text: &str) {
        self.write_line(&self.format.paint(style, &format!("{}{text}", self.prefix)));
    }

    /// Streamed output of a process, masked even when a secret spans two chunks.
    pub fn raw(&self, chunk: &[u8]) {
        let mut inner = self.lock();
        let shown = inner.redactor.push(chunk);
        let _ = inner.out.write_all(&shown);
        let _ = inner.out.flush();
    }

    /// Flushes whatever [`JobLog::raw`] held back.
    pub fn end_raw(&self) {
        let mut inner = self.lock();
        let rest = inner.redactor.finish();
        let _ = inner.out.write_all(&rest);
        let _ = inner.out.flush();
    }

    /// Opens a collapsible section; it closes when the returned guard is dropped.
    pub fn section(&self, id: &str, heading: &str) -> Section {
        self.open_section(id, heading, false)
    }

    /// Opens a section that GitLab shows collapsed.
    pub fn collapsed_section(&self, id: &str, heading: &str) -> Section {
        self.open_section(id, heading, true)
    }

    fn open_section(&self, id: &str, heading: &str, collapsed: bool) -> Section {
        let id: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let options = if collapsed { "[collapsed=true]" } else { "" };
        match self.format {
            // GitLab reads section markers only at the start of a line.
            Format::GitLab => self.write_line(&format!(
                "section_start:{}:{id}{options}\r{CLEAR_LINE}{BOLD_CYAN}{heading}{RESET}",
                clock::epoch_secs()
            )),
            Format::Terminal | Format::Plain => self.styled(BOLD_CYAN, heading),
        }
        Section {
            log: self.clone(),
            id,
            started: Instant::now(),
        }
    }
}

/// An open section of the job log.
pub struct Section {
    log: JobLog,
    id: String,
    started: Instant,
}

impl Section {
    /// Time since the section opened.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        self.log.end_raw();
        if self.log.format == Format::GitLab {
            self.log.write_line(&format!(
                "section_end:{}:{}\r{CLEAR_LINE}",
                clock::epoch_secs(),
                self.id
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn secrets_split_across_chunks_are_masked() {
        let mut r = Redactor::new(["hunter22".to_string(), "abc".to_string()]);
        let mut out = r.push(b"pass=hun");
        out.extend(r.push(b"ter22 and hunte"));
        out.extend(r.push(b"r2 abc"));
        out.extend(r.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "pass=[MASKED] and hunter2 abc"
        );
    }

    #[test]
    fn sections_lines_and_masking() {
        let buf = Buf::default();
        let log = JobLog::new(Box::new(buf.clone()), ["s3cr3t-value".to_string()]);
        {
            let _s = log.collapsed_section("release image", "Building s3cr3t-value");
            log.error("token s3cr3t-value refused");
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains(":release_image[collapsed=true]\r\x1b[0K"),
            "{text}"
        );
        assert!(text.contains("ERROR: token [MASKED] refused"), "{text}");
        assert!(text.contains("section_end:"), "{text}");
    }

    #[test]
    fn plain_output_has_headings_but_no_markers_or_escape_codes() {
        let buf = Buf::default();
        let log = JobLog {
            format: Format::Plain,
            ..JobLog::new(Box::new(buf.clone()), Vec::new())
        };
        {
            let _s = log.section("release_plan", "Release plan");
            log.step("Registering shop:3");
            log.warn("slow");
            log.prefixed("[web] ").error("failed");
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "Release plan\nRegistering shop:3\nWARNING: slow\n[web] ERROR: failed\n"
        );
    }
}
